"""What a listwise project delivers: a row per task (its Plackett–Luce ranking and scores), every ranking as
datapoint keys, and the preference pairs the rankings imply."""

from __future__ import annotations

from typing import Any

from flowlab import ranking, schemas
from flowlab.formats._deliverable import Deliverable, ExportedItem, Made, task_id
from flowlab.formats._records import counted, preference_pairs
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


def implied_votes(answer: schemas.Ranking) -> list[schemas.Vote]:
    """The decisive pairs one ranking implies, as votes by its annotator: an order of k gives k(k − 1)/2, a
    best–worst answer 2k − 3 (the best over every other, every other over the worst), as the win-loss matrix
    counts them."""
    if answer.mode == "best_worst":
        pairs = ranking.implied_pairs([], [(answer.order, answer.order[0], answer.order[-1])])
    else:
        pairs = ranking.implied_pairs([answer.order])
    return [
        schemas.Vote(answer.task_id, answer.annotator_id, int(w), int(lo), False, answer.created_at, excluded=False)
        for w, lo in pairs.tolist()
    ]


def _preference_pairs(it: ExportedItem, made: Made) -> list[dict[str, Any]]:
    # One order of k becomes k(k − 1)/2 rows: as the win-loss matrix counts it.
    votes = [v for r in counted(it.answers) for v in implied_votes(r)]
    pairs = preference_pairs(it.detail.datapoints, votes, prompt=it.detail.status.context)
    return [{"task_id": task_id(it), **row} for row in pairs]


DELIVERABLE = Deliverable(
    results=schemas.ItemResults,
    answers=schemas.Ranking,
    formats={"tasks": RANKING.formats["tasks"], "rankings": _rankings, "preference_pairs": _preference_pairs},
)
