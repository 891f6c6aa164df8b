"""An eval's history from its votes: win rates against the anchor per checkpoint and tag, one Bradley–Terry
scale for all checkpoints, and the sentinel's check for reward hacking. Pure functions of counts."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from flowlab import ranking, schemas
from flowlab.ranking import check_divergence

ALL = "all"


@dataclass
class CheckpointCounts:
    """What one checkpoint's comparisons have gathered, per prompt (zeros where it has no comparisons)."""

    step: int
    wins: np.ndarray  # votes the checkpoint's completion won against the anchor's (a tie counts half)
    votes: np.ndarray
    proxy: float | list[float] | None
    divergence: bool = False
    # Direct comparisons with the previous checkpoint (a fixed anchor's eval with compare_previous), per prompt.
    previous_wins: np.ndarray | None = None
    previous_votes: np.ndarray | None = None


def history_rows(
    checkpoints: Sequence[CheckpointCounts], tags: Sequence[Sequence[str]], *, chained: bool
) -> list[schemas.EvalRow]:
    """Rows per checkpoint (ascending steps) for "all" and each tag.

    The win rate is wins / votes against the anchor with a 95 % Wilson (1927) interval. The scores come from one
    Bradley–Terry fit (Bradley & Terry 1952) per tag over the comparison graph of the eval: with a fixed anchor
    every checkpoint is compared with the anchor, so they share its scale through it (a star; the anchor is 0);
    with ``chained`` (anchor "previous") each checkpoint is compared with the one before (a chain; the first
    checkpoint is 0), so a checkpoint's score is the sum of the steps up to it. A fixed anchor's eval with direct
    comparisons of consecutive checkpoints (``previous_wins``) has both kinds of edge, and the fit weighs them.
    """
    names = [ALL, *sorted({t for ts in tags for t in ts})]
    per_tag: dict[str, list[schemas.EvalRow]] = {}
    for tag in names:
        mask = np.array([tag == ALL or tag in ts for ts in tags], dtype=bool)
        per_tag[tag] = _tag_rows(checkpoints, mask, tag, chained=chained)
    out: list[schemas.EvalRow] = []
    for i in range(len(checkpoints)):
        out.extend(per_tag[tag][i] for tag in names)
    return out


def _tag_rows(
    checkpoints: Sequence[CheckpointCounts], mask: np.ndarray, tag: str, *, chained: bool
) -> list[schemas.EvalRow]:
    n = len(checkpoints)
    wins = np.array([float(c.wins[mask].sum()) for c in checkpoints])
    votes = np.array([float(c.votes[mask].sum()) for c in checkpoints])
    direct = [
        None
        if c.previous_wins is None or c.previous_votes is None
        else (float(c.previous_wins[mask].sum()), float(c.previous_votes[mask].sum()))
        for c in checkpoints
    ]
    scores, lows, highs = _scale(wins, votes, chained=chained, direct=direct)
    rows = []
    for i, c in enumerate(checkpoints):
        rate = low = high = None
        if votes[i] > 0:
            rate = float(wins[i] / votes[i])
            low, high = wilson(float(wins[i]), float(votes[i]))
        reference = i == 0 and chained
        known = votes[i] > 0 or reference
        rows.append(
            schemas.EvalRow(
                step=c.step,
                tag=tag,
                win_rate=rate,
                win_low=low,
                win_high=high,
                votes=float(votes[i]),
                wins=float(wins[i]),
                score=float(scores[i]) if known else None,
                score_low=float(lows[i]) if known else None,
                score_high=float(highs[i]) if known else None,
                proxy_reward=_proxy(c.proxy, mask),
                divergence=c.divergence,
            )
        )
    assert len(rows) == n
    return rows


def _scale(
    wins: np.ndarray,
    votes: np.ndarray,
    *,
    chained: bool,
    direct: Sequence[tuple[float, float] | None] = (),
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scores of the checkpoints (logits) relative to the reference, with 95 % intervals of that difference.
    `direct`: per checkpoint, (wins, votes) against the previous checkpoint, edges beside the anchor's."""
    n = len(wins)
    if n == 0:
        return np.zeros(0), np.zeros(0), np.zeros(0)
    # Node 0 is the reference: the anchor (star), or the first checkpoint (chain, whose own votes are none).
    size = n + (0 if chained else 1)
    matrix = np.zeros((size, size))
    for i in range(n):
        if chained and i == 0:
            continue
        me, other = (i, i - 1) if chained else (i + 1, 0)
        matrix[me, other] += wins[i]
        matrix[other, me] += votes[i] - wins[i]
        if not chained and i > 0 and i < len(direct) and direct[i] is not None:
            won, cast = direct[i]  # type: ignore[misc]
            matrix[i + 1, i] += won
            matrix[i, i + 1] += cast - won
    fit = ranking.fit_bradley_terry(matrix, size)
    scores = fit.scores - fit.scores[0]
    # The interval of a difference from the reference, from the fit's covariance (without it, the sum of the two
    # variances: a conservative bound).
    cov = fit.covariance
    if cov is not None:
        var = np.diagonal(cov) + cov[0, 0] - 2 * cov[:, 0]
    else:
        var = fit.std_errors**2 + fit.std_errors[0] ** 2
    se = np.sqrt(np.maximum(var, 0.0))
    se[0] = 0.0
    lows, highs = scores - 1.96 * se, scores + 1.96 * se
    if not chained:
        scores, lows, highs = scores[1:], lows[1:], highs[1:]
    return scores, lows, highs


def _proxy(proxy: float | list[float] | None, mask: np.ndarray) -> float | None:
    if proxy is None:
        return None
    if isinstance(proxy, list):
        chosen = [p for p, m in zip(proxy, mask, strict=True) if m]
        return float(np.mean(chosen)) if chosen else None
    return float(proxy)


def mean_proxy(proxy: float | list[float] | None) -> float | None:
    if proxy is None:
        return None
    return float(np.mean(proxy)) if isinstance(proxy, list) else float(proxy)


def wilson(k: float, n: float, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a proportion k / n (Wilson 1927)."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def divergence_check(rows: Sequence[schemas.EvalRow], *, window: int, alpha: float) -> schemas.EvalDivergence | None:
    """The sentinel (`flowlab.ranking.check_divergence`: a one-sided Mann–Kendall test that the proxy rises, and
    the vote-weighted win-rate trend's upper bound) over the "all" rows that have both a proxy reward and human
    votes, so a checkpoint people have not voted on yet does not count as a flat win rate; None before a
    window of them."""
    usable = [r for r in rows if r.tag == ALL and r.proxy_reward is not None and r.votes > 0]
    if len(usable) < window:
        return None
    found = check_divergence(
        [r.step for r in usable],
        [float(r.proxy_reward) for r in usable],  # type: ignore[arg-type]
        [r.wins for r in usable],
        [r.votes for r in usable],
        window=window,
        alpha=alpha,
    )
    return schemas.EvalDivergence(
        fired=bool(found.fired),
        step=None if found.step is None else int(found.step),
        window=int(found.window),
        proxy_slope=_finite(found.proxy_slope),
        proxy_p=_finite(found.proxy_p),
        win_slope=_finite(found.win_slope),
        win_high=_finite(found.win_high),
        reason=str(found.reason),
    )


def _finite(value: float) -> float | None:
    """JSON has no NaN: a statistic the sentinel leaves undefined goes on the wire as null."""
    value = float(value)
    return value if math.isfinite(value) else None
