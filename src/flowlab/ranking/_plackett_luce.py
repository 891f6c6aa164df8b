"""Plackett–Luce fits of orders (and best–worst answers) over shown subsets, with Wald intervals."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy import linalg

from ._bradley_terry import DEFAULT_PRIOR, BradleyTerryResult, elo_from_scores
from ._intervals import _inverse_from_cholesky, _z_value, rank_ranges

__all__ = ["PlackettLuceResult", "fit_plackett_luce", "implied_pairs"]


@dataclass(frozen=True, eq=False)
class PlackettLuceResult(BradleyTerryResult):
    """A Plackett–Luce fit, in the shape of :class:`BradleyTerryResult` so every consumer of a ranking fit
    (rewards, stopping rules, rank ranges, the Elo scale) takes it.

    On two shown datapoints Plackett–Luce is Bradley–Terry, so ``scores`` are on the same logit scale. ``wins``
    and ``votes`` count the pairs the answers imply (an order of k implies k(k − 1)/2, a best–worst answer
    2k − 3); ``n_comparisons`` counts answers (orders plus best–worst picks), not pairs.
    """

    n_stages: int = 0


# A stage is one choice: `chosen` picked out of `members` with utilities `sign · θ` (sign −1 picks the worst).
_Stage = tuple[int, tuple[int, ...], int]


def _stages(
    rankings: Sequence[Sequence[int]], best_worst: Sequence[tuple[Sequence[int], int, int]] | None
) -> list[_Stage]:
    stages: list[_Stage] = []
    for order in rankings:
        items = tuple(int(i) for i in order)
        if len(set(items)) != len(items):
            raise ValueError(f"a ranking names a datapoint twice: {list(items)}.")
        for s in range(len(items) - 1):
            stages.append((items[s], items[s:], 1))
    for shown, best, worst in best_worst or ():
        items = tuple(int(i) for i in shown)
        if len(set(items)) != len(items) or len(items) < 2:
            raise ValueError(f"a best–worst answer needs at least two different shown datapoints; got {list(items)}.")
        if best not in items or worst not in items or best == worst:
            raise ValueError(f"best ({best}) and worst ({worst}) must be two different datapoints of {list(items)}.")
        stages.append((int(best), items, 1))
        rest = tuple(i for i in items if i != best)
        if len(rest) > 1:
            stages.append((int(worst), rest, -1))
    return stages


def implied_pairs(
    rankings: Sequence[Sequence[int]], best_worst: Sequence[tuple[Sequence[int], int, int]] | None = None
) -> np.ndarray:
    """The ``(winner, loser)`` pairs that orders and best–worst answers imply, as an (m, 2) int64 array.

    An order ``a₁ ≻ a₂ ≻ … ≻ a_k`` implies every ``(a_i, a_j)``, ``i < j``. A best–worst answer on a shown set
    implies the best over every other and every other over the worst (best over worst once); the order among
    the middle ones is unknown and implies nothing.
    """
    out: list[tuple[int, int]] = []
    for order in rankings:
        items = [int(i) for i in order]
        out.extend((items[i], items[j]) for i in range(len(items)) for j in range(i + 1, len(items)))
    for shown, best, worst in best_worst or ():
        others = [int(i) for i in shown if i not in (best, worst)]
        out.append((int(best), int(worst)))
        out.extend((int(best), o) for o in others)
        out.extend((o, int(worst)) for o in others)
    return np.array(out, dtype=np.int64).reshape(-1, 2)


class _Design:
    """The stages flattened into arrays: one row per (stage, member), and every within-stage member pair."""

    def __init__(self, stages: list[_Stage], n: int) -> None:
        self.n = n
        sizes = np.array([len(m) for _, m, _ in stages], dtype=np.int64)
        self.n_stages = len(stages)
        self.stage = np.repeat(np.arange(self.n_stages), sizes)
        self.member = np.array([i for _, m, _ in stages for i in m], dtype=np.int64)
        self.sign = np.repeat(np.array([s for _, _, s in stages], dtype=float), sizes)
        self.chosen = np.array([c for c, _, _ in stages], dtype=np.int64)
        self.chosen_sign = np.array([s for _, _, s in stages], dtype=float).reshape(-1)
        # Pairs (u, v) of rows in the same stage, for the −p pᵀ part of each stage's Hessian block.
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]) if self.n_stages else np.zeros(0, dtype=np.int64)
        rows_u, rows_v = [], []
        for size in np.unique(sizes):
            first = starts[sizes == size]
            grid_u, grid_v = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
            rows_u.append((first[:, None] + grid_u.ravel()[None, :]).ravel())
            rows_v.append((first[:, None] + grid_v.ravel()[None, :]).ravel())
        self.pair_u = np.concatenate(rows_u) if rows_u else np.zeros(0, dtype=np.int64)
        self.pair_v = np.concatenate(rows_v) if rows_v else np.zeros(0, dtype=np.int64)
        self.pair_cell = self.member[self.pair_u] * n + self.member[self.pair_v]

    def probabilities(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each row's choice probability within its stage, and each stage's log-normaliser."""
        u = self.sign * theta[self.member]
        top = np.full(self.n_stages, -np.inf)
        np.maximum.at(top, self.stage, u)
        e = np.exp(u - top[self.stage])
        total = np.bincount(self.stage, e, self.n_stages)
        return e / total[self.stage], top + np.log(total)

    def negative_log_likelihood(self, theta: np.ndarray) -> float:
        if self.n_stages == 0:
            return 0.0
        _, log_norm = self.probabilities(theta)
        return float(log_norm.sum() - (self.chosen_sign * theta[self.chosen]).sum())

    def gradient_hessian(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Gradient and Hessian of the negative log-likelihood, and the row probabilities."""
        n = self.n
        p, _ = self.probabilities(theta)
        grad = np.bincount(self.member, self.sign * p, n) - np.bincount(self.chosen, self.chosen_sign, n).astype(float)
        # Per stage: diag(p) − p pᵀ (the signs square away).
        hess = -np.bincount(self.pair_cell, p[self.pair_u] * p[self.pair_v], n * n).reshape(n, n).astype(float)
        hess[np.diag_indices(n)] += np.bincount(self.member, p, n)
        return grad, hess, p


def fit_plackett_luce(
    rankings: Sequence[Sequence[int]],
    n_items: int | None = None,
    *,
    best_worst: Sequence[tuple[Sequence[int], int, int]] | None = None,
    prior: float = DEFAULT_PRIOR,
    init: ArrayLike | None = None,
    level: float = 0.95,
    starting_elo: float = 1000.0,
    tol: float = 1e-8,
    max_iter: int = 100,
) -> PlackettLuceResult:
    """Plackett–Luce scores of datapoints from orders of shown subsets, by Newton's method, with Wald intervals.

    An order ``a₁ ≻ a₂ ≻ … ≻ a_k`` has probability ``∏_s exp(θ_{a_s}) / Σ_{t ≥ s} exp(θ_{a_t})`` (Plackett 1975,
    Luce 1959): the best is chosen from all shown, the next from the rest, and so on. An order may leave the
    bottom out (a top-m list of a larger shown set is not supported: list the whole shown set).

    A best–worst answer ``(shown, best, worst)`` is the partial ranking *best above all shown, worst below all
    the others*, with the middle unordered. It enters as two choices (Marley & Louviere 2005, the sequential
    best–worst model): the best chosen from the shown set with ``exp(θ)``, then the worst from the rest with
    ``exp(−θ)``. This keeps the log-likelihood concave (each stage is a softmax), so Newton's method converges
    from zero.

    With ``prior > 0`` each θ has an ``N(0, 1/prior)`` prior and the result is the MAP estimate, finite for any
    data; with ``prior = 0`` the maximum-likelihood estimate, which exists only when every datapoint is above
    and below others in the comparison graph (the scores are then centred to mean zero). Intervals are Wald
    intervals from the observed information plus the prior, for the centred scores, as in
    :func:`fit_bradley_terry`; rank ranges come from pairwise tests on the joint covariance.

    Parameters
    ----------
    rankings : sequence of sequences of int
        Each an order of the datapoints shown in one task, best first.
    n_items : int, optional
        Number of datapoints; by default the largest index plus one.
    best_worst : sequence of (shown, best, worst), optional
        Best–worst answers: the shown datapoints, the one picked best and the one picked worst.
    prior : float
        Precision of the Gaussian prior on each logit (0 for maximum likelihood).
    init : array_like, optional
        Starting scores, e.g. the previous fit's, for a cheap live refit.
    level : float
        Coverage of the intervals and of the tests behind rank ranges.
    starting_elo : float
        Elo rating of a datapoint with score 0.
    tol : float
        Stop once a full Newton step moves no score by more than this.
    max_iter : int
        Newton iteration limit.

    Returns
    -------
    PlackettLuceResult

    References
    ----------
    R. L. Plackett, "The analysis of permutations", Applied Statistics 24, 1975.
    D. R. Hunter, "MM algorithms for generalized Bradley–Terry models", Annals of Statistics 32, 2004.
    A. A. J. Marley and J. J. Louviere, "Some probabilistic models of best, worst, and best–worst choices",
    Journal of Mathematical Psychology 49, 2005.
    """
    if not (isinstance(prior, int | float) and math.isfinite(prior) and prior >= 0):
        raise ValueError(f"prior must be a finite precision ≥ 0 (default {DEFAULT_PRIOR}); got {prior!r}.")
    z = _z_value(level)
    stages = _stages(rankings, best_worst)
    largest = max((max(m) for _, m, _ in stages), default=-1)
    smallest = min((min(m) for _, m, _ in stages), default=0)
    if smallest < 0:
        raise ValueError(f"datapoint indices must be ≥ 0; got {smallest}.")
    n = largest + 1 if n_items is None else int(n_items)
    if largest >= n:
        raise ValueError(f"a ranking names datapoint {largest}, but n_items is {n}.")
    design = _Design(stages, n)
    pairs = implied_pairs(rankings, best_worst)
    wins = np.bincount(pairs[:, 0], minlength=n).astype(float)
    votes = wins + np.bincount(pairs[:, 1], minlength=n)
    n_answers = float(len(rankings) + len(best_worst or ()))
    if n == 0:
        empty_f, empty_i = np.zeros(0), np.zeros(0, dtype=np.int64)
        return PlackettLuceResult(
            empty_f, empty_f, empty_f, empty_f, empty_f, empty_i, empty_i, empty_i, empty_f, empty_f,
            None, 0.0, True, 0, prior, level, "wald", starting_elo, 0.0, np.zeros((0, 0)), 0,
        )  # fmt: skip
    if prior == 0.0:
        _check_ml_exists(pairs, n)
    theta = np.zeros(n) if init is None else np.asarray(init, dtype=float).copy()
    if theta.shape != (n,) or not np.all(np.isfinite(theta)):
        raise ValueError(f"init must hold one finite score per datapoint ({n}); got {np.shape(init)}.")

    def objective(t: np.ndarray) -> float:
        return design.negative_log_likelihood(t) + 0.5 * prior * float(t @ t)

    # The likelihood is flat along the all-ones direction; 11ᵀ/n fixes it (the prior, if any, already does).
    ones = np.full((n, n), 1.0 / n)
    current = objective(theta)
    converged, iterations = False, 0
    for iterations in range(1, max_iter + 1):  # noqa: B007 - the count is reported
        grad, hess, _ = design.gradient_hessian(theta)
        grad += prior * theta
        hess[np.diag_indices(n)] += prior
        step = -linalg.solve(hess + ones, grad, assume_a="pos", check_finite=False)
        step -= step.mean() if prior == 0.0 else 0.0
        scale = 1.0
        while True:
            candidate = theta + scale * step
            value = objective(candidate)
            if value <= current + 1e-12 * abs(current) or scale < 1e-10:
                break
            scale /= 2.0
        theta, current = candidate, value
        if scale == 1.0 and np.max(np.abs(step)) <= tol:
            converged = True
            break
    if prior == 0.0:
        theta -= theta.mean()

    _, hess, _ = design.gradient_hessian(theta)
    hess[np.diag_indices(n)] += prior
    factor = linalg.cho_factor(hess + ones, check_finite=False)
    covariance = _inverse_from_cholesky(factor)
    # (H + 11ᵀ/n)⁻¹ carries 1/(prior + 1) along the all-ones direction; what is left is the centred scores'.
    covariance -= 1.0 / (n * (prior + 1.0))
    std_errors = np.sqrt(np.maximum(np.diagonal(covariance), 0.0))
    ci_low, ci_high = theta - z * std_errors, theta + z * std_errors
    rank_low, rank_high = rank_ranges(theta, covariance, level)
    ranks = (np.searchsorted(np.sort(-theta), -theta, side="left") + 1).astype(np.int64)
    return PlackettLuceResult(
        scores=theta,
        elo=elo_from_scores(theta, starting_elo),
        ci_low=ci_low,
        ci_high=ci_high,
        std_errors=std_errors,
        ranks=ranks,
        rank_low=np.minimum(rank_low, ranks),
        rank_high=np.maximum(rank_high, ranks),
        wins=wins,
        votes=votes,
        tie_strength=None,
        log_likelihood=-design.negative_log_likelihood(theta),
        converged=converged,
        iterations=iterations,
        prior=float(prior),
        level=level,
        interval="wald",
        starting_elo=starting_elo,
        n_comparisons=n_answers,
        covariance=covariance,
        n_stages=design.n_stages,
    )


def _check_ml_exists(pairs: np.ndarray, n: int) -> None:
    """Hunter's (2004) condition: the MLE exists iff the implied 'beat' graph is strongly connected."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if n <= 1:
        return
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n)).tocsr()
    if connected_components(graph, directed=True, connection="strong")[0] > 1:
        raise ValueError(
            "the maximum-likelihood scores do not exist: some datapoint was never ranked above (or below) the "
            f"rest, so its score runs off to ±infinity. Use the default prior (prior={DEFAULT_PRIOR}) for a MAP "
            "fit, or collect more rankings."
        )
