"""Turn written demonstrations into TRL's SFT rows (messages: the prompt, then the demonstration), seed-001 task
records (each demonstration a response whose `source_id` is "human:<annotator id>"), deliverable rows, and the
best demonstration per prompt once a review flow has rated them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from flowlab import schemas
from flowlab.formats._records import counted
from flowlab.formats._rlhf import _chat_message, _history_turns, _iso, _message

HUMAN = "human:"  # a demonstration's source id: "human:<annotator id>"


def human_source(annotator_id: str) -> str:
    return HUMAN + annotator_id


def _prompt_of(d: schemas.Datapoint) -> list[schemas.ChatMessage]:
    if not d.prompt or d.prompt[-1].role != "user":
        raise ValueError(f"datapoint {d.key!r} is not a prompt (a conversation ending with the user's message)")
    return d.prompt


def _by_index(datapoints: Sequence[schemas.Datapoint], demo: schemas.Demonstration) -> schemas.Datapoint:
    for d in datapoints:
        if d.index == demo.datapoint:
            return d
    raise ValueError(f"demonstration {demo.task_id!r} refers to datapoint {demo.datapoint}, not among those given")


def demonstration_sft_rows(
    datapoints: Sequence[schemas.Datapoint], demonstrations: Sequence[schemas.Demonstration]
) -> list[dict[str, Any]]:
    """TRL's conversational SFT rows, `{"messages": [...prompt, {"role": "assistant", "content": text}],
    "key", "annotator_id", "seconds"}`: one per demonstration that counts, in the order they were written."""
    rows = []
    for demo in counted(demonstrations):
        d = _by_index(datapoints, demo)
        messages = [{"role": m.role, "content": m.content} for m in _prompt_of(d)]
        messages.append({"role": "assistant", "content": demo.text})
        rows.append({"messages": messages, "key": d.key, "annotator_id": demo.annotator_id, "seconds": demo.seconds})
    return rows


def demonstration_records(
    datapoints: Sequence[schemas.Datapoint],
    demonstrations: Sequence[schemas.Demonstration],
    *,
    item_id: str,
    contributors: Mapping[str, str] | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """One seed-001 task record per demonstration (the shape of `rlhf_records`): earlier turns replay the
    conversation, the last holds the user's message and the demonstration as the response, `source_id`
    "human:<annotator id>", its time on task as an annotation."""
    records = []
    for demo in counted(demonstrations):
        d = _by_index(datapoints, demo)
        prompt = _prompt_of(d)
        meta: dict[str, Any] = dict(metadata or {})
        meta.update(flowlab_item_id=item_id, datapoint_key=d.key, datapoint_index=d.index)
        earlier, leading_system = _history_turns(prompt[:-1])
        tid = demo.task_id
        turns = [{"id": f"{tid}:turn:{n}", "messages": msgs, "annotations": []} for n, msgs in enumerate(earlier)]
        notes = [{"key": "seconds", "value": demo.seconds, "type": "number", "title": "Time on task (s)"}]
        response = _message("assistant", human_source(demo.annotator_id), demo.text, notes)
        turns.append(
            {
                "id": f"{tid}:turn:{len(turns)}",
                "messages": [*leading_system, _chat_message(prompt[-1]), response],
                "annotations": [],
            }
        )
        records.append(
            {
                "task_id": tid,
                "status": "completed",
                "created_at": _iso(demo.shown_at if demo.shown_at is not None else demo.created_at),
                "completed_at": _iso(demo.created_at),
                "metadata": meta,
                "contributor": {"id": demo.annotator_id, "name": (contributors or {}).get(demo.annotator_id)},
                "threads": [{"id": f"{tid}:thread:0", "turns": turns, "annotations": []}],
            }
        )
    return records


def demonstration_rows(
    datapoints: Sequence[schemas.Datapoint], demonstrations: Sequence[schemas.Demonstration], *, item_id: str
) -> list[dict[str, Any]]:
    """Flat rows, one per demonstration: `{"item_id", "key", "prompt", "demonstration", "author", "seconds",
    "chars", "pasted_chars"}`, the prompt as its last user message."""
    rows = []
    for demo in counted(demonstrations):
        d = _by_index(datapoints, demo)
        rows.append(
            {
                "item_id": item_id,
                "key": d.key,
                "prompt": _prompt_of(d)[-1].content,
                "demonstration": demo.text,
                "author": demo.annotator_id,
                "seconds": demo.seconds,
                "chars": len(demo.text),
                "pasted_chars": demo.pasted_chars,
            }
        )
    return rows


def _mean_rating(r: Any) -> float:
    means = [s.mean for s in r.ratings if s.mean is not None]
    return sum(means) / len(means) if means else float("-inf")


def best_demonstrations(results: schemas.WriteResults, review: Any = None) -> list[dict[str, Any]]:
    """The best demonstration per prompt, `{"key", "text", "annotator_id", "reviewed", "selected",
    "selected_share", "mean_rating"}`. With the review item's results (RLHF results, wire or SDK): the
    demonstration reviewers chose most often, ties broken by the higher mean rating (model responses in the
    review never count as demonstrations). A prompt not reviewed (one response only, or no review yet) gives
    its first demonstration; prompts without demonstrations give no row."""
    reviewed = {t.key: t for t in review.tasks} if review is not None else {}
    out = []
    for task in results.tasks:
        if not task.demonstrations:
            continue
        by_author = {d.annotator_id: d for d in task.demonstrations}
        rated = reviewed.get(task.key)
        humans = [
            r
            for r in (rated.responses if rated else [])
            if r.source_id.startswith(HUMAN) and r.source_id[len(HUMAN) :] in by_author
        ]
        if humans:
            top = max(humans, key=lambda r: (r.selected, _mean_rating(r)))
            demo = by_author[top.source_id[len(HUMAN) :]]
            mean = _mean_rating(top)
            row = {
                "reviewed": True,
                "selected": top.selected,
                "selected_share": top.selected_share,
                "mean_rating": None if mean == float("-inf") else mean,
            }
        else:
            demo = task.demonstrations[0]
            row = {"reviewed": False, "selected": None, "selected_share": None, "mean_rating": None}
        out.append({"key": task.key, "text": demo.text, "annotator_id": demo.annotator_id, **row})
    return out
