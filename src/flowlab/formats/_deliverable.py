"""A batch project's deliverable: every export format its task kind has, as tables (lists of flat-ish dicts)
built from the project's ended items. The SDK writes them to JSONL files or hands them to `datasets`."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import msgspec

from flowlab import schemas
from flowlab.formats._chat import chat_records
from flowlab.formats._records import _content, preference_pairs, rlhf_task
from flowlab.formats._rlhf import kto_rows, preference_rows, rlhf_records, sft_rows

# The formats of each kind, in the order a deliverable lists them; the first is one row per task.
FORMATS: dict[str, tuple[str, ...]] = {
    "pairwise": ("tasks", "votes", "preference_pairs", "rlhf_tasks"),
    "classify": ("results", "labels"),
    "rlhf": ("results", "records", "preference", "sft", "kto", "annotations"),
    "chat": ("results", "records", "conversations"),
}

_RESULTS: dict[str, type] = {
    "pairwise": schemas.ItemResults,
    "classify": schemas.ClassifyResults,
    "rlhf": schemas.RlhfResults,
    "chat": schemas.RlhfResults,
}
_ANSWERS: dict[str, type] = {
    "pairwise": schemas.Vote,
    "classify": schemas.Label,
    "rlhf": schemas.Annotation,
    "chat": schemas.Conversation,
}


class ExportedItem(msgspec.Struct):
    """One ended item as a deliverable is built from it, typed for its kind."""

    detail: schemas.ItemDetail
    results: Any
    answers: list[Any]


def typed(kind: str, item: schemas.ProjectExportItem) -> ExportedItem:
    """The wire's item with its results and answers decoded into the kind's structs."""
    return ExportedItem(
        detail=item.detail,
        results=msgspec.convert(item.results, _RESULTS[kind]),
        answers=msgspec.convert(item.answers, list[_ANSWERS[kind]]),
    )


def task_id(item: ExportedItem) -> str:
    """A ranking item's task id: the dataset row's `id`, kept in the item's metadata, else the item's own."""
    meta = item.detail.private_metadata or {}
    return str(meta.get("task_id", item.detail.status.id))


def deliverable(
    kind: str,
    items: Sequence[ExportedItem],
    *,
    flow: schemas.Flow,
    contributors: Mapping[str, str] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Format name -> rows, for every format of `kind` (see FORMATS)."""
    builders: dict[str, Callable[[ExportedItem], list[dict[str, Any]]]]
    if kind == "pairwise":
        builders = {
            "tasks": lambda it: [_pair_task(it)],
            "votes": _pair_votes,
            "preference_pairs": lambda it: [
                {"task_id": task_id(it), **row}
                for row in preference_pairs(it.detail.datapoints, it.answers, prompt=it.detail.status.context)
            ],
            "rlhf_tasks": lambda it: [
                {
                    "task_id": task_id(it),
                    **rlhf_task(
                        it.detail.datapoints,
                        it.results,
                        prompt=it.detail.status.context,
                        instruction=it.detail.status.instruction,
                    ),
                }
            ],
        }
    elif kind == "classify":
        builders = {"results": _label_results, "labels": _labels}
    elif kind == "rlhf":
        spec = flow.rlhf or schemas.RlhfSpec()
        builders = {
            "results": _rlhf_results,
            "records": lambda it: rlhf_records(
                it.detail.datapoints,
                it.answers,
                item_id=it.detail.status.id,
                spec=spec,
                contributors=contributors,
                metadata={"flow_id": flow.id, "instruction": it.detail.status.instruction},
            ),
            "preference": lambda it: preference_rows(it.detail.datapoints, it.answers, spec=spec),
            "sft": lambda it: sft_rows(it.detail.datapoints, it.answers, spec=spec),
            "kto": lambda it: kto_rows(it.detail.datapoints, it.answers, spec=spec),
            "annotations": lambda it: [
                {"item_id": it.detail.status.id, "task_key": it.detail.datapoints[a.datapoint].key, **_plain(a)}
                for a in it.answers
            ],
        }
    elif kind == "chat":
        chat = flow.chat or schemas.ChatSpec()
        builders = {
            "results": _rlhf_results,
            "records": lambda it: chat_records(
                it.detail.datapoints,
                it.answers,
                item_id=it.detail.status.id,
                spec=chat,
                contributors=contributors,
                metadata={"flow_id": flow.id, "instruction": it.detail.status.instruction},
            ),
            "conversations": lambda it: [
                {"item_id": it.detail.status.id, "task_key": it.detail.datapoints[c.datapoint].key, **_plain(c)}
                for c in it.answers
            ],
        }
    else:
        raise ValueError(f"no deliverable for task kind {kind!r}; kinds with one: {sorted(FORMATS)}")
    return {name: [row for it in items for row in builders[name](it)] for name in FORMATS[kind]}


def _plain(value: Any) -> Any:
    return msgspec.to_builtins(value)


def _pair_task(it: ExportedItem) -> dict[str, Any]:
    results: schemas.ItemResults = it.results
    by_key = {r.key: r for r in results.datapoints}
    ranked = sorted(results.datapoints, key=lambda r: (r.rank, -r.score))
    voted = results.total_votes > 0
    meta = {k: v for k, v in (it.detail.private_metadata or {}).items() if k != "task_id"}
    return {
        "task_id": task_id(it),
        "item_id": it.detail.status.id,
        "context": it.detail.status.context,
        "state": it.detail.status.state,
        "votes": results.total_votes,
        "winner": ranked[0].key if voted and (len(ranked) < 2 or ranked[0].wins != ranked[1].wins) else None,
        "ranking": [r.key for r in ranked] if voted else [],
        "datapoints": [
            {
                "key": d.key,
                "content": _content(d),
                "votes": by_key[d.key].votes,
                "wins": by_key[d.key].wins,
                "score": by_key[d.key].score,
                "ci_low": by_key[d.key].ci_low,
                "ci_high": by_key[d.key].ci_high,
            }
            for d in it.detail.datapoints
        ],
        "metadata": meta,
    }


def _pair_votes(it: ExportedItem) -> list[dict[str, Any]]:
    keys = [d.key for d in it.detail.datapoints]
    return [
        {
            "task_id": task_id(it),
            "item_id": it.detail.status.id,
            "annotator_id": v.annotator_id,
            "winner": keys[v.winner],
            "loser": keys[v.loser],
            "tie": v.tie,
            "created_at": v.created_at,
        }
        for v in it.answers
    ]


def _label_results(it: ExportedItem) -> list[dict[str, Any]]:
    results: schemas.ClassifyResults = it.results
    return [
        {
            "task_id": d.key,
            "item_id": it.detail.status.id,
            "content": _content(d),
            "context": d.context or it.detail.status.context,
            "majority": r.majority_value,
            "weighted": r.weighted_value,
            "confidence": r.confidence,
            "responses": r.response_count,
            "distribution": r.distribution,
            "metadata": d.private_metadata or {},
        }
        for d, r in zip(it.detail.datapoints, results.datapoints, strict=True)
    ]


def _labels(it: ExportedItem) -> list[dict[str, Any]]:
    return [
        {
            "task_id": it.detail.datapoints[a.datapoint].key,
            "item_id": it.detail.status.id,
            "annotator_id": a.annotator_id,
            "value": a.value,
            "created_at": a.created_at,
        }
        for a in it.answers
    ]


def _rlhf_results(it: ExportedItem) -> list[dict[str, Any]]:
    results: schemas.RlhfResults = it.results
    return [{"task_id": t.key, "item_id": it.detail.status.id, **_plain(t)} for t in results.tasks]
