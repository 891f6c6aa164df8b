"""What a ranking project delivers: a row per task (its ranking and scores), every vote, preference pairs and
RLHF task records; an absolute flow's tasks also carry each datapoint's P(acceptable), and its KTO rows take
their labels from it."""

from __future__ import annotations

from typing import Any

from flowlab import schemas
from flowlab.formats._deliverable import Deliverable, ExportedItem, Made, task_id
from flowlab.formats._records import _content as content
from flowlab.formats._records import acceptability_kto_rows, preference_pairs, rlhf_task


def _task(it: ExportedItem, made: Made) -> dict[str, Any]:
    results: schemas.ItemResults = it.results
    by_key = {r.key: r for r in results.datapoints}
    ranked = sorted(results.datapoints, key=lambda r: (r.rank, -r.score))
    voted = results.total_votes > 0
    meta = {k: v for k, v in (it.detail.private_metadata or {}).items() if k != "task_id"}
    row: dict[str, Any] = {
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
                "content": content(d),
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
    if made.flow.absolute:  # only an absolute flow's fit has a level; a plain flow's rows keep their shape
        for d in row["datapoints"]:
            r = by_key[d["key"]]
            d.update(
                p_acceptable=r.p_acceptable, p_acceptable_low=r.p_acceptable_low, p_acceptable_high=r.p_acceptable_high
            )
    return row


def _votes(it: ExportedItem, made: Made) -> list[dict[str, Any]]:
    keys = [d.key for d in it.detail.datapoints]
    return [
        {
            "task_id": task_id(it),
            "item_id": it.detail.status.id,
            "annotator_id": v.annotator_id,
            "winner": keys[v.winner],
            "loser": keys[v.loser],
            "tie": v.tie,
            "level": v.level,  # "good" / "bad" for an absolute flow's "both" answers (stored as ties), else None
            "created_at": v.created_at,
        }
        for v in it.answers
    ]


def _preference_pairs(it: ExportedItem, made: Made) -> list[dict[str, Any]]:
    pairs = preference_pairs(it.detail.datapoints, it.answers, prompt=it.detail.status.context)
    return [{"task_id": task_id(it), **row} for row in pairs]


def _kto(it: ExportedItem, made: Made) -> list[dict[str, Any]]:
    """An absolute flow's unpaired rows, labelled by P(acceptable); a plain flow has no level, so none."""
    if not made.flow.absolute:
        return []
    rows = acceptability_kto_rows(it.detail.datapoints, it.results, prompt=it.detail.status.context)
    return [{"task_id": task_id(it), **row} for row in rows]


def _rlhf_tasks(it: ExportedItem, made: Made) -> list[dict[str, Any]]:
    status = it.detail.status
    record = rlhf_task(it.detail.datapoints, it.results, prompt=status.context, instruction=status.instruction)
    return [{"task_id": task_id(it), **record}]


DELIVERABLE = Deliverable(
    results=schemas.ItemResults,
    answers=schemas.Vote,
    formats={
        "tasks": lambda it, made: [_task(it, made)],
        "votes": _votes,
        "preference_pairs": _preference_pairs,
        "rlhf_tasks": _rlhf_tasks,
        "kto": _kto,
    },
)
