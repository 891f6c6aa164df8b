"""What a listwise project delivers: a row per task (its Plackett–Luce ranking and scores), every ranking as
datapoint keys."""

from __future__ import annotations

from typing import Any

from flowlab import schemas
from flowlab.formats._deliverable import Deliverable, ExportedItem, Made, task_id
from flowlab.formats.kinds.pairwise import DELIVERABLE as RANKING


def _rankings(it: ExportedItem, made: Made) -> list[dict[str, Any]]:
    keys = [d.key for d in it.detail.datapoints]
    return [
        {
            "task_id": task_id(it),
            "item_id": it.detail.status.id,
            "annotator_id": r.annotator_id,
            "mode": r.mode,
            # best_worst: the best first, the worst last, the others between unranked
            "order": [keys[i] for i in r.order],
            "created_at": r.created_at,
        }
        for r in it.answers
        if not r.excluded
    ]


DELIVERABLE = Deliverable(
    results=schemas.ItemResults,
    answers=schemas.Ranking,
    formats={"tasks": RANKING.formats["tasks"], "rankings": _rankings},
)
