"""The SDK's one core: every operation is a generator that yields requests and receives responses.

The sync and async clients drive the same generators and differ only in how they do I/O, so the request
building, validation, waiting logic and response parsing exist exactly once.
"""

from __future__ import annotations

import mimetypes
import os
import time
import warnings
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any, TypeVar
from urllib.parse import urlsplit

import msgspec

from flowlab import schemas
from flowlab.client._chat import chat_task
from flowlab.client._errors import (
    APIError,
    ConnectError,
    FlowlabError,
    Timeout,
    Unavailable,
    ValidationError,
    error_for,
)
from flowlab.client._models import ClassifyFlowItemResult, FlowItemResult, FlowItemStatus, RlhfFlowItemResult
from flowlab.client._uploads import (
    FailedUpload,
    FailedUploadException,
    missing_reason,
    path_suffix,
    unsupported_reason,
    upload_keys,
)
from flowlab.config import rapidata_config

T = TypeVar("T")

LONG_POLL_SECONDS = 25.0
WAIT_CHUNK = 1000


@dataclass
class Call:
    """One HTTP request to make."""

    method: str
    path: str
    params: dict[str, Any] | None = None
    json: Any = None
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    timeout: float | None = None  # None: the client's default


Op = Generator[Call, Any, T]

_encoder = msgspec.json.Encoder()


def body(call: Call) -> tuple[bytes | None, dict[str, str]]:
    if call.content is not None:
        return call.content, call.headers
    if call.json is None:
        return None, call.headers
    return _encoder.encode(call.json), {"Content-Type": "application/json", **call.headers}


MOVED_TRIES = 20  # a cluster's takeover lasts about two seconds; these retries span ten


def moved(status: int, content: bytes) -> float | None:
    """How long to wait before sending a request again that a cluster answered 503 `moved` (what it names is
    passing from one server process to another; nothing was done), or None for any other answer."""
    if status != 503 or b'"moved"' not in content:
        return None
    try:
        problem = msgspec.json.decode(content)
    except msgspec.DecodeError:
        return None
    return 0.5 if isinstance(problem, dict) and problem.get("code") == "moved" else None


def check(status: int, content: bytes, reason: str) -> None:
    """Raise the typed error for a problem answer."""
    if status < 400:
        return
    try:
        problem = msgspec.json.decode(content) if content else None
    except msgspec.DecodeError:
        problem = None
    raise error_for(
        status,
        problem if isinstance(problem, dict) else None,
        f"The server answered {status} {reason}: {content[:200].decode(errors='replace')}",
    )


def decode(content: bytes, type: type[T]) -> T:
    return msgspec.json.decode(content, type=type)


# ------------------------------------------------------------------ flows


def create_flow(
    name: str,
    instruction: str,
    max_response_threshold: int,
    min_response_threshold: int | None,
    options: Mapping[str, Any],
) -> Op[schemas.Flow]:
    payload: dict[str, Any] = {
        "name": name,
        "instruction": instruction,
        "max_response_threshold": max_response_threshold,
        **options,
    }
    if min_response_threshold is not None:
        payload["min_response_threshold"] = min_response_threshold
    if payload.get("validation_pairs"):
        payload["validation_pairs"] = yield from _validation_pairs(payload["validation_pairs"])
    resp = yield Call("POST", "/v1/flows", json=payload)
    return decode(resp.content, schemas.Flow)


def create_validation_set(name: str, pairs: Iterable[Any]) -> Op[schemas.ValidationSet]:
    body = {"name": name, "pairs": (yield from _validation_pairs(pairs))}
    resp = yield Call("POST", "/v1/validation-sets", json=body)
    return decode(resp.content, schemas.ValidationSet)


def get_validation_set(set_id: str) -> Op[schemas.ValidationSet]:
    resp = yield Call("GET", f"/v1/validation-sets/{set_id}")
    return decode(resp.content, schemas.ValidationSet)


def _same_length(name: str, values: Sequence[Any] | None, n: int) -> None:
    if values is not None and len(values) != n:
        raise ValidationError(
            422, f"{name} has {len(values)} entries for {n} datapoints; give one per datapoint.", field=name
        )


def _set_dimensions(dimensions: Sequence[str]) -> list[str]:
    """Hosted's tracking dimensions for a validation set: kept with it (flowlab scores people over all gold)."""
    if isinstance(dimensions, str) or not all(isinstance(d, str) and d.strip() for d in dimensions):
        raise ValidationError(422, "dimensions is a list of non-empty names, e.g. ['quality'].", field="dimensions")
    return list(dimensions)


