"""Turn a flow item's votes and results into the records preference-learning code consumes."""

from __future__ import annotations

import math
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
    "annotator_id"}`, the shape DPO-style trainers read. Ties carry no preference and are left out, and so do an
    absolute flow's "both good" / "both bad" answers: relative to each other the two are a tie (stored as one),
    and their level reaches trainers through `acceptability_kto_rows` instead."""
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


_Z95 = 1.959963984540054  # results carry 95 % intervals of P(acceptable)


def acceptability_confidence(p: float, low: float, high: float) -> float:
    """The posterior probability that a datapoint lies on the side of the threshold its `p` says, from its
    P(acceptable) and 95 % interval: the fit's interval is `σ(u ± z·se)`, so `u` and `se` come back through
    the logit, and the probability is `Φ(|u| / se)` (the Laplace approximation the interval rests on). It is
    at least 0.975 exactly when the interval lies on one side of 0.5."""
    u = _logit(p)
    se = (_logit(high) - _logit(low)) / (2 * _Z95)
    if se <= 0:
        return 1.0 if u != 0 else 0.5
    return 0.5 * (1.0 + math.erf(abs(u) / se / math.sqrt(2.0)))


def _logit(p: float) -> float:
    p = min(max(p, 1e-15), 1 - 1e-15)
    return math.log(p / (1 - p))


def acceptability_kto_rows(
    datapoints: Sequence[schemas.Datapoint],
    results: Any,
    *,
    prompt: str | None = None,
    min_confidence: float = 0.0,
) -> list[dict[str, Any]]:
    """TRL's unpaired-preference rows from an absolute ranking item: one per datapoint that received votes,
    `{"prompt", "completion", "label", "p_acceptable", "p_acceptable_low", "p_acceptable_high", "confidence",
    "votes", "key"}`, in the item's datapoint order.

    `label` is `p_acceptable > 0.5` (desirable when it leans acceptable; exactly even is not desirable, as in
    `kto_rows`). `confidence` is the posterior probability that the label is right
    (:func:`acceptability_confidence`). Every voted datapoint gives a row by default; `min_confidence` leaves out
    those below it — `0.975` leaves out exactly those whose 95 % interval straddles 0.5. A datapoint nobody
    voted on has nothing to label and gives no row. A completion is the datapoint's content as everywhere in
    `flowlab.formats`: its text, else its URL, else `/media/<sha256>`.

    `results` is a `FlowItemResult` (its `details`) or the wire's `ItemResults`; results without
    P(acceptable) (a flow made without `absolute=True`) raise `ValueError`: there is no label to give.
    """
    if not 0.0 <= min_confidence <= 1.0:
        raise ValueError(f"min_confidence is a probability in [0, 1]; got {min_confidence}.")
    by_key = {r.key: r for r in _details(results)}
    if any(r.p_acceptable is None for r in by_key.values()):
        raise ValueError(
            "KTO rows from a ranking item need P(acceptable): make the flow with "
            "create_ranking_flow(absolute=True), or use preference pairs for a relative flow."
        )
    rows = []
    for d in datapoints:
        r = by_key[d.key]
        if r.votes == 0:
            continue
        confidence = acceptability_confidence(r.p_acceptable, r.p_acceptable_low, r.p_acceptable_high)
        if confidence < min_confidence:
            continue
        rows.append(
            {
                "prompt": prompt or "",
                "completion": _content(d),
                "label": r.p_acceptable > 0.5,
                "p_acceptable": r.p_acceptable,
                "p_acceptable_low": r.p_acceptable_low,
                "p_acceptable_high": r.p_acceptable_high,
                "confidence": confidence,
                "votes": r.votes,
                "key": d.key,
            }
        )
    return rows


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
                }
                | _level(r),
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


def _level(r: Any) -> dict[str, Any]:
    """An absolute flow's level of a response: P(acceptable) with its interval, and whether it leans acceptable
    (the KTO label); nothing for a plain ranking flow, whose fit has no level."""
    p = getattr(r, "p_acceptable", None)
    if p is None:
        return {}
    return {"p_acceptable": p, "p_acceptable_ci_95": [r.p_acceptable_low, r.p_acceptable_high], "acceptable": p > 0.5}


def _details(results: Any) -> list[Any]:
    """The per-datapoint results: an SDK result's `details`, or the wire's `datapoints` list."""
    details = getattr(results, "details", None)
    return list(details if details is not None else results.datapoints)
