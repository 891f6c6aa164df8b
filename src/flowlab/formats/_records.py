"""Turn a flow item's votes and results into the records preference-learning code consumes."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from flowlab import schemas


def _content(d: schemas.Datapoint) -> str:
    return d.text if d.text is not None else (d.url or (f"/media/{d.media}" if d.media else ""))


AnswerT = TypeVar("AnswerT")


def counted(answers: Iterable[AnswerT]) -> list[AnswerT]:
    """The answers an item's results count: those of people suspended while it was live are left out of every
    format made from answers, as they are of results and matrices (the answers endpoints list them, marked)."""
    return [a for a in answers if not getattr(a, "excluded", False)]


def preference_pairs(
    datapoints: Sequence[schemas.Datapoint], votes: Sequence[schemas.Vote], *, prompt: str | None = None
) -> list[dict[str, Any]]:
    """One record per decisive vote: `{"prompt", "chosen", "rejected", "chosen_key", "rejected_key",
    "annotator_id"}`, the shape DPO-style trainers read. Ties carry no preference and are left out."""
    out = []
    for v in counted(votes):
        if v.tie:
            continue
        win, lose = datapoints[v.winner], datapoints[v.loser]
        out.append(
            {
                "prompt": prompt or "",
                "chosen": _content(win),
                "rejected": _content(lose),
                "chosen_key": win.key,
                "rejected_key": lose.key,
                "annotator_id": v.annotator_id,
            }
        )
    return out


def rlhf_task(
    datapoints: Sequence[schemas.Datapoint], results: Any, *, prompt: str | None = None, instruction: str | None = None
) -> dict[str, Any]:
    """An RLHF task record: the user prompt, each response with its `source_id` (the datapoint key) and its
    ranking annotations, and turn-level annotations naming the preferred response.

    `results` is a `FlowItemResult` (its `details`), or anything with `.datapoints` of `DatapointResult`.
    """
    rows = _details(results)
    by_key = {r.key: r for r in rows}
    messages: list[dict[str, Any]] = [{"role": "user", "content": prompt or ""}]
    for d in datapoints:
        r = by_key[d.key]
        messages.append(
            {
                "role": "assistant",
                "content": _content(d),
                "source_id": d.key,
                "annotations": {
                    "bradley_terry_score": r.score,
                    "elo": r.elo,
                    "ci_95": [r.ci_low, r.ci_high],
                    "rank": r.rank,
                    "votes": r.votes,
                    "wins": r.wins,
                },
            }
        )
    best = min(rows, key=lambda r: (r.rank, -r.score)) if rows else None
    return {
        "messages": messages,
        "annotations": {
            "selected_model_id": best.key if best else None,
            "ranking": [r.key for r in sorted(rows, key=lambda r: (r.rank, -r.score))],
            "total_votes": results.total_votes,
            "instruction": instruction,
            # No justification: nobody wrote one. RLHF flows collect justifications people write.
        },
    }


def _details(results: Any) -> list[Any]:
    """The per-datapoint results: an SDK result's `details`, or the wire's `datapoints` list."""
    details = getattr(results, "details", None)
    return list(details if details is not None else results.datapoints)