def classification_set(
    name: str,
    instruction: str,
    answer_options: Sequence[str],
    datapoints: Sequence[Any],
    truths: Sequence[Sequence[str]],
    data_type: str = "media",
    contexts: Sequence[str] | None = None,
    media_contexts: Sequence[Sequence[Any]] | None = None,
    explanations: Sequence[str | None] | None = None,
    dimensions: Sequence[str] = (),
) -> Op[schemas.ValidationSet]:
    """Gold labels for classify flows, checked as hosted's `create_classification_set` checks them."""
    if not datapoints:
        raise ValidationError(422, "Datapoints cannot be empty", field="datapoints")
    if len(datapoints) != len(truths):
        raise ValidationError(422, "The number of datapoints and truths must be equal", field="truths")
    if not all(isinstance(t, list | tuple) for t in truths):
        raise ValidationError(422, "Truths must be a list of lists or tuples", field="truths")
    for name_of, values in (("contexts", contexts), ("media_contexts", media_contexts), ("explanations", explanations)):
        _same_length(name_of, values, len(datapoints))
    kept_dimensions = _set_dimensions(dimensions)
    options = set(answer_options)
    labels = []
    for i, d in enumerate(datapoints):
        wrong = [t for t in truths[i] if t not in options]
        if not truths[i] or wrong:
            raise ValidationError(
                422,
                f"truths[{i}] must name one or more of answer_options {list(answer_options)}.",
                field=f"truths[{i}]",
            )
        point = yield from _datapoint(d, f"datapoints[{i}]", text_only=data_type == "text")
        if contexts is not None:
            point["context"] = contexts[i]
        if media_contexts is not None:
            if isinstance(media_contexts[i], str | bytes) or not isinstance(media_contexts[i], Sequence):
                raise ValidationError(
                    422, f"media_contexts[{i}] must be a list of paths or URLs.", field=f"media_contexts[{i}]"
                )
            point["context_assets"] = own = []
            for j, a in enumerate(media_contexts[i]):
                own.append((yield from _asset(a, f"media_contexts[{i}][{j}]")))
        label: dict[str, Any] = {"datapoint": point, "truths": [str(t) for t in truths[i]]}
        if explanations is not None and explanations[i]:
            label["explanation"] = explanations[i]
        labels.append(label)
    body = {"name": name, "instruction": instruction, "labels": labels, "dimensions": kept_dimensions}
    resp = yield Call("POST", "/v1/validation-sets", json=body)
    return decode(resp.content, schemas.ValidationSet)


def compare_set(
    name: str,
    instruction: str,
    datapoints: Sequence[Sequence[Any]],
    truths: Sequence[Any],
    data_type: str = "media",
    contexts: Sequence[str] | None = None,
    media_contexts: Sequence[Sequence[Any]] | None = None,
    explanation: Sequence[str | None] | None = None,
    dimensions: Sequence[str] = (),
) -> Op[schemas.ValidationSet]:
    """Gold pairs for ranking flows, from hosted's `create_compare_set` arguments: each truth is the better
    of its comparison's two datapoints."""
    if not datapoints:
        raise ValidationError(422, "Datapoints cannot be empty", field="datapoints")
    if len(datapoints) != len(truths):
        raise ValidationError(422, "The number of datapoints and truths must be equal", field="truths")
    if not all(isinstance(t, str) for t in truths):
        raise ValidationError(422, "Truths must be a list of strings", field="truths")
    _same_length("explanation", explanation, len(datapoints))
    kept_dimensions = _set_dimensions(dimensions)
    if contexts or media_contexts:
        raise ValidationError(
            422,
            "flowlab shows a gold pair under the context of the item it is mixed into, so annotators cannot tell "
            "it from the real pairs; leave contexts and media_contexts out.",
            field="contexts" if contexts else "media_contexts",
        )
    pairs = []
    for i, (pair, truth) in enumerate(zip(datapoints, truths, strict=True)):
        if isinstance(pair, str) or len(pair) != 2:
            raise ValidationError(
                422, f"datapoints[{i}] must hold the two datapoints compared.", field=f"datapoints[{i}]"
            )
        if truth not in pair:
            raise ValidationError(
                422, f"truths[{i}] must be one of the two datapoints of datapoints[{i}].", field=f"truths[{i}]"
            )
        a = yield from _datapoint(pair[0], f"datapoints[{i}][0]", text_only=data_type == "text")
        b = yield from _datapoint(pair[1], f"datapoints[{i}][1]", text_only=data_type == "text")
        gold: dict[str, Any] = {"a": a, "b": b, "answer": "a" if truth == pair[0] else "b"}
        if explanation is not None and explanation[i]:
            gold["explanation"] = explanation[i]
        pairs.append(gold)
    body = {"name": name, "instruction": instruction, "pairs": pairs, "dimensions": kept_dimensions}
    resp = yield Call("POST", "/v1/validation-sets", json=body)
    return decode(resp.content, schemas.ValidationSet)


