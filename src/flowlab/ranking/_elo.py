"""Online Elo ratings over an ordered vote stream, with a bootstrap interval."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from ._counts import _as_comparisons, _as_win_matrix, _is_comparison_array

__all__ = ["ARENA_ELO", "EloResult", "elo_ratings"]

ARENA_ELO: dict[str, float] = {"k": 4.0, "base": 10.0, "scale": 400.0, "initial_rating": 1000.0}
"""The online-Elo settings of the Chatbot Arena leaderboard (Chiang et al. 2024)."""


@dataclass(frozen=True, eq=False)
class EloResult:
    """Online Elo ratings. Arrays have one entry per datapoint.

    Attributes
    ----------
    ratings : ndarray
        Ratings after one pass over the votes in the given order.
    ranks : ndarray of int
        1 = best, from ``ratings``.
    ci_low, ci_high : ndarray
        Bootstrap interval around ``ratings`` (see :func:`elo_ratings`); equal to ``ratings`` when
        ``n_bootstrap = 0``. It always contains ``ratings``.
    bootstrap_median : ndarray
        Median rating over the bootstrap replays (``ratings`` when there is no bootstrap): what Elo gives
        on an ordinary order of such votes, where ``ratings`` depends on the order they came in.
    k, base, scale, initial_rating : float
        Settings used.
    """

    ratings: np.ndarray
    ranks: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    bootstrap_median: np.ndarray
    k: float
    base: float
    scale: float
    initial_rating: float


def _expand_matrix(wins: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Turn a win matrix into (winner, loser, tie) rows in random order.

    Whole counts become wins; half counts left over on both sides of a pair become one tie each.
    """
    whole = np.floor(wins)
    half = wins - whole
    if np.any((half != 0) & (half != 0.5)):
        raise ValueError("a win matrix for Elo may hold only whole and half counts (ties count half).")
    n_ties = np.triu(np.minimum(half, half.T) * 2, 1)
    rows: list[np.ndarray] = []
    win_i, win_j = np.nonzero(whole)
    reps = whole[win_i, win_j].astype(np.int64)
    rows.append(np.stack([np.repeat(win_i, reps), np.repeat(win_j, reps), np.zeros(reps.sum(), np.int64)], 1))
    tie_i, tie_j = np.nonzero(n_ties)
    reps = np.round(n_ties[tie_i, tie_j]).astype(np.int64)
    rows.append(np.stack([np.repeat(tie_i, reps), np.repeat(tie_j, reps), np.ones(reps.sum(), np.int64)], 1))
    out = np.concatenate(rows)
    return out[rng.permutation(len(out))]


def _elo_pass(
    winners: np.ndarray,
    losers: np.ndarray,
    outcome: np.ndarray,
    start: float,
    n: int,
    k: float,
    base: float,
    scale: float,
) -> np.ndarray:
    """One sequential pass over the votes (plain floats: per-vote numpy calls would cost more than the math)."""
    log_base = math.log(base) / scale
    ratings = [float(start)] * n
    exp = math.exp
    for w, lose, s in zip(winners.tolist(), losers.tolist(), outcome.tolist(), strict=True):
        gap = min(max(log_base * (ratings[lose] - ratings[w]), -700.0), 700.0)
        delta = k * (s - 1.0 / (1.0 + exp(gap)))
        ratings[w] += delta
        ratings[lose] -= delta
    return np.asarray(ratings)


