"""Turn RLHF annotations into task records (threads → turns → messages, annotations as key/value lists) and into
the dataset rows TRL's trainers read: preference pairs, prompt-completion pairs from rewrites, and unpaired
labels. `docs/formats.md` says how every field is derived."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from flowlab import schemas
from flowlab.formats._records import counted

# How a dimension's type reads in a record's annotation `type` field.
_ANNOTATION_TYPES: dict[str, str] = {"scale": "integer", "boolean": "boolean", "category": "category", "text": "text"}


# ---------------------------------------------------------------- shared helpers


def _index(datapoints: Sequence[schemas.Datapoint]) -> dict[int, schemas.Datapoint]:
    return {d.index: d for d in datapoints}


def _task(
    by_index: Mapping[int, schemas.Datapoint], a: schemas.Annotation
) -> tuple[schemas.Datapoint, list[schemas.ChatMessage], dict[str, schemas.Response]]:
    """The annotated datapoint, its prompt and its responses by source id; ValueError when they do not fit."""
    d = by_index.get(a.datapoint)
    if d is None:
        raise ValueError(f"annotation {a.task_id!r} refers to datapoint {a.datapoint}, which is not among those given")
    if d.kind != "conversation" or not d.prompt or not d.responses:
        raise ValueError(f"datapoint {d.key!r} is not an RLHF task (a conversation with a prompt and responses)")
    if d.prompt[-1].role != "user":
        raise ValueError(f"datapoint {d.key!r}: the prompt's last message must be the user's")
    responses = {r.source_id: r for r in d.responses}
    unknown = [s for s in a.order if s not in responses]
    if unknown:
        raise ValueError(f"annotation {a.task_id!r} names sources {unknown} that datapoint {d.key!r} lacks")
    return d, d.prompt, responses


def _content(r: schemas.Response) -> str:
    """A response as one string: its text, else its URL, else the path its uploaded media is served at."""
    if r.text is not None:
        return r.text
    return r.url or (f"/media/{r.media}" if r.media else "")


def _single_user_message(prompt: Sequence[schemas.ChatMessage] | None) -> bool:
    return prompt is not None and len(prompt) == 1 and prompt[0].role == "user"


def _conversational(datapoints: Sequence[schemas.Datapoint], conversational: bool | None) -> bool:
    """Whether an export's prompts are conversational: as asked, or, left to None, unless every RLHF task of the
    export is a single user message. One answer for the whole export, so every row has the same column types."""
    tasks = [d for d in datapoints if d.kind == "conversation"]
    if conversational is None:
        return not all(_single_user_message(d.prompt) for d in tasks)
    if not conversational:
        for d in tasks:
            if not _single_user_message(d.prompt):
                raise ValueError(
                    f"datapoint {d.key!r} has a multi-message prompt, which a plain-string prompt cannot hold; "
                    "leave `conversational` as None or pass True"
                )
    return conversational


def _prompt(prompt: Sequence[schemas.ChatMessage], conversational: bool) -> str | list[dict[str, str]]:
    if conversational:
        return [{"role": m.role, "content": m.content} for m in prompt]
    return prompt[0].content


def _completion(text: str, conversational: bool) -> str | list[dict[str, str]]:
    return [{"role": "assistant", "content": text}] if conversational else text


# ---------------------------------------------------------------- task records


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _message(role: str, source_id: str, text: str, annotations: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "role": role,
        "content": {"text": text, "attachments": []},
        "source_id": source_id,
        "annotations": annotations or [],
    }


def _chat_message(m: schemas.ChatMessage) -> dict[str, Any]:
    source = {"user": "user", "assistant": "history", "system": "system"}[m.role]
    return _message(m.role, source, m.content)


def _response_message(r: schemas.Response, annotations: list[dict[str, Any]]) -> dict[str, Any]:
    msg = _message("assistant", r.source_id, r.text if r.text is not None else "", annotations)
    if r.text is None:
        msg["content"]["attachments"].append({"url": _content(r), "mime_type": r.media_type})
    return msg


def _value_type(value: schemas.RatingValue) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    return "text"


def _rating_annotations(
    ratings: Mapping[str, schemas.RatingValue], dims: Sequence[schemas.Dimension]
) -> list[dict[str, Any]]:
    """One annotation per dimension the annotator answered, in the spec's order ("not applicable": value None),
    then any rated key the spec no longer names, so nothing given is dropped."""
    out = [
        {"key": dim.key, "value": ratings[dim.key], "type": _ANNOTATION_TYPES[dim.type], "title": dim.label or dim.key}
        for dim in dims
        if dim.key in ratings
    ]
    known = {dim.key for dim in dims}
    out += [{"key": k, "value": v, "type": _value_type(v), "title": k} for k, v in ratings.items() if k not in known]
    return out


def _history_turns(history: Sequence[schemas.ChatMessage]) -> tuple[list[list[dict[str, Any]]], list[dict[str, Any]]]:
    """The conversation before the annotated user message, split into turns that each start at a user message;
    also the system messages that precede the first user message when no turn holds them yet."""
    turns: list[list[dict[str, Any]]] = []
    current: list[dict[str, Any]] = []
    for m in history:
        if m.role == "user" and any(msg["role"] != "system" for msg in current):
            turns.append(current)
            current = []
        current.append(_chat_message(m))
    if any(msg["role"] != "system" for msg in current):
        turns.append(current)
        current = []
    return turns, current


def rlhf_records(
    datapoints: Sequence[schemas.Datapoint],
    annotations: Sequence[schemas.Annotation],
    *,
    item_id: str,
    spec: schemas.RlhfSpec,
    contributors: Mapping[str, str] | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """One task record per completed annotation, shaped like Scale GenAI's expanded RLHF task output:
    `{"task_id", "status", "created_at", "completed_at", "metadata", "contributor", "threads"}`, one thread whose
    earlier turns replay the conversation and whose last turn holds the user message, the responses in the order
    the annotator saw them (with their ratings and any rewrite) and the turn-level preference annotations.

    `datapoints` are the item's datapoints (annotations find theirs by `index`); `contributors` maps annotator ids
    to names; `metadata` is merged into every record's metadata, under flowlab's own keys.
    """
    by_index = _index(datapoints)
    records: list[dict[str, Any]] = []
    for a in counted(annotations):
        d, prompt, responses = _task(by_index, a)
        meta: dict[str, Any] = dict(metadata or {})
        meta.update(flowlab_item_id=item_id, datapoint_key=d.key, datapoint_index=d.index)
        earlier, leading_system = _history_turns(prompt[:-1])
        turns = [{"id": f"{a.task_id}:turn:{n}", "messages": msgs, "annotations": []} for n, msgs in enumerate(earlier)]
        messages = [*leading_system, _chat_message(prompt[-1])]
        for source in a.order:
            notes = _rating_annotations(a.ratings.get(source, {}), spec.dimensions)
            if source in a.rewrites:
                notes.append({"key": "rewrite", "value": a.rewrites[source], "type": "text", "title": "Rewrite"})
            messages.append(_response_message(responses[source], notes))
        turns.append(
            {
                "id": f"{a.task_id}:turn:{len(turns)}",
                "messages": messages,
                "annotations": [
                    {"key": "selected_model_id", "value": a.selected, "type": "text", "title": "Preferred response"},
                    {"key": "likert_value", "value": a.likert, "type": "integer", "title": "Preference strength"},
                    {"key": "justification", "value": a.justification, "type": "text", "title": "Justification"},
                ],
            }
        )
        records.append(
            {
                "task_id": a.task_id,
                "status": "completed",
                "created_at": _iso(a.shown_at if a.shown_at is not None else a.created_at),
                "completed_at": _iso(a.created_at),
                "metadata": meta,
                "contributor": {"id": a.annotator_id, "name": (contributors or {}).get(a.annotator_id)},
                "threads": [{"id": f"{a.task_id}:thread:0", "turns": turns, "annotations": []}],
            }
        )
    return records


# ---------------------------------------------------------------- trainer rows


def _margin(a: schemas.Annotation, chosen: str, spec: schemas.RlhfSpec, default: float) -> float:
    """How strongly the chosen response won, in [0, 1]: the Likert answer's distance from the scale's middle,
    toward the chosen side, over half the scale's span (0 when it leans the other way). `default` where the task
    has no Likert answer (not two responses, not asked, or not given)."""
    scale = spec.likert_scale
    if a.likert is None or len(a.order) != 2 or scale < 2:
        return default
    if not 1 <= a.likert <= scale:
        raise ValueError(f"annotation {a.task_id!r}: likert {a.likert} is outside 1..{scale}")
    middle, half = (scale + 1) / 2, (scale - 1) / 2
    toward_chosen = (middle - a.likert) if chosen == a.order[0] else (a.likert - middle)
    return max(0.0, toward_chosen / half)


def preference_rows(
    datapoints: Sequence[schemas.Datapoint],
    annotations: Sequence[schemas.Annotation],
    *,
    spec: schemas.RlhfSpec,
    conversational: bool | None = None,
    default_margin: float = 1.0,
) -> list[dict[str, Any]]:
    """TRL preference rows, `{"prompt", "chosen", "rejected", "margin", "chosen_source_id", "rejected_source_id",
    "annotator_id", "key"}`: for every annotation that selected a response, one row per other response (in the
    order the annotator saw them), the selected one chosen. Annotations without a selection give no rows.

    `margin` (read by TRL's RewardTrainer) is the Likert strength toward the chosen response, scaled to [0, 1]
    (1: the strongest preference, 0: "about the same"), or `default_margin` where there is no Likert answer.
    `conversational`: None picks plain-string prompts when every task is one user message, else chat messages.
    """
    conv = _conversational(datapoints, conversational)
    by_index = _index(datapoints)
    rows = []
    for a in counted(annotations):
        d, prompt, responses = _task(by_index, a)
        if a.selected is None:
            continue
        if a.selected not in responses:
            raise ValueError(f"annotation {a.task_id!r} selected {a.selected!r}, which datapoint {d.key!r} lacks")
        margin = _margin(a, a.selected, spec, default_margin)
        for other in (s for s in a.order if s != a.selected):
            rows.append(
                {
                    "prompt": _prompt(prompt, conv),
                    "chosen": _completion(_content(responses[a.selected]), conv),
                    "rejected": _completion(_content(responses[other]), conv),
                    "margin": margin,
                    "chosen_source_id": a.selected,
                    "rejected_source_id": other,
                    "annotator_id": a.annotator_id,
                    "key": d.key,
                }
            )
    return rows


def sft_rows(
    datapoints: Sequence[schemas.Datapoint],
    annotations: Sequence[schemas.Annotation],
    *,
    spec: schemas.RlhfSpec,
    conversational: bool | None = None,
) -> list[dict[str, Any]]:
    """TRL prompt-completion rows from rewrites, `{"prompt", "completion", "source_id", "annotator_id", "key"}`:
    one row per rewritten response, the rewrite as the completion, in the order the annotator saw the responses.
    `conversational` as in `preference_rows`. (`spec` is taken for a uniform signature.)"""
    conv = _conversational(datapoints, conversational)
    by_index = _index(datapoints)
    rows = []
    for a in counted(annotations):
        d, prompt, _ = _task(by_index, a)
        sources = [s for s in a.order if s in a.rewrites] + [s for s in a.rewrites if s not in a.order]
        for source in sources:
            rows.append(
                {
                    "prompt": _prompt(prompt, conv),
                    "completion": _completion(a.rewrites[source], conv),
                    "source_id": source,
                    "annotator_id": a.annotator_id,
                    "key": d.key,
                }
            )
    return rows


def _rating_score(ratings: Mapping[str, schemas.RatingValue], dims: Sequence[schemas.Dimension]) -> float | None:
    """The mean of a response's numeric ratings, each scaled to [0, 1]: scale dimensions by their min..max, yes/no
    as 1/0. "Not applicable", category and text answers do not count; None when nothing counts."""
    scores = []
    for dim in dims:
        v = ratings.get(dim.key)
        if dim.type == "boolean" and isinstance(v, bool):
            scores.append(1.0 if v else 0.0)
        elif dim.type == "scale" and isinstance(v, int) and not isinstance(v, bool) and dim.max > dim.min:
            scores.append((v - dim.min) / (dim.max - dim.min))
    return sum(scores) / len(scores) if scores else None


def kto_rows(
    datapoints: Sequence[schemas.Datapoint],
    annotations: Sequence[schemas.Annotation],
    *,
    spec: schemas.RlhfSpec,
    conversational: bool | None = None,
) -> list[dict[str, Any]]:
    """TRL unpaired preference rows, `{"prompt", "completion", "label", "score", "source_id", "annotator_id",
    "key"}`: one row per response the annotator saw, in that order. `score` is the mean of its numeric ratings
    scaled to [0, 1] (scale dimensions by their min..max, yes/no as 1/0; "not applicable", category and text
    answers do not count) and `label` is `score > 0.5`; a response with no numeric rating is
    labelled by the selection (True if selected, score None), and left out when the annotator selected nothing.
    `conversational` as in `preference_rows`."""
    conv = _conversational(datapoints, conversational)
    by_index = _index(datapoints)
    rows = []
    for a in counted(annotations):
        d, prompt, responses = _task(by_index, a)
        for source in a.order:
            score = _rating_score(a.ratings.get(source, {}), spec.dimensions)
            if score is None and a.selected is None:
                continue
            rows.append(
                {
                    "prompt": _prompt(prompt, conv),
                    "completion": _completion(_content(responses[source]), conv),
                    "label": score > 0.5 if score is not None else source == a.selected,
                    "score": score,
                    "source_id": source,
                    "annotator_id": a.annotator_id,
                    "key": d.key,
                }
            )
    return rows