def get_flow(flow_id: str) -> Op[schemas.Flow]:
    resp = yield Call("GET", f"/v1/flows/{flow_id}")
    return decode(resp.content, schemas.Flow)


def find_flows(amount: int, page: int = 1, name: str = "") -> Op[list[schemas.Flow]]:
    if amount < 1 or page < 1:
        raise ValidationError(422, "amount and page must be at least 1 (pages count from 1).", field="amount")
    params = {"limit": amount, "offset": (page - 1) * amount, "name": name}
    resp = yield Call("GET", "/v1/flows", params=params)
    return decode(resp.content, list[schemas.Flow])


def update_flow(flow_id: str, changes: Mapping[str, Any]) -> Op[schemas.Flow]:
    changes = {k: v for k, v in changes.items() if v is not None}
    if not changes:
        raise ValidationError(
            422, "update_config() needs at least one setting to change, e.g. update_config(instruction='...')."
        )
    if changes.get("validation_pairs"):
        changes["validation_pairs"] = yield from _validation_pairs(changes["validation_pairs"])
    if "audiences" in changes:  # audiences, their views or ids; [] opens the flow to everyone again
        audiences = changes["audiences"]
        audiences = [audiences] if isinstance(audiences, str) or hasattr(audiences, "id") else audiences
        changes["audiences"] = [a if isinstance(a, str) else a.id for a in audiences]
    resp = yield Call("PATCH", f"/v1/flows/{flow_id}", json=changes)
    return decode(resp.content, schemas.Flow)


def delete_flow(flow_id: str) -> Op[None]:
    yield Call("DELETE", f"/v1/flows/{flow_id}")


def list_items(flow_id: str, amount: int | None = None, page: int = 1) -> Op[list[FlowItemStatus]]:
    """A page of `amount` items, newest first, as hosted pages them; `amount=None`: every item."""
    params: dict[str, Any] = {"order": "newest"}
    if amount is not None:
        if amount < 1 or page < 1:
            raise ValidationError(422, "amount and page must be at least 1 (pages count from 1).", field="amount")
        params |= {"limit": amount, "offset": (page - 1) * amount}
    resp = yield Call("GET", f"/v1/flows/{flow_id}/items", params=params)
    return decode(resp.content, list[FlowItemStatus])


def preheat() -> Op[schemas.Preheated]:
    resp = yield Call("POST", "/v1/preheat")
    return decode(resp.content, schemas.Preheated)


# ------------------------------------------------------------------ batches and datapoints


