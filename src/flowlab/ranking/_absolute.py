"""Bradley–Terry with an acceptability threshold: pairwise votes plus "both good" / "both bad" answers."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import expit, log_expit

from ._bradley_terry import DEFAULT_PRIOR, elo_from_scores
from ._intervals import _z_value, rank_ranges

__all__ = ["AbsoluteResult", "absolute_counts", "fit_absolute", "simulate_absolute"]


@dataclass(frozen=True, eq=False)
class AbsoluteResult:
    """A joint fit of relative scores and an acceptability threshold. Arrays have one entry per datapoint.

    Attributes
    ----------
    scores, elo, ci_low, ci_high, std_errors, ranks, rank_low, rank_high, covariance :
        As in :class:`BradleyTerryResult`: logits with mean zero, their Elo form, intervals and rank ranges.
    threshold : float
        τ on the scale of ``scores``: ``P(acceptable_i) = σ(θ_i − τ)``.
    p_acceptable, p_low, p_high : ndarray
        Each datapoint's probability of being judged acceptable, with its interval at ``level`` (the delta
        method on the logit scale, mapped back through σ).
    good, bad : ndarray
        The absolute judgements each datapoint received: wins and "both good" answers count as good, losses
        and "both bad" answers as bad (ties carry none).
    """

    scores: np.ndarray
    elo: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    std_errors: np.ndarray
    ranks: np.ndarray
    rank_low: np.ndarray
    rank_high: np.ndarray
    threshold: float
    p_acceptable: np.ndarray
    p_low: np.ndarray
    p_high: np.ndarray
    good: np.ndarray
    bad: np.ndarray
    log_likelihood: float
    converged: bool
    iterations: int
    prior: float
    level: float
    starting_elo: float
    covariance: np.ndarray | None = field(default=None, repr=False)

    @property
    def n_items(self) -> int:
        return len(self.scores)


def absolute_counts(
    wins: np.ndarray, both_good: np.ndarray | None, both_bad: np.ndarray | None, tie_counts: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Good and bad judgements per datapoint, and the plain ties between each pair, from the matrices a
    pairwise item keeps: ``wins`` counts every tie-like answer (ties, both good, both bad) as half a win each
    way; ``both_good``, ``both_bad`` and ``tie_counts`` are symmetric counts of each."""
    n = wins.shape[0]
    zero = np.zeros((n, n))
    g = zero if both_good is None else np.asarray(both_good, dtype=float)
    b = zero if both_bad is None else np.asarray(both_bad, dtype=float)
    t = zero if tie_counts is None else np.asarray(tie_counts, dtype=float)
    decided = np.asarray(wins, dtype=float) - 0.5 * (g + b + t)
    decided = np.where(decided < 1e-9, 0.0, decided)
    good = decided.sum(axis=1) + g.sum(axis=1)
    bad = decided.sum(axis=0) + b.sum(axis=1)
    return good, bad, t


