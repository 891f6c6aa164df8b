"""Uncertainty for Bradley–Terry fits: Wald and sandwich covariances, and rank ranges from intervals."""

from __future__ import annotations

import numpy as np
from scipy import linalg
from scipy.special import (
    expit,
    ndtri,  # the normal quantile; scipy.stats would cost a third of a second to import
)

__all__ = ["rank_ranges"]


def _z_value(level: float) -> float:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be between 0 and 1 (e.g. 0.95); got {level!r}.")
    return float(ndtri(0.5 + level / 2.0))


def _laplacian(first: np.ndarray, second: np.ndarray, weight: np.ndarray, n: int) -> np.ndarray:
    """Dense weighted graph Laplacian: the shape of every Bradley–Terry Hessian and Fisher matrix."""
    lap = np.zeros((n, n))
    flat = lap.ravel()
    flat[first * n + second] = -weight
    flat[second * n + first] = -weight
    flat[:: n + 1] = np.bincount(first, weight, n) + np.bincount(second, weight, n)
    return lap


def _inverse_from_cholesky(factor: tuple[np.ndarray, bool]) -> np.ndarray:
    """Full symmetric inverse from a ``scipy.linalg.cho_factor`` result."""
    chol, lower = factor
    n = chol.shape[0]
    inv, info = linalg.lapack.dpotri(chol, lower=lower)
    if info != 0:  # pragma: no cover - the matrix was factorised, so this means a LAPACK failure
        raise np.linalg.LinAlgError(f"inverting the Fisher information failed (LAPACK info={info}).")
    # dpotri fills one triangle only; mirror it over the other, which holds leftovers.
    inv = np.triu(inv) if not lower else np.tril(inv)
    diag = inv.diagonal().copy()
    inv += inv.T
    inv.ravel()[:: n + 1] = diag
    return inv


def _sandwich_meat(
    first: np.ndarray,
    second: np.ndarray,
    first_wins: np.ndarray,
    second_wins: np.ndarray,
    theta: np.ndarray,
    folded_ties: np.ndarray | None = None,
) -> np.ndarray:
    """Sum over votes of the outer product of per-vote score vectors, from aggregated counts.

    A vote for ``first`` over ``second`` has score ``(1 - p)(e_first - e_second)``, the reverse
    ``-p (e_first - e_second)``; summing their squares per pair gives a Laplacian. A tie folded into the
    wins as half a win each way is one vote with score ``(½ − p)(e_first − e_second)``; counted as two
    half votes it would add ``½(1 − p)² + ½p²``, which is exactly ¼ more than ``(½ − p)²``.
    """
    p = expit(theta[first] - theta[second])
    weight = first_wins * (1.0 - p) ** 2 + second_wins * p**2
    if folded_ties is not None:
        weight = weight - 0.25 * folded_ties
    return _laplacian(first, second, weight, len(theta))


def rank_ranges(scores: np.ndarray, covariance: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Best and worst plausible rank of each datapoint from pairwise difference tests.

    Datapoint ``j`` counts as surely better than ``i`` when the ``level`` interval of ``θ_j − θ_i``,
    from the joint covariance, lies above zero. A datapoint's best rank is one plus the number of
    datapoints surely better than it; its worst rank is ``n`` minus the number surely worse.
    This is the pairwise version of the rank intervals on the Chatbot Arena leaderboard
    (Chiang et al. 2024).

    Parameters
    ----------
    scores : ndarray, shape (n,)
        Logit scores.
    covariance : ndarray, shape (n, n)
        Their covariance.
    level : float
        Confidence level of each pairwise test.

    Returns
    -------
    rank_low, rank_high : ndarray of int64, shape (n,)
        Best (numerically smallest) and worst plausible rank, 1 = best.
    """
    scores = np.asarray(scores, dtype=float)
    cov = np.asarray(covariance, dtype=float)
    n = len(scores)
    if cov.shape != (n, n):
        raise ValueError(f"covariance must be {n} × {n} to match scores; got {cov.shape}.")
    z = _z_value(level)
    var = np.diagonal(cov)
    diff_var = var[:, None] + var[None, :] - 2.0 * cov
    np.maximum(diff_var, 0.0, out=diff_var)
    diff = scores[None, :] - scores[:, None]  # diff[i, j] = θ_j − θ_i
    surely_better = diff - z * np.sqrt(diff_var) > 0.0  # [i, j]: j is surely better than i
    rank_low = 1 + surely_better.sum(axis=1)
    rank_high = n - surely_better.sum(axis=0)
    return rank_low.astype(np.int64), rank_high.astype(np.int64)


def percentile_summary(
    draws: np.ndarray, level: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Percentile intervals, standard deviations and rank ranges from bootstrap draws (one row per draw)."""
    n = draws.shape[1]
    alpha = (1.0 - level) / 2.0
    ci_low, ci_high = np.quantile(draws, [alpha, 1.0 - alpha], axis=0)
    std = draws.std(axis=0, ddof=1) if len(draws) > 1 else np.zeros(n)
    ranks = np.argsort(np.argsort(-draws, axis=1), axis=1) + 1
    rank_low = np.floor(np.quantile(ranks, alpha, axis=0)).astype(np.int64)
    rank_high = np.ceil(np.quantile(ranks, 1.0 - alpha, axis=0)).astype(np.int64)
    return ci_low, ci_high, std, rank_low, rank_high