def create_item(
    flow_id: str,
    datapoints: Iterable[Any],
    *,
    context: str | None = None,
    contexts: Sequence[str] | None = None,
    context_assets: Iterable[Any] | None = None,
    datapoint_assets: Sequence[Sequence[Any]] | None = None,
    data_type: str = "media",
    private_metadata: Sequence[Mapping[str, Any]] | Mapping[str, Any] | None = None,
    accept_failed_uploads: bool = False,
    time_to_live: float | None = None,
    rlhf: bool = False,
    pairs: Sequence[tuple[int, int]] | None = None,
    chat: bool = False,
    write: bool = False,
) -> Op[FlowItemStatus]:
    """A batch, in hosted's shape: `private_metadata` and `contexts` are lists with one entry per datapoint
    (a single dict of `private_metadata` is flowlab's item-level metadata); `data_type="text"` sends strings
    as text; with `accept_failed_uploads` datapoints whose file cannot be uploaded are left out, with a
    warning; `time_to_live=None` takes the server's default."""
    if isinstance(datapoints, str | bytes | Mapping):
        raise ValidationError(
            422, "datapoints must be a list (of texts, paths, URLs or dicts), not a single value.", field="datapoints"
        )
    if data_type not in ("media", "text"):
        raise ValidationError(422, f"data_type is 'media' or 'text'; got {data_type!r}.", field="data_type")
    given = list(datapoints)
    item_metadata = private_metadata if isinstance(private_metadata, Mapping) else None
    per_datapoint = None if isinstance(private_metadata, Mapping) else private_metadata
    for name, values in (
        ("contexts", contexts),
        ("private_metadata", per_datapoint),
        ("context_assets", datapoint_assets),
    ):
        if values is not None and (isinstance(values, str) or not isinstance(values, Sequence)):
            raise ValidationError(422, f"{name} must be a list with one entry per datapoint.", field=name)
        if values and len(values) != len(given):
            raise ValidationError(
                422,
                f"{name} has {len(values)} entries for {len(given)} datapoints; give one per datapoint.",
                field=name,
            )
    if context_assets is not None and not isinstance(context_assets, str | bytes | Mapping | Sequence):
        context_assets = list(context_assets)
    _check_context_assets(context_assets, datapoint_assets)
    points = []
    failed: list[FailedUpload[Any]] = []
    for i, d in enumerate(given):
        if rlhf:
            points.append((yield from rlhf_task(d, f"datapoints[{i}]")))
            continue
        if write:
            from flowlab.client._write import write_task

            points.append((yield from write_task(d, f"datapoints[{i}]", per_datapoint[i] if per_datapoint else None)))
            continue
        if chat:
            point = chat_task(d, f"datapoints[{i}]")
            if per_datapoint:
                point["private_metadata"] = per_datapoint[i]
            points.append(point)
            continue
        try:
            point = yield from _datapoint(d, f"datapoints[{i}]", text_only=data_type == "text")
        except FailedUploadException as exc:
            failed += exc.detailed_failures
            continue
        if contexts:
            if not isinstance(contexts[i], str) or not contexts[i]:
                raise ValidationError(422, f"contexts[{i}] must be a non-empty string.", field=f"contexts[{i}]")
            point["context"] = contexts[i]
        if per_datapoint:
            if not isinstance(per_datapoint[i], Mapping):
                raise ValidationError(422, f"private_metadata[{i}] must be a dict.", field=f"private_metadata[{i}]")
            point["private_metadata"] = dict(per_datapoint[i])
        if datapoint_assets:
            given_assets = datapoint_assets[i]
            if isinstance(given_assets, str | bytes | Mapping) or not isinstance(given_assets, Sequence):
                raise ValidationError(
                    422, f"context_assets[{i}] must be a list (of texts, paths or URLs).", field=f"context_assets[{i}]"
                )
            point["context_assets"] = own = []
            for j, a in enumerate(given_assets):
                own.append((yield from _asset(a, f"context_assets[{i}][{j}]")))
        points.append(point)
    if failed and not accept_failed_uploads:
        raise FailedUploadException(failed)
    reasons = "; ".join(f.error_message for f in failed)
    if failed and pairs is not None:
        raise ValidationError(
            422,
            "pairs name datapoint positions, which leaving out failed uploads would shift; fix the uploads "
            "or leave out pairs: " + reasons,
            field="pairs",
        )
    if failed:
        warnings.warn(
            f"{len(failed)} of {len(given)} datapoints could not be uploaded and were left out: " + reasons,
            stacklevel=4,
        )
    _key_uploads(points)
    assets = []
    for i, a in enumerate(context_assets or ()):
        assets.append((yield from _asset(a, f"context_assets[{i}]")))
    payload: dict[str, Any] = {"datapoints": points}
    if time_to_live is not None:
        payload["time_to_live"] = time_to_live
    if context is not None:
        payload["context"] = context
    if assets:
        payload["context_assets"] = assets
    if item_metadata is not None:
        payload["private_metadata"] = dict(item_metadata)
    if pairs is not None:
        payload["pairs"] = [[int(a), int(b)] for a, b in pairs]
    resp = yield Call("POST", f"/v1/flows/{flow_id}/items", json=payload)
    return decode(resp.content, FlowItemStatus)


MAX_CONTEXT_ASSETS = 10  # as hosted: the assets shown beside a datapoint or an item


def _check_context_assets(item_assets: Any, datapoint_assets: Any) -> None:
    """Context assets as hosted bounds them, checked before anything is uploaded: an item's list holds 1 to 10
    (None for none), and each datapoint's list at most 10 (flowlab also takes an empty one: none for it)."""
    if item_assets is not None:
        if isinstance(item_assets, str | bytes | Mapping) or not isinstance(item_assets, Sequence):
            raise ValidationError(
                422, "context_assets is a list of texts, paths or URLs shown with every pair.", field="context_assets"
            )
        n = len(item_assets)
        if not 1 <= n <= MAX_CONTEXT_ASSETS:
            raise ValidationError(
                422,
                f"context_assets holds 1 to {MAX_CONTEXT_ASSETS} assets (texts, paths or URLs); got {n}. "
                "Leave it out (None) to show none.",
                field="context_assets",
            )
    for i, assets in enumerate(datapoint_assets or ()):
        if isinstance(assets, Sequence) and not isinstance(assets, str | bytes) and len(assets) > MAX_CONTEXT_ASSETS:
            raise ValidationError(
                422,
                f"context_assets[{i}] holds {len(assets)} assets; a datapoint shows at most {MAX_CONTEXT_ASSETS}.",
                field=f"context_assets[{i}]",
            )


