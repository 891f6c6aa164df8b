"""Flow settings under the hosted SDK's names: `settings=[NoShuffleSetting(), MuteVideoSetting()]`.

A setting is a feature flag, a key and a string value, stored with the flow and handed to the annotator page
with every task. flowlab acts on the flags in `HONOURED`; the others (for task types or features flowlab
does not have) are kept with the flow and named in a warning, so hosted code runs unchanged and nobody is
misled about what annotators see.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

MAX_SETTINGS = 64
MAX_VALUE_CHARS = 1000

# What flowlab does with each flag it honours (the page or the server). Flags it never needs to act on
# because its page already behaves that way count as honoured too.
HONOURED = {
    "no_shuffle": "pairs are shown in the order the datapoints were given (A the earlier one); categories are "
    "never shuffled",
    "compare_unsure": "ranking tasks get an 'Unsure' button (a tie) after the given delay in milliseconds",
    "use_main_text_markdown": "text datapoints are rendered as Markdown",
    "mute_video_asset": "videos start muted",
    "disable_autoloop": "videos never loop (flowlab's page does not loop them in any case)",
    "no_aux_text": "the instruction is not shown, only the context",
    "swap_question_and_prompt": "the context is shown above the instruction",
    "media_played_percentage": "the answer buttons wait until every audio and video has played this percentage",
    "force_original_language": "text is shown as given (flowlab never translates)",
    "media_context_persistent_thumbnail": "context media stay in view beside the task (flowlab always does)",
}


class Setting:
    """A flag with a key and a value, as hosted's `RapidataSetting`; `CustomSetting` sets any key."""

    key: str = ""
    value: str = "true"

    def __init__(self, key: str | None = None, value: Any = None) -> None:
        if key is not None:
            self.key = key
        if value is not None:
            self.value = str(value)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(key={self.key!r}, value={self.value!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Setting) and (self.key, self.value) == (other.key, other.value)

    def __hash__(self) -> int:
        return hash((self.key, self.value))


class _Flag(Setting):
    """A setting that is on when given."""

    def __init__(self) -> None:
        super().__init__(self.key, "true")


def _bounded(value: Any, name: str, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} is a whole number; got {value!r}.")
    if value < low or (high is not None and value > high):
        span = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ValueError(f"{name} must be {span}; got {value}.")
    return value


class NoShuffleSetting(_Flag):
    """Show datapoints in the order given, not shuffled."""

    key = "no_shuffle"


class MuteVideoSetting(_Flag):
    """Start videos muted."""

    key = "mute_video_asset"


class MarkdownSetting(_Flag):
    """Render text datapoints as Markdown."""

    key = "use_main_text_markdown"


class DisableAutoloopSetting(_Flag):
    """Do not loop videos."""

    key = "disable_autoloop"


class NoInstructionDisplaySetting(_Flag):
    """Hide the instruction."""

    key = "no_aux_text"


class SwapContextInstructionSetting(_Flag):
    """Show the context above the instruction."""

    key = "swap_question_and_prompt"


class OriginalLanguageOnlySetting(_Flag):
    """Show text as given, untranslated."""

    key = "force_original_language"


class PinContextMediaSetting(_Flag):
    """Keep context media in view."""

    key = "media_context_persistent_thumbnail"


# Accepted so hosted code runs, named in a warning because flowlab has no such feature or task type.
class TranslateTextAssetsSetting(_Flag):
    """Hosted only."""

    key = "translate_text_assets"


class NoMistakeOptionSetting(_Flag):
    """Hosted only."""

    key = "no_mistake"


class KeyboardNumericSetting(_Flag):
    """Hosted only (free-text tasks)."""

    key = "keyboard_numeric"


class ReferenceOverlaySetting(_Flag):
    """Hosted only."""

    key = "reference_overlay"


class ComparePanoramaSetting(_Flag):
    """Hosted only."""

    key = "compare_panorama"


class CompareEquirectangularSetting(_Flag):
    """Hosted only."""

    key = "compare_equirectangular"


class ClassifyEquirectangularSetting(_Flag):
    """Hosted only."""

    key = "classify_equirectangular"


class AllowNeitherBothSetting(Setting):
    """Ranking tasks get an 'Unsure' button (recorded as a tie), shown after `delay_ms` milliseconds."""

    key = "compare_unsure"

    def __init__(self, delay_ms: int = 5000) -> None:
        super().__init__(self.key, _bounded(delay_ms, "delay_ms", 0))


class PlayPercentageVideoSetting(Setting):
    """Annotators answer only after every audio and video of the task has played `percentage` percent."""

    key = "media_played_percentage"

    def __init__(self, percentage: int = 95) -> None:
        super().__init__(self.key, _bounded(percentage, "percentage", 0, 95))


class FreeTextMinimumCharactersSetting(Setting):
    """Hosted only (free-text tasks)."""

    key = "free_text_minimum_characters"

    def __init__(self, value: int) -> None:
        super().__init__(self.key, _bounded(value, "value", 1))


class FreeTextMaxCharactersSetting(Setting):
    """Hosted only (free-text tasks)."""

    key = "free_text_max_characters"

    def __init__(self, value: int = 1024) -> None:
        super().__init__(self.key, _bounded(value, "value", 1))


class LocateMaxPointsSetting(Setting):
    """Hosted only (locate tasks)."""

    key = "locate_max_points"

    def __init__(self, value: int = 3) -> None:
        super().__init__(self.key, _bounded(value, "value", 1))


class LocateMinPointsSetting(Setting):
    """Hosted only (locate tasks)."""

    key = "locate_min_points"

    def __init__(self, value: int = 1) -> None:
        super().__init__(self.key, _bounded(value, "value", 0))


class CustomSetting(Setting):
    """Any flag by key and value; stored with the flow and passed to the page."""

    def __init__(self, key: str, value: str, target: str = "rapids") -> None:
        if not isinstance(key, str) or not key:
            raise ValueError("The key must be a non-empty string.")
        if target not in ("rapids", "campaign"):
            raise ValueError(f"The target must be one of ('rapids', 'campaign'), got {target!r}.")
        super().__init__(key, value)


class Settings:
    """Every setting by its short name, as hosted's `RapidataSettings`: `Settings.NoShuffle()`."""

    NoShuffle = NoShuffleSetting
    MuteVideo = MuteVideoSetting
    Markdown = MarkdownSetting
    DisableAutoloop = DisableAutoloopSetting
    NoInstructionDisplay = NoInstructionDisplaySetting
    SwapContextInstruction = SwapContextInstructionSetting
    OriginalLanguageOnly = OriginalLanguageOnlySetting
    PinContextMedia = PinContextMediaSetting
    AllowNeitherBoth = AllowNeitherBothSetting
    PlayPercentageVideo = PlayPercentageVideoSetting
    TranslateTextAssets = TranslateTextAssetsSetting
    NoMistakeOption = NoMistakeOptionSetting
    KeyboardNumeric = KeyboardNumericSetting
    ReferenceOverlay = ReferenceOverlaySetting
    ComparePanorama = ComparePanoramaSetting
    CompareEquirectangular = CompareEquirectangularSetting
    ClassifyEquirectangular = ClassifyEquirectangularSetting
    FreeTextMinimumCharacters = FreeTextMinimumCharactersSetting
    FreeTextMaxCharacters = FreeTextMaxCharactersSetting
    LocateMaxPoints = LocateMaxPointsSetting
    LocateMinPoints = LocateMinPointsSetting
    Custom = CustomSetting


def as_flags(settings: Iterable[Any] | Mapping[str, Any] | None) -> dict[str, str]:
    """Settings as the flow stores them, `{key: value}`, from setting objects (anything with `key` and
    `value`, hosted's included), `(key, value)` pairs or a mapping. Raises ValueError saying what is wrong."""
    if settings is None:
        return {}
    if isinstance(settings, str | bytes):
        raise ValueError("settings is a list of settings, e.g. [NoShuffleSetting()], not a string.")
    pairs = settings.items() if isinstance(settings, Mapping) else (_pair(s) for s in settings)
    flags: dict[str, str] = {}
    for key, value in pairs:
        if not isinstance(key, str) or not key:
            raise ValueError(f"A setting's key is a non-empty string; got {key!r}.")
        if value is False or value is None or str(value).lower() == "false":
            continue  # a flag turned off is a flag not given
        flags[key] = "true" if value is True else str(value)
    return check_flags(flags)


def _pair(s: Any) -> tuple[Any, Any]:
    if isinstance(s, tuple) and len(s) == 2:
        return s
    if hasattr(s, "key") and hasattr(s, "value"):
        return s.key, s.value
    raise ValueError(f"{s!r} is not a setting; give setting objects such as NoShuffleSetting(), or (key, value).")


def check_flags(flags: Mapping[str, str]) -> dict[str, str]:
    """The server's check of stored flags: bounded, and the values flowlab acts on well formed. A flag whose
    value is "false" is dropped: turned off is the same as not given."""
    flags = {k: v for k, v in flags.items() if str(v).lower() != "false"}
    if len(flags) > MAX_SETTINGS:
        raise ValueError(f"A flow takes at most {MAX_SETTINGS} settings; got {len(flags)}.")
    for key, value in flags.items():
        if not key or len(key) > 100 or len(value) > MAX_VALUE_CHARS:
            raise ValueError(f"Setting {key[:100]!r}: keys are 1-100 characters, values at most {MAX_VALUE_CHARS}.")
    for key, low, high in (("compare_unsure", 0, None), ("media_played_percentage", 0, 95)):
        if key in flags:
            try:
                number = int(flags[key])
            except ValueError:
                raise ValueError(f"Setting {key!r} takes a whole number; got {flags[key]!r}.") from None
            _bounded(number, f"Setting {key!r}", low, high)
    return dict(flags)


def unhonoured(flags: Mapping[str, str]) -> list[str]:
    """The keys flowlab keeps but does not act on."""
    return sorted(k for k in flags if k not in HONOURED)
