"""Local files in a batch: which strings name one, how an uploaded file is keyed, and how failures are told."""

from __future__ import annotations

import os
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import PurePath
from typing import Any, Generic, TypeVar

from flowlab.client._errors import ValidationError

T = TypeVar("T")

# What flowlab uploads: the page shows these as images, audio and video.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".avif")
AUDIO_SUFFIXES = (".wav", ".mp3", ".ogg", ".oga", ".flac", ".m4a", ".aac")
VIDEO_SUFFIXES = (".mp4", ".webm", ".ogv", ".mov", ".m4v")
MEDIA_SUFFIXES = frozenset(IMAGE_SUFFIXES + AUDIO_SUFFIXES + VIDEO_SUFFIXES)
# Image, audio and video types a browser cannot show everywhere: a string ending in one is a file, refused.
OTHER_MEDIA_SUFFIXES = frozenset({
    ".tif", ".tiff", ".heic", ".heif", ".svg", ".jfif", ".raw", ".cr2", ".nef", ".psd",
    ".mkv", ".avi", ".wmv", ".flv", ".mpg", ".mpeg", ".3gp", ".mts",
    ".aif", ".aiff", ".wma", ".opus", ".amr", ".mid", ".midi",
})  # fmt: skip

_SEPARATORS = re.compile(r"[/\\]")
# A file name's extension: a dot after a character of the name, then 1 to 5 letters or digits with a letter.
_EXTENSION = re.compile(r"(?<=[^\s./\\])\.(?=[0-9]*[A-Za-z])([A-Za-z0-9]{1,5})$")