def _asset(a: Any, where: str) -> Op[dict[str, Any]]:
    """A context asset (text, path or URL) as the server takes it."""
    dp = yield from _datapoint(a, where)
    # A URL's kind (image, audio, video, a page) is the server's to tell from the URL; text is text.
    return {k: v for k, v in dp.items() if k in ("kind", "text", "url", "media", "media_type", "name")}


def _is_upload(d: Any) -> bool:
    return (
        isinstance(d, os.PathLike)
        or (isinstance(d, Mapping) and "path" in d)
        or (isinstance(d, str) and path_suffix(d) is not None)
    )


def _is_url(s: str) -> bool:
    try:
        return urlsplit(s).scheme in ("http", "https")
    except ValueError:
        return False


def _key_uploads(points: list[dict[str, Any]]) -> None:
    """Key each uploaded file by its file name, as hosted does, unless the datapoint names itself; files of one
    name from different folders keep the folders that tell them apart (see `upload_keys`)."""
    named = [p for p in points if "source" in p and "id" not in p and p.get("name") == PurePath(p["source"]).name]
    for point, key in zip(named, upload_keys([p["source"] for p in named]), strict=True):
        point["name"] = key


def _datapoint(d: Any, where: str, *, text_only: bool = False) -> Op[dict[str, Any]]:
    """A text, a local path (uploaded), a URL, or a dict with `id` and one of text/path/url/media. With
    `text_only` (hosted's data_type="text") a string is always text; else a string that names a local file
    (`path_suffix`) is uploaded, and refused with `FailedUploadException` when there is no such file."""
    if text_only and isinstance(d, str):
        return {"text": d}
    if isinstance(d, os.PathLike):
        return (yield from _upload(Path(d), where, d))
    if isinstance(d, str):
        if _is_url(d):
            return {"url": d}
        suffix = path_suffix(d)
        if suffix is None:
            return {"text": d}
        reason = unsupported_reason(d, suffix)
        if reason is not None:
            raise FailedUploadException([_failure(d, f"{where}: {reason}", "ValueError", where)])
        return (yield from _upload(Path(d), where, d))
    if isinstance(d, Mapping):
        out = {k: v for k, v in d.items() if k != "path"}
        if "path" in d:
            up = yield from _upload(Path(d["path"]), where, d)
            out = {**up, **out}
        allowed = {"id", "text", "url", "media", "media_type", "kind", "name", "private_metadata", "context", "source"}
        unknown = set(out) - allowed
        if unknown:
            raise ValidationError(
                422,
                f"{where} has unknown keys {sorted(unknown)}; a datapoint dict takes id, "
                "text, path, url, kind, name, private_metadata and context.",
                field=where,
            )
        if "id" in out:
            out["id"] = str(out["id"])
        return out
    raise ValidationError(
        422,
        f"{where} is a {type(d).__name__}; give a string (text, path or URL), a pathlib.Path, or a dict with an 'id'.",
        field=where,
    )


def _failure(item: Any, message: str, error_type: str, where: str) -> FailedUpload[Any]:
    return FailedUpload(item, message, error_type, where=where)


