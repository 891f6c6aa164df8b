"""The annotation form the RLHF and chat kinds share: ratings on the flow's dimensions, how strongly one of two
is preferred (a Likert scale), and why. Each check returns the value as stored or raises the `Refusal` that
`refuse(field, detail)` makes, naming the field within the kind's own answer."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec

from flowlab import schemas
from flowlab.server.kinds import Refusal

if TYPE_CHECKING:
    from flowlab.server.model import Lease
    from flowlab.server.store import Op

MAX_JUSTIFICATION_CHARS = 10_000
MAX_TEXT_RATING_CHARS = 5_000

Refuse = Callable[[str, str], Refusal]
_json = msgspec.json.Encoder()


def annotation_op(lease: Lease, record: schemas.Annotation | schemas.Conversation, annotator_id: str, now: float) -> Op:
    """The row that makes a checked annotation (RLHF or chat) durable, the record completed as stored: who, when
    answered, and since when its task was on screen."""
    record.annotator_id, record.created_at, record.shown_at = annotator_id, now, lease.on_screen_since
    return (
        "INSERT OR IGNORE INTO annotations (task_id, item_id, annotator_id, datapoint, body, created_at, shown_at) "
        "VALUES (?,?,?,?,?,?,?)",
        (
            lease.task_id,
            lease.item.id,
            annotator_id,
            record.datapoint,
            _json.encode(record).decode(),
            now,
            record.shown_at,
        ),
    )


def check_ratings(
    dimensions: list[schemas.Dimension], given: dict[str, Any], what: str, field: str, refuse: Refuse
) -> dict[str, schemas.RatingValue]:
    """One rated thing's ratings (`what` names it to the annotator: "Response 2", "The reply in branch 1"):
    every required dimension rated, each value in its dimension's range, "not applicable" where allowed."""
    extra = sorted(set(given) - {dim.key for dim in dimensions})
    if extra:
        raise refuse(field, f"{what}: {extra} are not dimensions of this flow.")
    out: dict[str, schemas.RatingValue] = {}
    for dim in dimensions:
        where = f"{field}.{dim.key}"
        value = given.get(dim.key)
        label = dim.label or dim.key
        if value is None:
            if dim.key in given and dim.allow_na:
                out[dim.key] = None  # "not applicable", said explicitly
            elif dim.required:
                raise refuse(where, f"{what}: rate {label}.")
            continue
        out[dim.key] = check_value(dim, value, f"{what}: {label}", lambda detail, w=where: refuse(w, detail))
    return out


def check_value(
    dim: schemas.Dimension, value: Any, label: str, refuse: Callable[[str], Refusal]
) -> schemas.RatingValue:
    if dim.type == "scale":
        if isinstance(value, bool) or not isinstance(value, int) or not dim.min <= value <= dim.max:
            raise refuse(f"{label}: a whole number from {dim.min} to {dim.max}.")
    elif dim.type == "boolean":
        if not isinstance(value, bool):
            raise refuse(f"{label}: yes or no (true or false).")
    elif dim.type == "category":
        if value not in dim.options:
            raise refuse(f"{label}: one of {dim.options}.")
    else:
        if not isinstance(value, str) or len(value) > MAX_TEXT_RATING_CHARS:
            raise refuse(f"{label}: text of at most {MAX_TEXT_RATING_CHARS:,} characters.")
        if dim.required and not value.strip():
            raise refuse(f"{label}: write something.")
    return value  # type: ignore[no-any-return]


def check_likert(scale: int, likert: Any, first_chosen: bool, noun: str, refuse: Refuse) -> int:
    """How much better the chosen one of two is, 1 (the first much better) to `scale` (the second), leaning
    the way of the choice."""
    if likert is None or isinstance(likert, bool) or not isinstance(likert, int) or not 1 <= likert <= scale:
        raise refuse("likert", f"Say how much better, from 1 (the first {noun} much better) to {scale} (the second).")
    middle = (scale + 1) / 2
    if (first_chosen and likert > middle) or (not first_chosen and likert < middle):
        raise refuse("likert", f"The strength leans toward the other {noun} than the one you chose.")
    return likert


def check_justification(requirement: str, min_chars: int, given: str | None, refuse: Refuse) -> str | None:
    """The justification as stored (stripped; None when empty), within the flow's requirement."""
    justification = (given or "").strip() or None
    if requirement == "off" and justification:
        raise refuse("justification", "This flow asks for no justification.")
    if justification is not None and len(justification) > MAX_JUSTIFICATION_CHARS:
        raise refuse("justification", f"A justification holds at most {MAX_JUSTIFICATION_CHARS:,} characters.")
    least = max(1, min_chars)
    if requirement == "required" and len(justification or "") < least:
        raise refuse("justification", f"Say why, in at least {least} characters.")
    return justification