def fit_absolute(
    wins: ArrayLike,
    n_items: int | None = None,
    *,
    both_good: ArrayLike | None = None,
    both_bad: ArrayLike | None = None,
    tie_counts: ArrayLike | None = None,
    prior: float = DEFAULT_PRIOR,
    level: float = 0.95,
    starting_elo: float = 1000.0,
    init: ArrayLike | None = None,
    tol: float = 1e-8,
    max_iter: int = 100,
) -> AbsoluteResult:
    """Fit Bradley–Terry scores and an acceptability threshold to pairwise votes with "both good" / "both bad".

    The model reads each answer to a pair as two absolute judgements against a threshold τ, in the spirit of
    Böckenholt (2004), who pins the origin of a paired-comparison scale with accept/reject choices: each
    datapoint is judged acceptable with probability ``p_i = σ(θ_i − τ)``, independently; two agreeing
    judgements give "both good" (``p_a p_b``) or "both bad" (``(1 − p_a)(1 − p_b)``), and a split gives the
    acceptable one as the winner (``p_a (1 − p_b)``). Given a split, ``P(a wins) = σ(θ_a − θ_b)``: the
    Bradley–Terry model, so the relative part is the usual fit and the "both" answers add the level. A plain
    tie is a relative answer only (half a win each way) and carries no absolute judgement.

    Only ``u_i = θ_i − τ`` enters the likelihood; each ``u_i`` has a ``N(0, 1/prior)`` prior (an even chance
    of being acceptable). Scores are reported centred, ``θ = u − mean(u)`` and ``τ = −mean(u)``. Intervals
    are Wald intervals from the posterior's Hessian; ``P(acceptable)``'s interval is ``σ(u_i ± z·se_i)``.

    Parameters
    ----------
    wins : array_like
        ``n × n`` win matrix; ties and "both" answers count half a win each way, as a pairwise item keeps it.
    n_items : int, optional
        Number of datapoints (the matrix size by default).
    both_good, both_bad, tie_counts : array_like, optional
        Symmetric ``n × n`` counts of "both good", "both bad" and plain tie answers per pair.
    prior : float
        Precision of the Gaussian prior on each ``θ_i − τ`` (must be positive).
    level : float
        Interval coverage.
    starting_elo : float
        Centre of the Elo scale.
    init : array_like, optional
        Starting ``u`` (for example the previous fit's ``scores − threshold``).

    Returns
    -------
    AbsoluteResult

    References
    ----------
    U. Böckenholt. Comparative judgments as an alternative to ratings: identifying the scale origin.
    *Psychological Methods* 9(4), 2004.
    """
    w = np.asarray(wins, dtype=float)
    n = w.shape[0] if n_items is None else n_items
    if w.shape != (n, n):
        raise ValueError(f"wins must be an n × n matrix with n = {n}; got shape {w.shape}.")
    if prior <= 0:
        raise ValueError(f"prior must be positive (the threshold is not identified without it); got {prior}.")

    def square(m: ArrayLike | None) -> np.ndarray | None:
        return None if m is None else np.asarray(m, dtype=float).reshape(n, n)

    good, bad, ties = absolute_counts(w, square(both_good), square(both_bad), square(tie_counts))
    iu, ju = np.triu_indices(n, 1)
    t = ties[iu, ju]  # symmetric counts: the upper triangle holds each pair once
    keep = t > 0
    ti, tj, tw = iu[keep], ju[keep], t[keep]

    def objective(u: np.ndarray) -> float:
        rel = 0.5 * tw * (log_expit(u[ti] - u[tj]) + log_expit(u[tj] - u[ti]))
        ll = float(good @ log_expit(u) + bad @ log_expit(-u) + rel.sum())
        return -ll + 0.5 * prior * float(u @ u)

    # Start from `init`, else from the smoothed share of good judgements on the logit scale.
    u = np.asarray(init, dtype=float).copy() if init is not None else np.log((good + 0.5) / (bad + 0.5))
    converged = False
    iterations = 0
    value = objective(u)
    while iterations < max_iter:
        iterations += 1
        p = expit(u)
        q = expit(u[ti] - u[tj])
        grad = -(good * (1 - p) - bad * p) + prior * u
        rel_grad = -tw * (0.5 - q)
        grad += np.bincount(ti, rel_grad, n) - np.bincount(tj, rel_grad, n)
        hess = _hessian(u, good + bad, ti, tj, tw, prior)
        step = np.linalg.solve(hess, grad)
        scale = 1.0
        while True:  # damped Newton: the objective is convex, halving finds descent quickly
            trial = u - scale * step
            new = objective(trial)
            if new <= value + 1e-12 or scale < 1e-6:
                break
            scale /= 2
        u, decrease = trial, value - new
        value = new
        if float(np.max(np.abs(scale * step), initial=0.0)) < tol or decrease < tol * 1e-3:
            converged = True
            break
    hess = _hessian(u, good + bad, ti, tj, tw, prior)
    cov_u = np.linalg.inv(hess) if n else np.zeros((0, 0))
    z = _z_value(level)
    se_u = np.sqrt(np.maximum(np.diag(cov_u), 0.0))
    centre = float(u.mean()) if n else 0.0
    scores = u - centre
    project = np.eye(n) - 1.0 / max(n, 1)
    cov = project @ cov_u @ project
    se = np.sqrt(np.maximum(np.diag(cov), 0.0))
    rank_low, rank_high = rank_ranges(scores, cov, level) if n else (np.zeros(0, int), np.zeros(0, int))
    order = np.sort(-scores)
    ranks = (np.searchsorted(order, -scores, side="left") + 1).astype(np.int64)
    return AbsoluteResult(
        scores=scores,
        elo=elo_from_scores(scores, starting_elo),
        ci_low=scores - z * se,
        ci_high=scores + z * se,
        std_errors=se,
        ranks=ranks,
        rank_low=rank_low,
        rank_high=rank_high,
        threshold=-centre,
        p_acceptable=expit(u),
        p_low=expit(u - z * se_u),
        p_high=expit(u + z * se_u),
        good=good,
        bad=bad,
        log_likelihood=-(value - 0.5 * prior * float(u @ u)),
        converged=converged,
        iterations=iterations,
        prior=prior,
        level=level,
        starting_elo=starting_elo,
        covariance=cov,
    )


def _hessian(
    u: np.ndarray, judged: np.ndarray, ti: np.ndarray, tj: np.ndarray, tw: np.ndarray, prior: float
) -> np.ndarray:
    """The negative log-posterior's Hessian: a diagonal from the absolute judgements, a Laplacian from ties."""
    p = expit(u)
    hess = np.diag(judged * p * (1 - p) + prior)
    if len(ti):
        q = expit(u[ti] - u[tj])
        info = 0.5 * tw * 2 * q * (1 - q)  # two half votes' curvature: a tie's information
        np.add.at(hess, (ti, ti), info)
        np.add.at(hess, (tj, tj), info)
        np.add.at(hess, (ti, tj), -info)
        np.add.at(hess, (tj, ti), -info)
    return hess


def simulate_absolute(
    utilities: ArrayLike, n_votes: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Votes on uniformly drawn pairs under the model of :func:`fit_absolute`, given ``u_i = θ_i − τ``: the
    win matrix (both answers as half a win each way), and the "both good" and "both bad" counts."""
    u = np.asarray(utilities, dtype=float)
    n = len(u)
    wins, good, bad = np.zeros((n, n)), np.zeros((n, n)), np.zeros((n, n))
    a = rng.integers(0, n, n_votes)
    b = (a + rng.integers(1, n, n_votes)) % n
    ok_a = rng.random(n_votes) < expit(u[a])
    ok_b = rng.random(n_votes) < expit(u[b])
    for i, j, x, y in zip(a.tolist(), b.tolist(), ok_a.tolist(), ok_b.tolist(), strict=True):
        if x == y:
            target = good if x else bad
            target[i, j] += 1
            target[j, i] += 1
            wins[i, j] += 0.5
            wins[j, i] += 0.5
        elif x:
            wins[i, j] += 1
        else:
            wins[j, i] += 1
    return wins, good, bad