def _upload(path: Path, where: str, given: Any) -> Op[dict[str, Any]]:
    """Upload a local file (the server tells its type from its bytes); `given` is the datapoint as the caller gave
    it, for the failure's report."""
    shown = os.fspath(path)
    path = path.expanduser()
    if not path.is_file():
        raise FailedUploadException([_failure(given, missing_reason(shown, where), "FileNotFoundError", where)])
    data = path.read_bytes()
    media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    call = Call(
        "POST", "/v1/media", content=data, headers={"Content-Type": media_type, "X-Filename": path.name}, timeout=120.0
    )
    tries = 1 + rapidata_config.upload.maxRetries
    for attempt in range(tries):
        try:
            resp = yield call
            break
        except FlowlabError as exc:
            passing = isinstance(exc, ConnectError | Unavailable) or (type(exc) is APIError and exc.status >= 500)
            if passing and attempt + 1 < tries:
                continue  # rapidata_config.upload.maxRetries: send it again
            if not passing and not isinstance(exc, ValidationError):
                raise  # the key is wrong, or the request timed out: not the file's doing
            # Refused (not the type it says, too large), or still failing after the retries.
            detail = exc.detail if isinstance(exc, APIError) else str(exc)
            status = exc.status if isinstance(exc, APIError) else None
            failure = FailedUpload(
                given, f"{where}: {detail}", type(exc).__name__, exception=exc, http_status=status, where=where
            )
            raise FailedUploadException([failure]) from None
    ref = decode(resp.content, schemas.MediaRef)
    return {"media": ref.sha256, "media_type": ref.media_type, "kind": ref.kind, "name": path.name, "source": shown}


def _validation_pairs(pairs: Iterable[Any]) -> Op[list[dict[str, Any]]]:
    out = []
    for i, p in enumerate(pairs):
        if isinstance(p, Mapping):
            a, b, answer = p.get("a"), p.get("b"), p.get("answer")
        else:
            a, b, answer = p
        dp_a = yield from _datapoint(a, f"validation_pairs[{i}].a")
        dp_b = yield from _datapoint(b, f"validation_pairs[{i}].b")
        out.append({"a": dp_a, "b": dp_b, "answer": answer})
    return out


# ------------------------------------------------------------------ items


def item_status(item_id: str) -> Op[FlowItemStatus]:
    resp = yield Call("GET", f"/v1/items/{item_id}")
    return decode(resp.content, FlowItemStatus)


def wait_item(item_id: str, since: int, timeout: float) -> Op[FlowItemStatus]:
    resp = yield Call(
        "GET", f"/v1/items/{item_id}/wait", params={"since": since, "timeout": timeout}, timeout=timeout + 30.0
    )
    return decode(resp.content, FlowItemStatus)


def item_results(item_id: str) -> Op[FlowItemResult]:
    resp = yield Call("GET", f"/v1/items/{item_id}/results")
    return FlowItemResult.from_wire(decode(resp.content, schemas.ItemResults))


def classify_results(item_id: str) -> Op[ClassifyFlowItemResult]:
    resp = yield Call("GET", f"/v1/items/{item_id}/results")
    return ClassifyFlowItemResult.from_wire(decode(resp.content, schemas.ClassifyResults))


def rlhf_results(item_id: str) -> Op[RlhfFlowItemResult]:
    resp = yield Call("GET", f"/v1/items/{item_id}/results")
    return RlhfFlowItemResult.from_wire(decode(resp.content, schemas.RlhfResults))


def item_annotations(item_id: str) -> Op[list[schemas.Annotation]]:
    resp = yield Call("GET", f"/v1/items/{item_id}/annotations")
    return decode(resp.content, list[schemas.Annotation])


def item_conversations(item_id: str) -> Op[list[schemas.Conversation]]:
    resp = yield Call("GET", f"/v1/items/{item_id}/conversations")
    return decode(resp.content, list[schemas.Conversation])


def chat_models(flow_id: str) -> Op[list[schemas.ChatModelStatus]]:
    resp = yield Call("GET", f"/v1/flows/{flow_id}/models")
    return decode(resp.content, list[schemas.ChatModelStatus])


def rlhf_task(d: Any, where: str) -> Op[dict[str, Any]]:
    """An RLHF task as the server takes it: `{"id", "prompt", "responses": [{"source_id", "content"}, ...]}`;
    a response's `content` is text, a local path (uploaded) or a URL, as datapoints are."""
    if not isinstance(d, Mapping):
        raise ValidationError(
            422, f"{where}: an RLHF task is a dict with a prompt and responses, not {type(d).__name__}.", field=where
        )
    unknown = set(d) - {"id", "prompt", "responses", "private_metadata", "name"}
    if unknown:
        raise ValidationError(
            422,
            f"{where} has unknown keys {sorted(unknown)}; a task takes id, prompt, responses, private_metadata.",
            field=where,
        )
    responses = d.get("responses")
    if not isinstance(responses, Sequence) or isinstance(responses, str | bytes):
        raise ValidationError(422, f"{where}.responses must be a list of responses.", field=f"{where}.responses")
    out = []
    for j, r in enumerate(responses):
        at = f"{where}.responses[{j}]"
        if not isinstance(r, Mapping) or "source_id" not in r:
            raise ValidationError(422, f"{at} is a dict with a source_id and its content.", field=at)
        extra = set(r) - {"source_id", "content", "text", "url", "path", "private_metadata"}
        if extra:
            raise ValidationError(
                422,
                f"{at} has unknown keys {sorted(extra)}; a response takes source_id, content, private_metadata.",
                field=at,
            )
        given = r.get("content", {k: v for k, v in r.items() if k in ("text", "url", "path")} or None)
        if given is None:
            raise ValidationError(422, f"{at} needs its content: text, a local path or a URL.", field=at)
        body = yield from _datapoint(given, at)
        body = {k: v for k, v in body.items() if k in ("text", "url", "media", "media_type", "kind")}
        response: dict[str, Any] = {"source_id": str(r["source_id"]), **body}
        if r.get("private_metadata") is not None:
            response["private_metadata"] = dict(r["private_metadata"])
        out.append(response)
    task: dict[str, Any] = {"prompt": d.get("prompt"), "responses": out}
    for k in ("id", "private_metadata", "name"):
        if d.get(k) is not None:
            task[k] = str(d[k]) if k == "id" else d[k]
    return task


