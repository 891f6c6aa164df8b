"""Chat annotations as task records: one record per annotated conversation, one thread per branch (the path
from the first message to a leaf), each thread's turns starting at a user message, every reply a model wrote
with its ratings as `{key, value}` annotations; the conversation's choice, strength and why are the record's."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from flowlab import schemas
from flowlab.formats._records import counted
from flowlab.formats._rlhf import _iso, _message, _rating_annotations


def branch_path(conversation: schemas.Conversation, leaf: str) -> list[schemas.ChatTurn]:
    """The turns from the conversation's start to `leaf`, in order."""
    by_id = {t.id: t for t in conversation.turns}
    path: list[schemas.ChatTurn] = []
    node = by_id.get(leaf)
    while node is not None:
        path.append(node)
        node = by_id.get(node.parent) if node.parent is not None else None
    return path[::-1]


def chat_records(
    datapoints: Sequence[schemas.Datapoint],
    conversations: Sequence[schemas.Conversation],
    *,
    item_id: str,
    spec: schemas.ChatSpec,
    contributors: Mapping[str, str] | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Records shaped as `rlhf_records` makes them, with a thread per branch. A model's reply has the model's
    name as `source_id`; the starting conversation's replies have "history"; a thread's `annotations` say
    whether it is the chosen branch, and the record's `annotations` hold the choice, its strength and why."""
    by_index = {d.index: d for d in datapoints}
    records: list[dict[str, Any]] = []
    for c in counted(conversations):
        d = by_index.get(c.datapoint)
        if d is None:
            raise ValueError(f"conversation {c.task_id!r} refers to datapoint {c.datapoint}, not among those given")
        meta: dict[str, Any] = dict(metadata or {})
        meta.update(flowlab_item_id=item_id, datapoint_key=d.key, datapoint_index=d.index)
        if d.guidance:
            meta["guidance"] = d.guidance
        system = [_message("system", "system", m.content) for m in d.prompt or () if m.role == "system"]
        threads = []
        for b, leaf in enumerate(c.branches):
            turns: list[dict[str, Any]] = []
            current: list[dict[str, Any]] = list(system)
            for t in branch_path(c, leaf):
                if t.role == "user" and any(m["role"] != "system" for m in current):
                    turns.append(current)
                    current = []
                if t.role == "user":
                    current.append(_message("user", "user", t.content))
                else:
                    notes = _rating_annotations(t.ratings, spec.dimensions)
                    current.append(_message("assistant", t.model or "history", t.content, notes))
            turns.append(current)
            threads.append(
                {
                    "id": f"{c.task_id}:thread:{b}",
                    "turns": [
                        {"id": f"{c.task_id}:thread:{b}:turn:{n}", "messages": msgs, "annotations": []}
                        for n, msgs in enumerate(turns)
                    ],
                    "annotations": [
                        {"key": "selected", "value": leaf == c.selected, "type": "boolean", "title": "Chosen branch"}
                    ],
                }
            )
        chosen = c.branches.index(c.selected) if c.selected in c.branches else None
        records.append(
            {
                "task_id": c.task_id,
                "status": "completed",
                "created_at": _iso(c.shown_at if c.shown_at is not None else c.created_at),
                "completed_at": _iso(c.created_at),
                "metadata": meta,
                "contributor": {"id": c.annotator_id, "name": (contributors or {}).get(c.annotator_id)},
                "threads": threads,
                "annotations": [
                    {
                        "key": "selected_thread_id",
                        "value": None if chosen is None or len(c.branches) < 2 else f"{c.task_id}:thread:{chosen}",
                        "type": "text",
                        "title": "Better branch",
                    },
                    {"key": "selected_model_id", "value": c.selected_model, "type": "text", "title": "Better model"},
                    {"key": "likert_value", "value": c.likert, "type": "integer", "title": "Preference strength"},
                    {"key": "justification", "value": c.justification, "type": "text", "title": "Justification"},
                ],
            }
        )
    return records
