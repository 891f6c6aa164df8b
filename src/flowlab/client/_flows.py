"""What the sync and async flow objects share: identity, cached config, and argument handling."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any, get_args

import msgspec

from flowlab import schemas
from flowlab.client._errors import ValidationError
from flowlab.client._models import FlowItemStatus
from flowlab.settings import as_flags, unhonoured


def flow_options(
    allow_ties: bool,
    pair_selection: str,
    lease_seconds: float,
    drain_seconds: float | None,
    render_markdown: bool,
    validation_pairs: Any,
    gold_rate: float,
) -> dict[str, Any]:
    options: dict[str, Any] = {
        "allow_ties": allow_ties,
        "pair_selection": pair_selection,
        "lease_seconds": lease_seconds,
        "render_markdown": render_markdown,
        "gold_rate": gold_rate,
    }
    if drain_seconds is not None:
        options["drain_seconds"] = drain_seconds
    if validation_pairs:
        options["validation_pairs"] = list(validation_pairs)
    return options


def cap_option(max_votes_per_annotator: int | None) -> dict[str, Any]:
    """The answers one person may give an item, as the request carries it (nothing: the kind's default)."""
    return {} if max_votes_per_annotator is None else {"max_votes_per_annotator": max_votes_per_annotator}


def stop_option(stop_when: str | None, stop_k: int, stop_confidence: float) -> dict[str, Any]:
    """A ranking flow's stopping rule as the request carries it (checked here, so a typo fails at once)."""
    if stop_when is None:
        return {}
    rules = tuple(r for r in get_args(schemas.StopRule) if r != "never")
    if stop_when not in rules:
        raise ValidationError(
            422,
            f"stop_when must be one of {', '.join(map(repr, rules))} (or None to run to the maximum); "
            f"got {stop_when!r}.",
            field="stop_when",
        )
    return {"stop_when": {"rule": stop_when, "k": stop_k, "confidence": stop_confidence}}


def classify_options(
    categories: Any,
    max_responses_per_datapoint: int,
    min_responses_per_datapoint: int,
    validation_set_id: str | None,
    settings: Any,
    drain_duration: float | None,
    serve_timeout: float | None,
) -> dict[str, Any]:
    """A classify flow's request body, checked as the hosted SDK checks it (its messages, as ValueErrors)."""
    pairs = []
    for c in categories:
        label, value = (c, c) if isinstance(c, str) else (c[0], c[1])
        pairs.append({"label": str(label), "value": str(value)})
    if not 2 <= len(pairs) <= 8:
        raise ValidationError(422, "Categories must contain between 2 and 8 entries.", field="categories")
    if len({p["value"] for p in pairs}) != len(pairs):
        raise ValidationError(422, "Category values must be unique.", field="categories")
    if min_responses_per_datapoint < 1:
        raise ValidationError(
            422, "Min responses per datapoint must be at least 1.", field="min_responses_per_datapoint"
        )
    if max_responses_per_datapoint < min_responses_per_datapoint:
        raise ValidationError(
            422,
            "Max responses per datapoint must be at least min responses per datapoint.",
            field="max_responses_per_datapoint",
        )
    options: dict[str, Any] = {
        "kind": "classify",
        "categories": pairs,
        "max_response_threshold": max_responses_per_datapoint,
        "min_response_threshold": min_responses_per_datapoint,
        **settings_option(settings),
    }
    if validation_set_id is not None:
        options["validation_set_id"] = validation_set_id
    if drain_duration is not None:
        options["drain_seconds"] = drain_duration
    if serve_timeout is not None:
        options["lease_seconds"] = serve_timeout
    return options


def one_of(hosted: Any, own: Any, name: str) -> Any:
    """A setting given by its hosted name or by flowlab's, not both."""
    if hosted is not None and own is not None and hosted != own:
        raise ValidationError(
            422, f"{name} and flowlab's name for it were both given, with different values.", field=name
        )
    return hosted if hosted is not None else own


def lease_or_default(seconds: float | None) -> float:
    """A task's lease: the flow's serve timeout, 60 s unless given."""
    return 60.0 if seconds is None else seconds


def rlhf_options(
    dimensions: Any,
    rewrite: str,
    likert_scale: int,
    justification: str,
    justification_min_chars: int,
    max_rewrite_chars: int,
    lease_seconds: float | None,
    drain_seconds: float | None,
    settings: Any,
) -> dict[str, Any]:
    """An RLHF flow's request body. `dimensions`: None for the seed's four (1-5), or a list of dimension keys
    (1-5 scales), dicts or `schemas.Dimension`s."""
    spec: dict[str, Any] = {
        "rewrite": rewrite,
        "likert_scale": likert_scale,
        "justification": justification,
        "justification_min_chars": justification_min_chars,
        "max_rewrite_chars": max_rewrite_chars,
    }
    if dimensions is not None:
        if isinstance(dimensions, str | Mapping):
            raise ValidationError(422, "dimensions is a list of dimensions.", field="dimensions")
        spec["dimensions"] = [_dimension(d, i) for i, d in enumerate(dimensions)]
    options: dict[str, Any] = {
        "kind": "rlhf",
        "rlhf": spec,
        **settings_option(settings),
    }
    if lease_seconds is not None:  # else the server's default for RLHF tasks, 10 minutes
        options["lease_seconds"] = lease_seconds
    if drain_seconds is not None:
        options["drain_seconds"] = drain_seconds
    return options


def _dimension(d: Any, i: int) -> dict[str, Any]:
    if isinstance(d, str):
        return {"key": d}
    if isinstance(d, schemas.Dimension):
        return msgspec.structs.asdict(d)
    if isinstance(d, Mapping):
        return dict(d)
    raise ValidationError(
        422,
        f"dimensions[{i}] is a key, a dict or a flowlab.schemas.Dimension; got {type(d).__name__}.",
        field=f"dimensions[{i}]",
    )


def settings_option(settings: Any, *, stacklevel: int = 4) -> dict[str, Any]:
    """`{"settings": flags}` for a request body (nothing when there are none), with a warning naming the
    flags flowlab keeps but does not act on."""
    try:
        flags = as_flags(settings)
    except ValueError as exc:
        raise ValidationError(422, str(exc), field="settings") from None
    ignored = unhonoured(flags)
    if ignored:
        warnings.warn(
            f"flowlab keeps these settings with the flow but does not act on them (features or task types it does "
            f"not have): {', '.join(ignored)}. See flowlab.settings.HONOURED for those it does.",
            stacklevel=stacklevel,
        )
    return {"settings": flags} if flags else {}


class _Bound:
    """An object that lives on one server and is identified by its id there."""

    _transport: Any

    @property
    def id(self) -> str:
        raise NotImplementedError

    @property
    def url(self) -> str:
        """The server this object lives on."""
        return str(self._transport.url)

    @property
    def api_key(self) -> str | None:
        """The key this object's requests are made with."""
        return self._transport.api_key  # type: ignore[no-any-return]

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.id == self.id  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(self.id)


class FlowBase(_Bound):
    """A flow: the question shown to annotators and the per-item vote budget."""

    def __init__(self, transport: Any, config: schemas.Flow) -> None:
        self._transport = transport
        self.config = config

    @property
    def id(self) -> str:
        return self.config.id

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def instruction(self) -> str:
        return self.config.instruction

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self.id} {self.name!r} items={self.config.item_count} "
            f"thresholds={self.config.min_response_threshold}..{self.config.max_response_threshold}>"
        )


