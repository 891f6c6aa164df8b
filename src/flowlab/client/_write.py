"""The write kind's SDK operations (the sans-I/O generators both twins drive): its flow options, its tasks as
the server takes them, its results and demonstrations, the formats made from them, and the best demonstration
per prompt once a review flow has rated them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flowlab import formats, schemas
from flowlab.client import _core as core
from flowlab.client._core import Call, Op, decode
from flowlab.client._errors import ValidationError

TASK_KEYS = {"id", "prompt", "guidance", "reference", "responses", "private_metadata", "name"}


def write_options(
    min_chars: int,
    max_chars: int,
    allow_paste: bool,
    review: Any,
    include_model_responses: bool,
    review_time_to_live: float | None,
    lease_seconds: float | None,
    drain_seconds: float | None,
    settings: Any,
) -> dict[str, Any]:
    """A write flow's request body; `review` is an RLHF flow (or its id) whose items rate the demonstrations."""
    from flowlab.client._flows import settings_option

    spec: dict[str, Any] = {"min_chars": min_chars, "max_chars": max_chars, "allow_paste": allow_paste}
    spec |= review_spec(review, include_model_responses, review_time_to_live)
    options: dict[str, Any] = {"kind": "write", "write": spec, **settings_option(settings)}
    if lease_seconds is not None:  # else the server's default for write tasks, 15 minutes
        options["lease_seconds"] = lease_seconds
    if drain_seconds is not None:
        options["drain_seconds"] = drain_seconds
    return options


def review_spec(review: Any, include_model_responses: bool, time_to_live: float | None) -> dict[str, Any]:
    if review is None:
        return {}
    flow_id = review if isinstance(review, str) else getattr(review, "id", None)
    if not isinstance(flow_id, str):
        raise ValidationError(422, "review is an RLHF flow (or its id) whose items rate the demonstrations.")
    out: dict[str, Any] = {"review_flow_id": flow_id, "review_model_responses": include_model_responses}
    if time_to_live is not None:
        out["review_time_to_live"] = time_to_live
    return out


def set_review(
    config: schemas.Flow, review: Any, include_model_responses: bool, time_to_live: float | None
) -> Op[schemas.Flow]:
    """The flow's config with its review flow set (None: no review), changed on the server."""
    spec = schemas.WriteSpec() if config.write is None else config.write
    current = {
        "min_chars": spec.min_chars,
        "max_chars": spec.max_chars,
        "allow_paste": spec.allow_paste,
    }
    body = current | review_spec(review, include_model_responses, time_to_live)
    return (yield from core.update_flow(config.id, {"write": body}))


def write_task(d: Any, where: str, metadata: Mapping[str, Any] | None) -> Op[dict[str, Any]]:
    """A prompt as the server takes it: a string, or `{"id", "prompt": str or [{role, content}, ...], "guidance",
    "reference", "responses": [{"source_id", "content"}, ...] (model responses for the review, optional)}`."""
    if isinstance(d, str):
        d = {"prompt": d}
    if not isinstance(d, Mapping):
        raise ValidationError(
            422,
            f"{where}: a write task is a prompt (a string) or a dict with a prompt, not {type(d).__name__}.",
            field=where,
        )
    unknown = set(d) - TASK_KEYS
    if unknown:
        raise ValidationError(
            422, f"{where} has unknown keys {sorted(unknown)}; a prompt takes {sorted(TASK_KEYS)}.", field=where
        )
    if d.get("responses"):
        task = yield from core.rlhf_task({k: d[k] for k in d if k not in ("guidance", "reference")}, where)
    else:
        task = {k: (str(d[k]) if k == "id" else d[k]) for k in ("id", "prompt", "private_metadata", "name") if d.get(k)}
    for k in ("guidance", "reference"):
        if d.get(k) is not None:
            task[k] = str(d[k])
    if metadata is not None and "private_metadata" not in task:
        task["private_metadata"] = dict(metadata)
    return task


def write_results(item_id: str) -> Op[schemas.WriteResults]:
    resp = yield Call("GET", f"/v1/items/{item_id}/results")
    return decode(resp.content, schemas.WriteResults)


def demonstrations(item_id: str) -> Op[list[schemas.Demonstration]]:
    resp = yield Call("GET", f"/v1/items/{item_id}/demonstrations")
    return decode(resp.content, list[schemas.Demonstration])


def sft_rows(item_id: str) -> Op[list[dict[str, Any]]]:
    detail = yield from core.item_detail(item_id)
    return formats.demonstration_sft_rows(detail.datapoints, (yield from demonstrations(item_id)))


def rows(item_id: str) -> Op[list[dict[str, Any]]]:
    detail = yield from core.item_detail(item_id)
    return formats.demonstration_rows(detail.datapoints, (yield from demonstrations(item_id)), item_id=item_id)


def records(item_id: str, flow_id: str) -> Op[list[dict[str, Any]]]:
    detail = yield from core.item_detail(item_id)
    names = {a.id: a.name for a in (yield from core.list_annotators())}
    return formats.demonstration_records(
        detail.datapoints,
        (yield from demonstrations(item_id)),
        item_id=item_id,
        contributors=names,
        metadata={"flow_id": flow_id, "instruction": detail.status.instruction},
    )


def best(item_id: str, timeout: float | None) -> Op[list[dict[str, Any]]]:
    """The best demonstration per prompt: waits (up to `timeout`; None: no limit) for the write item to end and
    for its review item, when the flow has a review stage, to end too; then ranks by the review's results."""
    results = yield from core.wait_for_results(item_id, timeout, False, write_results)
    review = None
    if results.review_item_id is not None:
        review = yield from core.wait_for_results(results.review_item_id, timeout, False, core.rlhf_results)
    return formats.best_demonstrations(results, review)