def item_labels(item_id: str) -> Op[list[schemas.Label]]:
    resp = yield Call("GET", f"/v1/items/{item_id}/labels")
    return decode(resp.content, list[schemas.Label])


def wait_items(item_ids: Sequence[str], timeout: float | None) -> Op[list[FlowItemStatus]]:
    """Long-poll until every item has ended or `timeout` passes (None: no limit); their statuses, in order.
    One request waits on all of them, so a training step's groups cost one round trip, not one each."""
    ids = list(item_ids)
    if not ids:
        return []
    if len(ids) > WAIT_CHUNK:  # the server waits on at most 1,000 at a time
        deadline = None if timeout is None else time.monotonic() + timeout
        out: list[FlowItemStatus] = []
        for i in range(0, len(ids), WAIT_CHUNK):
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            out += yield from wait_items(ids[i : i + WAIT_CHUNK], left)
        return out
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        left = LONG_POLL_SECONDS if deadline is None else max(0.0, min(LONG_POLL_SECONDS, deadline - time.monotonic()))
        resp = yield Call("POST", "/v1/items/wait", json={"item_ids": ids, "timeout": left}, timeout=left + 30.0)
        statuses = decode(resp.content, list[FlowItemStatus])
        if all(s.is_terminal for s in statuses) or (deadline is not None and time.monotonic() >= deadline):
            return statuses


def wait_for_end(item_id: str, timeout: float | None) -> Op[FlowItemStatus]:
    """Long-poll until the item ends or `timeout` passes (None: no limit); its last status, ended or not."""
    deadline = None if timeout is None else time.monotonic() + timeout
    status = yield from item_status(item_id)
    while not status.is_terminal:
        left = LONG_POLL_SECONDS if deadline is None else deadline - time.monotonic()
        if left <= 0:
            break
        status = yield from wait_item(item_id, status.version, min(left, LONG_POLL_SECONDS))
    return status


def wait_for_results(
    item_id: str, timeout: float | None, partial: bool, fetch: Callable[[str], Op[Any]] | None = None
) -> Op[Any]:
    """An item's results (with `fetch`; pairwise results by default).

    Without `partial`, wait for the item to end (`timeout` None: no limit) and raise `Timeout` when `timeout`
    passes first. With `partial`, never raise `Timeout`: `timeout` None returns what has arrived at once, without
    waiting; a `timeout` waits up to that long for the item to end, then returns what there is (the results
    say `partial` while the item still runs)."""
    if not (partial and timeout is None):
        status = yield from wait_for_end(item_id, timeout)
        if not status.is_terminal and not partial:
            raise Timeout(
                f"Flow item {item_id} is still {status.state.value} after {timeout} s with "
                f"{status.response_count} votes. Call get_results(partial=True) for what has arrived, "
                "or wait longer."
            )
    return (yield from (fetch or item_results)(item_id))


def item_matrix(item_id: str) -> Op[schemas.WinLossMatrix]:
    resp = yield Call("GET", f"/v1/items/{item_id}/matrix")
    return decode(resp.content, schemas.WinLossMatrix)


def item_votes(item_id: str) -> Op[list[schemas.Vote]]:
    resp = yield Call("GET", f"/v1/items/{item_id}/votes")
    return decode(resp.content, list[schemas.Vote])