def elo_ratings(
    comparisons: ArrayLike,
    n_items: int | None = None,
    *,
    k: float = ARENA_ELO["k"],
    base: float = ARENA_ELO["base"],
    scale: float = ARENA_ELO["scale"],
    initial_rating: float = ARENA_ELO["initial_rating"],
    n_bootstrap: int = 0,
    level: float = 0.95,
    rng: np.random.Generator | int | None = None,
) -> EloResult:
    """Online Elo ratings from votes in arrival order.

    After each vote the winner gains ``k (s − E)`` and the loser loses as much, where
    ``E = 1 / (1 + base^((r_loser − r_winner) / scale))`` and ``s`` is 1 for a win and 0.5 for a tie.
    Elo depends on the order of the votes, and with a small ``k`` it forgets slowly, so the last votes
    of a stream weigh more than the first; :func:`fit_bradley_terry` has neither problem and is
    flowlab's default.

    The interval comes from a bootstrap that draws the votes with replacement, in random order, and
    replays Elo on each draw. That is what FastChat's Arena notebook does for its online Elo; it measures
    both the sampling noise of the votes and Elo's dependence on their order, which together are the
    error of ``ratings``. A percentile interval of those replays is centred on their median, which an
    unusual arrival order (a time-sorted log, a stream with drift) can move away from ``ratings``: the
    interval around an estimate it did not contain is of no use. So the replays' spread is used around
    ``ratings`` itself: ``[r − (median − q_low), r + (q_high − median)]``. A permutation-only bootstrap
    (shuffling without resampling) would measure the order effect alone and come out too narrow.

    Parameters
    ----------
    comparisons : array_like
        An (m, 2) array of ``(winner, loser)`` indices in arrival order, an (m, 3) array with a tie
        column, or an ``n × n`` win matrix (its votes are replayed in random order).
    n_items : int, optional
        Number of datapoints.
    k : float
        Step size (K-factor). The defaults are Chatbot Arena's (k=4, base 10, scale 400, start 1000);
        chess uses k between 10 and 40.
    base, scale : float
        A rating gap of ``scale`` means odds of ``base`` to 1.
    initial_rating : float
        Everyone's rating before the first vote.
    n_bootstrap : int
        Bootstrap replays for the interval (0 for none).
    level : float
        Coverage of the interval.
    rng : numpy.random.Generator or int, optional
        Randomness for the bootstrap and for replaying a win matrix.

    Returns
    -------
    EloResult

    References
    ----------
    A. E. Elo, "The Rating of Chessplayers, Past and Present", Arco, 1978.
    W.-L. Chiang et al., "Chatbot Arena: an open platform for evaluating LLMs by human preference",
    ICML 2024.
    """
    for name, value in (("k", k), ("base", base), ("scale", scale), ("initial_rating", initial_rating)):
        if not math.isfinite(value):
            raise ValueError(f"{name} must be finite; got {value!r}.")
    if k < 0 or base <= 1 or scale <= 0:
        raise ValueError(f"Elo needs k ≥ 0, base > 1 and scale > 0; got k={k}, base={base}, scale={scale}.")
    if n_bootstrap < 0:
        raise ValueError(f"n_bootstrap must be ≥ 0; got {n_bootstrap}.")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be between 0 and 1; got {level!r}.")
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    arr = np.asarray(comparisons)
    if _is_comparison_array(arr, comparisons):
        idx, ties, n = _as_comparisons(arr, n_items)
    else:
        mat = _as_win_matrix(arr, n_items)
        rows = _expand_matrix(mat, gen)
        idx, ties, n = rows[:, :2], rows[:, 2].astype(bool), mat.shape[0]
    outcome = np.where(ties, 0.5, 1.0)
    ratings = _elo_pass(idx[:, 0], idx[:, 1], outcome, initial_rating, n, k, base, scale)
    if n_bootstrap:
        # Draw t of replay b is vote orders[t, b]: indices drawn with replacement come in random order too.
        orders = gen.integers(0, len(idx), (len(idx), n_bootstrap)) if len(idx) else None
        boot = np.full((n, n_bootstrap), float(initial_rating))
        if orders is not None:
            # Replay all orders side by side: vote t of order b is idx[orders[t, b]].
            log_base = math.log(base) / scale
            cols = np.arange(n_bootstrap)
            for t in range(len(idx)):
                pick = orders[t]
                w, lose, s = idx[pick, 0], idx[pick, 1], outcome[pick]
                rw, rl = boot[w, cols], boot[lose, cols]
                delta = k * (s - 1.0 / (1.0 + np.exp(np.clip(log_base * (rl - rw), -700.0, 700.0))))
                boot[w, cols] = rw + delta
                boot[lose, cols] = rl - delta
        alpha = (1.0 - level) / 2.0
        q_low, median, q_high = np.quantile(boot, [alpha, 0.5, 1.0 - alpha], axis=1)
        ci_low, ci_high = ratings - (median - q_low), ratings + (q_high - median)
    else:
        ci_low = ci_high = median = ratings.copy()
    order = np.sort(-ratings)
    ranks = (np.searchsorted(order, -ratings, side="left") + 1).astype(np.int64)
    return EloResult(
        ratings, ranks, ci_low, ci_high, median, float(k), float(base), float(scale), float(initial_rating)
    )