def _one_edit_apart(a: str, b: str) -> bool:
    """Whether `b` is `a` with one letter changed, added, dropped, or two neighbours swapped."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        if len(diff) == 1:
            return True
        return len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]]
    short, long = (a, b) if len(a) < len(b) else (b, a)
    return any(long[:i] + long[i + 1 :] == short for i in range(len(long)))


# Web addresses' endings that happen to be one letter from a media type (.org/.ogg, .gov/.ogv).
_WEB_SUFFIXES = frozenset({".org", ".gov", ".com", ".net", ".edu", ".info"})


def _mistyped_media(suffix: str) -> str | None:
    """The media suffix `suffix` is one typo away from (".pgn" -> ".png"), or None."""
    if len(suffix) < 4 or suffix in MEDIA_SUFFIXES or suffix in OTHER_MEDIA_SUFFIXES or suffix in _WEB_SUFFIXES:
        return None
    return next((m for m in sorted(MEDIA_SUFFIXES) if _one_edit_apart(suffix, m)), None)


def _is_url(s: str) -> bool:
    return re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", s) is not None


def path_suffix(s: str) -> str | None:
    """The extension of a string that names a local file, or None for a string that is text.

    A string names a file when it is one line, not a URL, and ends in a file name with an extension, and:

    - the extension is an image, audio or video type (".png", ".mp3", ".mp4", or one flowlab does not take,
      ".tiff", ".mkv"): a sentence may hold spaces, a file name may too, so spaces do not matter here; or
    - it has no spaces, has a folder part ("photos/", "~/", "C:\\"), and the extension is one typo away from an
      image, audio or video type (".pgn", ".jgp", ".mp5").

    So "Hello world.", "and/or", "see notes.txt", "example.org", "v1.2" and "3.14" are text, while "cat.png",
    "Screen Shot 1.png" and "photos/cat.pgn" are files (uploaded if they exist and flowlab takes their type;
    refused otherwise)."""
    if not s or len(s) > 4096 or any(c in s for c in "\n\r\t\0") or _is_url(s):
        return None
    name = _SEPARATORS.split(s)[-1]
    found = _EXTENSION.search(name)
    if found is None:
        return None
    suffix = "." + found.group(1).lower()
    if suffix in MEDIA_SUFFIXES or suffix in OTHER_MEDIA_SUFFIXES:
        return suffix
    folder = name != s or s.startswith("~")
    if folder and not any(c.isspace() for c in s) and _mistyped_media(suffix):
        return suffix
    return None


def unsupported_reason(given: str, suffix: str) -> str | None:
    """Why a file with this extension cannot be a datapoint, with what to do; None if flowlab uploads it."""
    if suffix in MEDIA_SUFFIXES:
        return None
    kinds = f"images {' '.join(IMAGE_SUFFIXES)}; audio {' '.join(AUDIO_SUFFIXES)}; video {' '.join(VIDEO_SUFFIXES)}"
    meant = _mistyped_media(suffix)
    if meant is not None:
        return (
            f"{given!r} looks like a path to a media file with a mistyped extension ({suffix}; did you mean "
            f'{meant}?). Fix the path, or pass data_type="text" if this string is text to show as it is.'
        )
    return (
        f"{given!r} is a {suffix} file, which annotators' browsers cannot all show; flowlab uploads {kinds}. "
        'Convert it, or pass data_type="text" if this string is text to show as it is.'
    )


def missing_reason(given: str, where: str) -> str:
    return (
        f"{where}: no file at {given!r} (relative paths start from {os.getcwd()!r}). Fix the path, or pass "
        'data_type="text" if this string is text to show as it is.'
    )


def upload_keys(sources: Sequence[str]) -> list[str]:
    """The key of each uploaded file, as hosted keys it: its file name ("img1.jpg" for "media/img1.jpg").

    Two different files with one name keep as many of their last folders as tell them apart
    ("model_a/0001.png", "model_b/0001.png"), so a batch comparing models' outputs of the same name keeps
    both; the same file given twice keeps one name (the server then numbers the second, as for equal texts)."""
    parts = [PurePath(os.path.abspath(os.path.expanduser(s))).parts for s in sources]
    keys = [p[-1] for p in parts]
    by_name: dict[str, list[int]] = defaultdict(list)
    for i, key in enumerate(keys):
        by_name[key].append(i)
    for same in by_name.values():
        files = {parts[i] for i in same}
        if len(files) < 2:
            continue
        depth = 2
        while depth < max(len(p) for p in files) and len({p[-depth:] for p in files}) < len(files):
            depth += 1
        for i in same:
            keys[i] = "/".join(parts[i][-depth:]).lstrip("/")
    return keys


@dataclass
class FailedUpload(Generic[T]):
    """One datapoint that could not be uploaded, as hosted's `FailedUpload`: the datapoint as given (`item`), why
    (`error_message`), the kind of failure (`error_type`), when, and the exception; flowlab adds `where` it was in
    the call ("datapoints[3]")."""

    item: T
    error_message: str
    error_type: str
    timestamp: datetime | None = field(default_factory=datetime.now)
    exception: Exception | None = None
    trace_id: str | None = None
    stage: str | None = None
    http_status: int | None = None
    where: str | None = None

    def format_error_details(self) -> str:
        lines = [f"Item: {self.item}", f"Error Type: {self.error_type}", f"Error Message: {self.error_message}"]
        if self.http_status is not None:
            lines.append(f"HTTP Status: {self.http_status}")
        if self.timestamp is not None:
            lines.append(f"Timestamp: {self.timestamp.isoformat()}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return f"{self.item}"


class FailedUploadException(ValidationError):
    """Datapoints whose files could not be uploaded (missing, a type flowlab does not take, or refused by the
    server); nothing was created. As hosted: `failed_uploads` (the datapoints as given), `detailed_failures`
    (`FailedUpload`s with the reasons), `failures_by_reason`. Also a `ValidationError` (so a `ValueError`).
    Fix the paths and send the batch again, or pass `accept_failed_uploads=True` to leave these out."""

    def __init__(self, failures: Sequence[FailedUpload[Any]]) -> None:
        self._failures = list(failures)
        self.dataset = None  # hosted's: flowlab keeps no separate dataset to retry into
        self.job_definition = None
        lines = [f"{len(self._failures)} datapoint(s) failed to upload:"]
        lines += [f"  {f.error_message}" for f in self._failures[:20]]
        if len(self._failures) > 20:
            lines.append(f"  ... and {len(self._failures) - 20} more (see .detailed_failures)")
        lines.append("Fix them and send the batch again, or pass accept_failed_uploads=True to leave them out.")
        # One failure answered by the server keeps its status (413: too large, 415: not a type it takes).
        status = self._failures[0].http_status if len(self._failures) == 1 else None
        super().__init__(status or 422, "\n".join(lines), field=self._failures[0].where if self._failures else None)

    @property
    def failed_uploads(self) -> list[Any]:
        """The datapoints that failed, as they were given."""
        return [f.item for f in self._failures]

    @property
    def detailed_failures(self) -> list[FailedUpload[Any]]:
        return list(self._failures)

    @property
    def failures_by_reason(self) -> dict[str, list[Any]]:
        grouped: dict[str, list[Any]] = defaultdict(list)
        for f in self._failures:
            grouped[f.error_message].append(f.item)
        return dict(grouped)

    @property
    def failures_by_stage(self) -> dict[str, list[Any]]:
        """Hosted groups remote-URL failures by ingestion stage; flowlab never fetches URLs, so this is empty."""
        return {}

    def __str__(self) -> str:
        return self.detail