def item_annotators(item_id: str) -> Op[list[schemas.ItemAnnotator]]:
    resp = yield Call("GET", f"/v1/items/{item_id}/annotators")
    return decode(resp.content, list[schemas.ItemAnnotator])


def item_detail(item_id: str) -> Op[schemas.ItemDetail]:
    resp = yield Call("GET", f"/v1/items/{item_id}/detail")
    return decode(resp.content, schemas.ItemDetail)


def stop_item(item_id: str) -> Op[FlowItemStatus]:
    resp = yield Call("POST", f"/v1/items/{item_id}/stop")
    return decode(resp.content, FlowItemStatus)


# ------------------------------------------------------------------ keys, annotators


def create_key(name: str) -> Op[schemas.KeyCreated]:
    resp = yield Call("POST", "/v1/keys", json={"name": name})
    return decode(resp.content, schemas.KeyCreated)


def create_annotator(name: str) -> Op[schemas.AnnotatorCreated]:
    resp = yield Call("POST", "/v1/annotators", json={"name": name})
    return decode(resp.content, schemas.AnnotatorCreated)


def list_keys() -> Op[list[schemas.KeyInfo]]:
    resp = yield Call("GET", "/v1/keys")
    return decode(resp.content, list[schemas.KeyInfo])


def revoke_key(key_id: str) -> Op[None]:
    yield Call("DELETE", f"/v1/keys/{key_id}")


def rotate_key(key_id: str) -> Op[schemas.KeyCreated]:
    resp = yield Call("POST", f"/v1/keys/{key_id}/rotate")
    return decode(resp.content, schemas.KeyCreated)


def list_annotators() -> Op[list[schemas.AnnotatorStats]]:
    resp = yield Call("GET", "/v1/annotators")
    return decode(resp.content, list[schemas.AnnotatorStats])


def revoke_annotator(annotator_id: str) -> Op[None]:
    yield Call("DELETE", f"/v1/annotators/{annotator_id}")


def set_standing(annotator_id: str, action: str) -> Op[schemas.AnnotatorStats]:
    """`suspend` or `reinstate` an annotator."""
    resp = yield Call("POST", f"/v1/annotators/{annotator_id}/{action}")
    return decode(resp.content, schemas.AnnotatorStats)


def me() -> Op[schemas.Me]:
    resp = yield Call("GET", "/v1/me")
    return decode(resp.content, schemas.Me)


# ------------------------------------------------------------------ live events


@dataclass
class StreamPlan:
    """How to follow an SSE endpoint: what to decode, and when the stream has nothing more to say."""

    path: str
    type: type
    event: str | tuple[str, ...]  # the SSE event names to decode

    def wants(self, name: str) -> bool:
        return name == self.event if isinstance(self.event, str) else name in self.event

    def finished(self, message: Any) -> bool:
        if isinstance(message, schemas.ItemEvent):
            return message.state in schemas.TERMINAL_STATES
        if isinstance(message, schemas.FlowEvent):
            return message.deleted
        return False


def item_stream(item_id: str) -> StreamPlan:
    return StreamPlan(f"/v1/items/{item_id}/events", schemas.ItemEvent, "item")


def flow_stream(flow_id: str) -> StreamPlan:
    return StreamPlan(f"/v1/flows/{flow_id}/events", schemas.FlowEvent, "flow")


RECONNECT_DELAYS = (0.0, 0.25, 0.5, 1.0, 2.0, 5.0)


def add_webhook(url: str, events: Sequence[str], flow_id: str | None, description: str) -> Op[schemas.WebhookCreated]:
    body = {"url": url, "events": list(events), "flow_id": flow_id, "description": description}
    resp = yield Call("POST", "/v1/webhooks", json=body)
    return decode(resp.content, schemas.WebhookCreated)


def list_webhooks() -> Op[list[schemas.Webhook]]:
    resp = yield Call("GET", "/v1/webhooks")
    return decode(resp.content, list[schemas.Webhook])


def remove_webhook(webhook_id: str) -> Op[None]:
    yield Call("DELETE", f"/v1/webhooks/{webhook_id}")


def webhook_deliveries(webhook_id: str, limit: int) -> Op[list[schemas.WebhookDelivery]]:
    resp = yield Call("GET", f"/v1/webhooks/{webhook_id}/deliveries", params={"limit": limit})
    return decode(resp.content, list[schemas.WebhookDelivery])


def test_webhook(webhook_id: str) -> Op[schemas.WebhookDelivery]:
    resp = yield Call("POST", f"/v1/webhooks/{webhook_id}/test")
    return decode(resp.content, schemas.WebhookDelivery)