class FlowItemBase(_Bound):
    """One batch of datapoints pushed into a flow, with its own time-to-live and config snapshot."""

    def __init__(self, transport: Any, status: FlowItemStatus) -> None:
        self._transport = transport
        self.last_status = status

    @property
    def id(self) -> str:
        return self.last_status.id

    @property
    def flow_id(self) -> str:
        return self.last_status.flow_id

    @property
    def keys(self) -> list[str]:
        return self.last_status.keys

    def __repr__(self) -> str:
        s = self.last_status
        return f"<{type(self).__name__} {self.id} {s.state.value} votes={s.response_count}/{s.max_response_threshold}>"


def listwise_options(
    k: int,
    mode: str,
    lease_seconds: float | None,
    drain_seconds: float | None,
    render_markdown: bool,
    starting_elo: float,
    stop_when: str | None,
    stop_k: int,
    stop_confidence: float,
    max_votes_per_annotator: int | None,
) -> dict[str, Any]:
    """A listwise flow's create request beside name, instruction and thresholds (checked here, so a typo fails
    at once)."""
    if mode not in ("order", "best_worst"):
        raise ValidationError(
            422, f"mode must be 'order' (the whole order) or 'best_worst'; got {mode!r}.", field="mode"
        )
    if not 3 <= k <= 8:
        raise ValidationError(422, f"k is how many datapoints a task shows: 3 to 8; got {k!r}.", field="k")
    options: dict[str, Any] = {
        "kind": "listwise",
        "listwise": {"k": k, "mode": mode},
        "render_markdown": render_markdown,
        "starting_elo": starting_elo,
        **stop_option(stop_when, stop_k, stop_confidence),
    }
    for name, value in (
        ("lease_seconds", lease_seconds),
        ("drain_seconds", drain_seconds),
        ("max_votes_per_annotator", max_votes_per_annotator),
    ):
        if value is not None:
            options[name] = value
    return options
