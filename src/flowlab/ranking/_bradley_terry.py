"""Bradley–Terry maximum-likelihood and MAP fits on aggregated pair counts, with an optional Davidson tie model."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy import linalg
from scipy.sparse import coo_matrix, csr_matrix
from scipy.sparse.csgraph import connected_components
from scipy.special import expit

from ._counts import (
    _as_comparisons,
    _as_win_matrix,
    _is_comparison_array,
)
from ._intervals import (
    _inverse_from_cholesky,
    _laplacian,
    _sandwich_meat,
    _z_value,
    percentile_summary,
    rank_ranges,
)

__all__ = ["DEFAULT_PRIOR", "BradleyTerryResult", "elo_from_scores", "fit_bradley_terry"]

DEFAULT_PRIOR = 0.1
"""Default prior precision: a N(0, 10) prior on each logit, weak next to a handful of votes."""

ELO_PER_LOGIT = 400.0 / math.log(10.0)


@dataclass(frozen=True, eq=False)
class BradleyTerryResult:
    """A Bradley–Terry fit. Every array has one entry per datapoint, in index order.

    Attributes
    ----------
    scores : ndarray
        Logit strengths θ, mean zero. ``P(i beats j) = 1 / (1 + exp(θ_j − θ_i))``.
    elo : ndarray
        The same scores on the Elo scale, ``starting_elo + 400 / ln 10 · θ``.
    ci_low, ci_high : ndarray
        Interval bounds for ``scores`` at ``level`` (logit scale).
    std_errors : ndarray
        Standard errors of ``scores`` (for bootstrap intervals, the bootstrap standard deviation).
    ranks : ndarray of int
        1 = best; equal scores share the best of their ranks.
    rank_low, rank_high : ndarray of int
        Best and worst plausible rank (see :func:`rank_ranges`).
    wins, votes : ndarray
        Wins (ties count half) and votes per datapoint, from the data that was fitted.
    tie_strength : float or None
        Davidson's ν when ``ties="davidson"``, else None.
    log_likelihood : float
        Log-likelihood of the data at ``scores`` (without the prior).
    converged : bool
        Whether Newton's method met the tolerance within ``max_iter``.
    iterations : int
        Newton iterations used.
    prior, level, starting_elo : float
        Settings the fit used.
    interval : str
        ``"wald"``, ``"sandwich"`` or ``"bootstrap"``.
    n_comparisons : float
        Total votes fitted.
    covariance : ndarray or None
        Covariance of ``scores`` (n × n) for Wald and sandwich intervals.
    """

    scores: np.ndarray
    elo: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    std_errors: np.ndarray
    ranks: np.ndarray
    rank_low: np.ndarray
    rank_high: np.ndarray
    wins: np.ndarray
    votes: np.ndarray
    tie_strength: float | None
    log_likelihood: float
    converged: bool
    iterations: int
    prior: float
    level: float
    interval: str
    starting_elo: float
    n_comparisons: float
    covariance: np.ndarray | None = field(default=None, repr=False)

    @property
    def n_items(self) -> int:
        return len(self.scores)

    @property
    def elo_ci_low(self) -> np.ndarray:
        """Lower interval bound on the Elo scale."""
        return elo_from_scores(self.ci_low, self.starting_elo)

    @property
    def elo_ci_high(self) -> np.ndarray:
        """Upper interval bound on the Elo scale."""
        return elo_from_scores(self.ci_high, self.starting_elo)

    def win_probability(self, i: int | np.ndarray, j: int | np.ndarray) -> np.ndarray:
        """Modelled probability that ``i`` beats ``j`` (ties aside)."""
        return expit(self.scores[i] - self.scores[j])


def elo_from_scores(scores: ArrayLike, starting_elo: float = 1000.0) -> np.ndarray:
    """Bradley–Terry logits on the Elo scale: ``starting_elo + 400 / ln 10 · θ``.

    On this scale a 400-point gap means 10:1 odds, as in chess Elo and the Chatbot Arena leaderboard.
    """
    return starting_elo + ELO_PER_LOGIT * np.asarray(scores, dtype=float)


# ---------------------------------------------------------------- data preparation


@dataclass
class _Pairs:
    """Unordered pairs with strict wins each way and ties, the form every solver works on."""

    first: np.ndarray
    second: np.ndarray
    first_wins: np.ndarray  # includes half of each tie unless ties are modelled
    second_wins: np.ndarray
    ties: np.ndarray  # tie counts; zero when ties are folded into the wins
    n: int
    voted: np.ndarray | None = None  # dense n × n mask of pairs with votes, when it was built anyway
    folded: np.ndarray | None = None  # ties folded into the wins as half a win each way (ties=None)

    @property
    def totals(self) -> np.ndarray:
        return self.first_wins + self.second_wins + self.ties


def _pairs_from_data(
    comparisons: ArrayLike,
    n_items: int | None,
    weights: ArrayLike | None,
    tie_counts: ArrayLike | None,
    model_ties: bool,
) -> _Pairs:
    arr = np.asarray(comparisons)
    if _is_comparison_array(arr, comparisons):
        if tie_counts is not None:
            raise ValueError("tie_counts goes with a win matrix; comparisons carry ties in a third column.")
        idx, tie_flags, n = _as_comparisons(arr, n_items)
        w = None
        if weights is not None:
            w = np.asarray(weights, dtype=float)
            if w.shape != (len(idx),):
                raise ValueError(f"weights needs one entry per comparison ({len(idx)}); got shape {w.shape}.")
            if not np.all(np.isfinite(w)) or np.any(w < 0):
                raise ValueError("weights must be finite and non-negative.")
        if n * n <= _DENSE_CELLS:
            # Binning votes into the n² ordered cells is far cheaper than sorting them.
            decided = ~tie_flags
            key = idx[:, 0] * n + idx[:, 1]
            all_decided = bool(decided.all())
            cells: np.ndarray
            if w is None and all_decided:
                cells = np.bincount(key, minlength=n * n).astype(np.float64)
            else:
                cells = np.bincount(key[decided], None if w is None else w[decided], n * n)
            ties = None
            if not all_decided:
                tie_cells = np.bincount(key[tie_flags], None if w is None else w[tie_flags], n * n).reshape(n, n)
                ties = tie_cells + tie_cells.T
            return _pairs_from_counts(cells.reshape(n, n), ties, model_ties)
        w = np.ones(len(idx)) if w is None else w
        lo = np.minimum(idx[:, 0], idx[:, 1])
        hi = np.maximum(idx[:, 0], idx[:, 1])
        key = lo * max(n, 1) + hi
        first_won = idx[:, 0] == lo
        fw_vote = np.where(first_won & ~tie_flags, w, 0.0)
        sw_vote = np.where(~first_won & ~tie_flags, w, 0.0)
        tie_w = np.where(tie_flags, w, 0.0)
        uniq, inverse = np.unique(key, return_inverse=True)
        k = len(uniq)
        fw = np.bincount(inverse, fw_vote, k)
        sw = np.bincount(inverse, sw_vote, k)
        tc = np.bincount(inverse, tie_w, k)
        first, second = uniq // max(n, 1), uniq % max(n, 1)
        if model_ties:
            return _Pairs(first, second, fw, sw, tc, n)
        return _Pairs(first, second, fw + tc / 2, sw + tc / 2, np.zeros(k), n, None, tc if tc.any() else None)
    if weights is not None:
        raise ValueError("weights are per comparison; pass an (m, 2) or (m, 3) comparison array with them.")
    mat = _as_win_matrix(arr, n_items)
    if tie_counts is None:
        if model_ties:
            raise ValueError(
                "ties='davidson' needs to know which votes were ties: pass comparisons with a tie column, "
                "or tie_counts (a symmetric n × n matrix) with the win matrix."
            )
        return _pairs_from_counts(mat, None, False)
    tmat = _as_win_matrix(tie_counts, mat.shape[0])
    if not np.allclose(tmat, tmat.T):
        raise ValueError("tie_counts must be symmetric: tie_counts[i, j] = tie_counts[j, i] = ties between i and j.")
    strict = mat - tmat / 2
    if np.any(strict < -1e-9):
        raise ValueError("tie_counts exceed the win matrix: the matrix must include half of each tie per side.")
    return _pairs_from_counts(np.maximum(strict, 0.0), tmat, model_ties)


# Up to this many ordered cells (n ≤ 4,000) votes are binned densely.
_DENSE_CELLS = 16_000_000


def _pairs_from_counts(strict: np.ndarray, ties: np.ndarray | None, model_ties: bool) -> _Pairs:
    """Unique pairs from a dense matrix of strict wins and an optional symmetric tie matrix."""
    n = strict.shape[0]
    total = strict + strict.T
    if ties is not None:
        total += ties
    voted = total > 0
    first, second = np.nonzero(np.triu(voted, 1))
    fw, sw = strict[first, second], strict[second, first]
    tc = np.zeros(len(first)) if ties is None else ties[first, second]
    if model_ties:
        return _Pairs(first, second, fw, sw, tc, n, voted)
    if ties is None or not tc.any():
        return _Pairs(first, second, fw, sw, np.zeros(len(first)), n, voted)
    return _Pairs(first, second, fw + tc / 2, sw + tc / 2, np.zeros(len(first)), n, voted, tc)


def _check_ml_exists(pairs: _Pairs) -> None:
    """Zermelo/Ford condition: the MLE exists iff every datapoint can reach every other by 'beat' edges."""
    n = pairs.n
    if n <= 1:
        return
    beat_src = np.concatenate([pairs.first[pairs.first_wins > 0], pairs.second[pairs.second_wins > 0]])
    beat_dst = np.concatenate([pairs.second[pairs.first_wins > 0], pairs.first[pairs.second_wins > 0]])
    has_tie = pairs.ties > 0  # a tie is evidence both ways
    beat_src = np.concatenate([beat_src, pairs.first[has_tie], pairs.second[has_tie]])
    beat_dst = np.concatenate([beat_dst, pairs.second[has_tie], pairs.first[has_tie]])
    graph = coo_matrix((np.ones(len(beat_src)), (beat_src, beat_dst)), shape=(n, n)).tocsr()
    n_comp, _ = connected_components(graph, directed=True, connection="strong")
    if n_comp > 1:
        raise ValueError(
            "the maximum-likelihood scores do not exist: the comparison graph is disconnected or some datapoint "
            "never won (or never lost) against the rest, so its score runs off to ±infinity. Use the default "
            f"prior (prior={DEFAULT_PRIOR}) for a MAP fit, or collect more votes."
        )


# ---------------------------------------------------------------- solvers


def _bt_evaluate(theta: np.ndarray, pairs: _Pairs, total: np.ndarray, prior: float) -> tuple[float, np.ndarray]:
    """Negative log-posterior and ``p = σ(θ_first − θ_second)`` per pair, from one exponential per pair.

    With ``t = w_first + w_second``, the likelihood part is ``t·softplus(−d) + w_second·d``.
    """
    d = theta[pairs.first] - theta[pairs.second]
    e = np.exp(-np.abs(d))
    softplus_neg = np.maximum(-d, 0.0) + np.log1p(e)
    nll = total @ softplus_neg + pairs.second_wins @ d + 0.5 * prior * (theta @ theta)
    inv = 1.0 / (1.0 + e)
    p = np.where(d >= 0.0, inv, e * inv)
    return float(nll), p


def _bt_objective(theta: np.ndarray, pairs: _Pairs, prior: float) -> float:
    return _bt_evaluate(theta, pairs, pairs.first_wins + pairs.second_wins, prior)[0]


def _bt_hessian(pairs: _Pairs, p: np.ndarray, total: np.ndarray, prior: float) -> np.ndarray:
    """Dense ``H + 11ᵀ/n``: the Fisher information plus the prior, made positive definite."""
    n = pairs.n
    hess = _laplacian(pairs.first, pairs.second, total * p * (1.0 - p), n)
    hess[np.diag_indices(n)] += prior
    hess += 1.0 / n
    return hess


# Above this many datapoints Newton steps come from conjugate gradients on the sparse Hessian instead of
# a dense Cholesky factorisation: a step then costs a few sparse products rather than O(n³).
_DENSE_LIMIT = 250


class _SparseHessian:
    """Matrix-free ``H + 11ᵀ/n`` over the pair list, with the CSR structure built once per fit."""

    def __init__(self, pairs: _Pairs) -> None:
        n, k = pairs.n, len(pairs.first)
        if pairs.voted is not None:
            # Row-major nonzeros of the symmetric vote mask are already in CSR order; a dense map from
            # cell to pair number says which pair weight each entry takes.
            sym = pairs.voted
            rows, cols = np.nonzero(sym)
            pair_of = np.empty((n, n), dtype=np.int64)
            pair_of[pairs.first, pairs.second] = np.arange(k)
            pair_of[pairs.second, pairs.first] = np.arange(k)
            self.take = pair_of[rows, cols]
            self.indices = cols.astype(np.int32)
        else:
            rows = np.concatenate([pairs.first, pairs.second])
            cols = np.concatenate([pairs.second, pairs.first])
            order = np.lexsort((cols, rows))
            self.take = np.concatenate([np.arange(k), np.arange(k)])[order]
            self.indices = cols[order].astype(np.int32)
            rows = rows[order]
        self.indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n))]).astype(np.int32)
        self.pairs = pairs

    def solve(self, weight: np.ndarray, prior: float, rhs: np.ndarray, rtol: float = 1e-10) -> np.ndarray:
        """Preconditioned conjugate gradients (Jacobi) for ``(L_w + prior·I + 11ᵀ/n) x = rhs``."""
        pairs, n = self.pairs, self.pairs.n
        adj = csr_matrix((-weight[self.take], self.indices, self.indptr), shape=(n, n))
        diag = np.bincount(pairs.first, weight, n) + np.bincount(pairs.second, weight, n) + prior + 1.0 / n
        inv_diag = 1.0 / diag
        x = np.zeros(n)
        r = rhs.copy()
        z = inv_diag * r
        direction = z.copy()
        rz = r @ z
        stop = rtol * np.sqrt(rhs @ rhs)
        for _ in range(10 * n + 100):
            if np.sqrt(r @ r) <= stop:
                break
            hd = adj @ direction + (diag - 1.0 / n) * direction + direction.mean()
            alpha = rz / (direction @ hd)
            x += alpha * direction
            r -= alpha * hd
            z = inv_diag * r
            rz_new = r @ z
            direction = z + (rz_new / rz) * direction
            rz = rz_new
        return x


def _initial_scores(pairs: _Pairs, prior: float) -> np.ndarray:
    """A cheap first guess: log odds of each datapoint's smoothed win rate, shrunk as the prior would.

    On well-mixed comparisons it is close to the fit and saves Newton a few steps; with no votes it is 0.
    """
    n = pairs.n
    won = np.bincount(pairs.first, pairs.first_wins + pairs.ties / 2, n) + np.bincount(
        pairs.second, pairs.second_wins + pairs.ties / 2, n
    )
    played = np.bincount(pairs.first, pairs.totals, n) + np.bincount(pairs.second, pairs.totals, n)
    guess = np.log((won + 0.5) / (played - won + 0.5))
    guess *= played / (played + 4.0 * prior + 1.0)
    return guess - guess.mean() if n else guess


def _bt_gradient(theta: np.ndarray, pairs: _Pairs, total: np.ndarray, prior: float) -> tuple[np.ndarray, np.ndarray]:
    """Gradient of the negative log-posterior and ``p = σ(θ_first − θ_second)`` per pair."""
    n = pairs.n
    p = expit(theta[pairs.first] - theta[pairs.second])
    resid = total * p - pairs.first_wins
    grad = np.bincount(pairs.first, resid, n) - np.bincount(pairs.second, resid, n) + prior * theta
    return grad, p


def _bt_newton(
    pairs: _Pairs, prior: float, theta: np.ndarray, tol: float, max_iter: int
) -> tuple[np.ndarray, bool, int]:
    """Damped Newton's method on the convex negative log-posterior.

    The Hessian is a Laplacian plus ``prior·I``; the all-ones direction does not change the likelihood, so
    ``11ᵀ/n`` is added to make it positive definite and the iterate is kept at mean zero (which is where
    the prior's optimum lies). Steps come from a dense Cholesky solve for small ``n`` and from
    preconditioned conjugate gradients on the sparse Hessian for large ``n``. A step is accepted when
    the slope along it is still downhill at its end (on a convex function that guarantees a decrease) or,
    failing that, when it passes the Armijo test; otherwise it is halved. Returns the scores, whether the
    tolerance was met and the iteration count.
    """
    n = pairs.n
    total = pairs.first_wins + pairs.second_wins
    sparse = _SparseHessian(pairs) if n > _DENSE_LIMIT else None
    theta = theta - theta.mean()
    grad, p = _bt_gradient(theta, pairs, total, prior)
    first_norm = float(np.sqrt(grad @ grad)) or 1.0
    converged = False
    iteration = 0
    for iteration in range(1, max_iter + 1):  # noqa: B007 - the count is returned
        if sparse is None:
            hess = _bt_hessian(pairs, p, total, prior)
            step = -linalg.cho_solve(
                linalg.cho_factor(hess, overwrite_a=True, check_finite=False), grad, check_finite=False
            )
        else:
            # Inexact Newton: solve loosely while far from the optimum, tightly near it (the forcing
            # term follows the gradient's decay, which keeps convergence superlinear).
            rtol = min(1e-2, max(1e-10, float(np.sqrt(grad @ grad)) / first_norm))
            step = -sparse.solve(total * p * (1.0 - p), prior, grad, rtol)
        step -= step.mean()
        decrement = -(grad @ step)
        if decrement <= 0.0 or np.max(np.abs(step)) < tol:
            # Newton converges quadratically: after a step this small the error is of order tol².
            theta = theta + step
            converged = True
            break
        objective = None
        t = 1.0
        while True:
            candidate = theta + t * step
            cand_grad, cand_p = _bt_gradient(candidate, pairs, total, prior)
            if cand_grad @ step <= 0.0 or t < 1e-10:
                break
            if objective is None:
                objective = _bt_evaluate(theta, pairs, total, prior)[0]
            cand_obj = _bt_evaluate(candidate, pairs, total, prior)[0]
            if cand_obj <= objective - 1e-4 * t * decrement + 1e-12 * abs(objective):
                break
            t *= 0.5
        theta, grad, p = candidate, cand_grad, cand_p
    return theta - theta.mean(), converged, iteration


def _davidson_parts(theta: np.ndarray, log_nu: float, pairs: _Pairs) -> tuple[np.ndarray, ...]:
    d = theta[pairs.first] - theta[pairs.second]
    half = np.abs(d) / 2.0
    log_2cosh = half + np.log1p(np.exp(-2.0 * half))
    log_den = np.logaddexp(log_2cosh, log_nu)
    p_first = np.exp(d / 2.0 - log_den)
    p_second = np.exp(-d / 2.0 - log_den)
    p_tie = np.exp(log_nu - log_den)
    return d, log_den, p_first, p_second, p_tie


def _davidson_objective(theta: np.ndarray, log_nu: float, pairs: _Pairs, prior: float) -> float:
    d, log_den, *_ = _davidson_parts(theta, log_nu, pairs)
    nll = -(pairs.first_wins - pairs.second_wins) @ (d / 2.0) - pairs.ties.sum() * log_nu + pairs.totals @ log_den
    return float(nll + 0.5 * prior * (theta @ theta + log_nu**2))


def _davidson_newton(
    pairs: _Pairs, prior: float, theta: np.ndarray, tol: float, max_iter: int
) -> tuple[np.ndarray, float, tuple[np.ndarray, bool], bool, int]:
    """Newton's method for Davidson's (1970) tie model in (θ, log ν), same conventions as the BT solver."""
    n = pairs.n
    first, second = pairs.first, pairs.second
    total = pairs.totals
    net = pairs.first_wins - pairs.second_wins
    theta = theta - theta.mean()
    tie_share = pairs.ties.sum() / max(total.sum(), 1e-12)
    log_nu = float(np.log(max(2.0 * tie_share / max(1.0 - tie_share, 1e-12), 1e-3)))  # ν at θ = 0
    objective = _davidson_objective(theta, log_nu, pairs, prior)
    converged = False
    iteration = 0
    factor = None
    for iteration in range(1, max_iter + 1):  # noqa: B007
        _, _, p1, p2, pt = _davidson_parts(theta, log_nu, pairs)
        resid = -net / 2.0 + total * (p1 - p2) / 2.0
        grad = np.empty(n + 1)
        grad[:n] = np.bincount(first, resid, n) - np.bincount(second, resid, n) + prior * theta
        grad[n] = -pairs.ties.sum() + total @ pt + prior * log_nu
        curv = total * ((p1 + p2) / 4.0 - (p1 - p2) ** 2 / 4.0)
        cross = -total * (p1 - p2) / 2.0 * pt
        hess = np.zeros((n + 1, n + 1))
        hess[:n, :n] = _laplacian(first, second, curv, n)
        hess[np.diag_indices(n)] += prior
        hess[:n, :n] += 1.0 / n
        col = np.bincount(first, cross, n) - np.bincount(second, cross, n)
        hess[:n, n] = col
        hess[n, :n] = col
        hess[n, n] = total @ (pt * (1.0 - pt)) + prior
        factor = linalg.cho_factor(hess, lower=False, overwrite_a=True, check_finite=False)
        step = -linalg.cho_solve(factor, grad, check_finite=False)
        step[:n] -= step[:n].mean()
        decrement = -(grad @ step)
        if decrement <= 0.0 or np.max(np.abs(step)) < tol:
            theta, log_nu = theta + step[:n], log_nu + step[n]
            converged = True
            break
        t = 1.0
        while True:
            cand_theta, cand_nu = theta + t * step[:n], log_nu + t * step[n]
            cand_obj = _davidson_objective(cand_theta, cand_nu, pairs, prior)
            if cand_obj <= objective - 1e-4 * t * decrement + 1e-12 * abs(objective) or t < 1e-10:
                break
            t *= 0.5
        theta, log_nu, objective = cand_theta, cand_nu, cand_obj
    assert factor is not None
    return theta - theta.mean(), log_nu, factor, converged, iteration


def _davidson_meat(pairs: _Pairs, theta: np.ndarray, log_nu: float) -> np.ndarray:
    """Sum of outer products of per-vote score vectors in (θ, log ν) for the Davidson model."""
    n = pairs.n
    _, _, p1, p2, pt = _davidson_parts(theta, log_nu, pairs)
    half_gap = (p1 - p2) / 2.0
    # Score of one vote along (e_first − e_second) and along log ν, for each outcome.
    s_first, s_second, s_tie = half_gap - 0.5, half_gap + 0.5, half_gap
    e_first, e_second, e_tie = pt, pt, pt - 1.0
    w1, w2, wt = pairs.first_wins, pairs.second_wins, pairs.ties
    meat = np.zeros((n + 1, n + 1))
    meat[:n, :n] = _laplacian(pairs.first, pairs.second, w1 * s_first**2 + w2 * s_second**2 + wt * s_tie**2, n)
    cross = w1 * s_first * e_first + w2 * s_second * e_second + wt * s_tie * e_tie
    col = np.bincount(pairs.first, cross, n) - np.bincount(pairs.second, cross, n)
    meat[:n, n] = col
    meat[n, :n] = col
    meat[n, n] = w1 @ (e_first * e_first) + w2 @ (e_second * e_second) + wt @ (e_tie * e_tie)
    return meat


# ---------------------------------------------------------------- public face


def _fit_scores(
    pairs: _Pairs, prior: float, init: np.ndarray, model_ties: bool, tol: float, max_iter: int
) -> tuple[np.ndarray, float | None, tuple[np.ndarray, bool] | None, bool, int]:
    if model_ties:
        return _davidson_newton(pairs, prior, init, tol, max_iter)
    theta, converged, iterations = _bt_newton(pairs, prior, init, tol, max_iter)
    return theta, None, None, converged, iterations


# Empirical Bayes (prior="auto"): the prior's variance τ² is fitted within these bounds; the upper one is
# the default prior, so "auto" never shrinks less than a fixed-prior fit.
_AUTO_TAU2_BOUNDS = (1e-2, 1.0 / DEFAULT_PRIOR)
# Above this many datapoints the EM's posterior variances come from the diagonal of the information.
_AUTO_FULL_LIMIT = 300


def _posterior_variances(pairs: _Pairs, theta: np.ndarray, prior: float) -> np.ndarray:
    """Variances of the centred scores under the Laplace approximation (ties folded, Bradley–Terry curvature)."""
    n = pairs.n
    p = expit(theta[pairs.first] - theta[pairs.second])
    total = pairs.first_wins + pairs.second_wins + pairs.ties
    if n > _AUTO_FULL_LIMIT:
        info = total * p * (1.0 - p)
        return 1.0 / (np.bincount(pairs.first, info, n) + np.bincount(pairs.second, info, n) + prior)
    factor = linalg.cho_factor(_bt_hessian(pairs, p, total, prior), overwrite_a=True, check_finite=False)
    return np.diagonal(_inverse_from_cholesky(factor)) - 1.0 / (n * (prior + 1.0))


def _empirical_bayes_prior(
    pairs: _Pairs, start: np.ndarray, model_ties: bool, tol: float, max_iter: int
) -> tuple[float, np.ndarray]:
    """The prior precision ``1/τ²`` that maximises the (Laplace) marginal likelihood, and scores close to it.

    EM for ``θ_i ~ N(0, τ²)``: ``τ² ← Σ(μ_i² + v_i) / (n − 1)`` with ``μ`` and ``v`` the posterior means and
    variances. Plain EM crawls when the data say little about τ, so the fixed point of
    ``λ ↦ log mean(μ² + v)`` on ``λ = log τ²`` is found by secant steps, which take a handful of fits.
    """
    lo, hi = (math.log(b) for b in _AUTO_TAU2_BOUNDS)
    theta = start

    def update(lam: float) -> float:
        nonlocal theta
        prior = math.exp(-lam)
        theta = _fit_scores(pairs, prior, theta, model_ties, tol, max_iter)[0]
        # The scores are centred, which spends one of their n degrees of freedom.
        total = float(np.sum(theta**2 + np.maximum(_posterior_variances(pairs, theta, prior), 0.0)))
        second_moment = total / max(pairs.n - 1, 1)
        return min(max(math.log(max(second_moment, 1e-12)), lo), hi)

    lam = hi if not np.any(start) else min(max(math.log(float(np.mean(start**2)) + 1e-2), lo), hi)
    prev, g_prev = lam, update(lam)
    lam = g_prev
    for _ in range(30):
        g = update(lam)
        if abs(g - lam) < 1e-4:
            lam = g
            break
        slope = ((g - lam) - (g_prev - prev)) / (lam - prev) if lam != prev else 0.0
        prev, g_prev = lam, g
        # Secant on h(λ) = g(λ) − λ; where h is flat or the step leaves the bounds, a plain EM step.
        step = lam - (g - lam) / slope if slope < -1e-6 else g
        lam = min(max(step, lo), hi)
    # The scores of the last evaluation: the caller's fit at the final prior starts from them.
    return math.exp(-lam), theta


def _prior_scale_uncertainty(
    pairs: _Pairs, theta: np.ndarray, prior: float, model_ties: bool, tol: float, max_iter: int
) -> np.ndarray:
    """The direction scores move with ``λ = log τ²``, scaled by λ's standard error.

    Plugging the fitted τ² in as if it were known makes intervals too short where it matters, for the
    datapoints the prior pulls hardest. Kass and Steffey's (1989) first-order correction adds
    ``(∂μ/∂λ)(∂μ/∂λ)ᵀ Var(λ̂)`` to the covariance; ``Var(λ̂)`` is the inverse of ``½ Σ_i (τ²/(τ² + s_i²))²``,
    the information about λ in scores each measured with variance ``s_i²``, where ``τ²/(τ² + s_i²)`` is
    ``1 − v_i/τ²`` in terms of the posterior variance ``v_i``.
    """
    h = 0.05
    moved = _fit_scores(pairs, prior * math.exp(-h), theta, model_ties, tol, max_iter)[0]
    direction = (moved - theta) / h
    # τ²/(τ² + s²) is the share of a score's variance the data explain, 1 − v/τ² with v its posterior variance.
    explained = np.clip(1.0 - _posterior_variances(pairs, theta, prior) * prior, 0.0, 1.0)
    lam_info = 0.5 * float(np.sum(explained**2))
    return direction / math.sqrt(max(lam_info, 1e-12))


def fit_bradley_terry(
    comparisons: ArrayLike,
    n_items: int | None = None,
    *,
    prior: float | Literal["auto"] = DEFAULT_PRIOR,
    ties: Literal["davidson"] | None = None,
    tie_counts: ArrayLike | None = None,
    weights: ArrayLike | None = None,
    init: ArrayLike | None = None,
    interval: Literal["wald", "sandwich", "bootstrap"] | None = None,
    level: float = 0.95,
    n_bootstrap: int = 200,
    rng: np.random.Generator | int | None = None,
    starting_elo: float = 1000.0,
    tol: float = 1e-6,
    max_iter: int = 100,
) -> BradleyTerryResult:
    """Fit Bradley–Terry scores to pairwise votes, with intervals and rank ranges.

    The model (Bradley & Terry 1952) says ``P(i beats j) = σ(θ_i − θ_j)``. With ``prior > 0`` each θ has a
    ``N(0, 1/prior)`` prior and the result is the MAP estimate, which is finite for any data (no votes,
    a datapoint that never won, disconnected comparison graphs); with ``prior = 0`` it is the maximum
    likelihood estimate, which exists only when the "beat" graph is strongly connected (Hunter 2004) and
    raises a ValueError otherwise. Votes are aggregated to unique pairs and the convex objective is
    minimised by damped Newton's method, so a fit costs a few dense ``n × n`` Cholesky factorisations
    and a refit warm-started with ``init`` usually takes one or two.

    Parameters
    ----------
    comparisons : array_like
        Either an (m, 2) integer array of ``(winner, loser)`` indices, an (m, 3) array whose third column
        flags ties (a tie counts half a win to each side), or an ``n × n`` win matrix whose entry
        ``[i, j]`` counts votes for ``i`` over ``j`` (halves allowed). An integer array with 2 or 3 columns
        is read as comparisons; pass a 2 × 2 or 3 × 3 win matrix as floats.
    n_items : int, optional
        Number of datapoints; by default the largest index plus one, or the matrix size.
    prior : float or "auto"
        Precision of the Gaussian prior on each logit (0 for maximum likelihood), or ``"auto"``: empirical
        Bayes, the prior's variance fitted to the data (between 0.01 and the default's 10) and the
        intervals widened for that variance's own uncertainty. Use ``"auto"`` for votes on pairs that were
        chosen from earlier votes (active selection): there the maximum-likelihood scores come out
        stretched and their intervals cover far less than they say, while the posterior under a fitted
        prior does not depend on how the pairs were chosen. The result's ``prior`` is the precision used.
    ties : {None, "davidson"}
        None counts a tie as half a win each way; ``"davidson"`` fits Davidson's (1970) tie model
        ``P(tie) ∝ ν √(π_i π_j)`` and reports ν as ``tie_strength``.
    tie_counts : array_like, optional
        Symmetric ``n × n`` tie counts to go with a win matrix (which must already hold half of each tie
        per side) when ``ties="davidson"``.
    weights : array_like, optional
        A non-negative weight per comparison (e.g. annotator reliability); comparisons input only.
    init : array_like, optional
        Starting scores, typically the previous fit's ``scores``, for a cheap live refit.
    interval : {"wald", "sandwich", "bootstrap"}, optional
        Wald intervals from the Fisher information (the default); sandwich (Huber–White) intervals, robust
        to annotators who do not follow the model; or a multinomial bootstrap of the votes. With ties
        counted half each way (``ties=None``) and known as ties (a tie column, or ``tie_counts``), the
        default is the sandwich: the Fisher information of a half-and-half vote is that of a decided one,
        which makes Wald errors about 1.2× too wide at a quarter of ties. Above 2,000
        datapoints the exact covariance (O(n³)) is skipped: Wald and sandwich errors then come from the
        diagonal of the information, rank ranges from non-overlapping intervals, and ``covariance`` is None.
    level : float
        Coverage of the intervals and of the pairwise tests behind rank ranges.
    n_bootstrap : int
        Bootstrap replicates when ``interval="bootstrap"``.
    rng : numpy.random.Generator or int, optional
        Randomness for the bootstrap.
    starting_elo : float
        Elo rating of a datapoint with score 0.
    tol : float
        Stop after a full Newton step that moves no score by more than this (the remaining error is of
        order ``tol²``).
    max_iter : int
        Newton iteration limit.

    Returns
    -------
    BradleyTerryResult

    References
    ----------
    R. A. Bradley and M. E. Terry, "Rank analysis of incomplete block designs: I. The method of paired
    comparisons", Biometrika 39, 1952.
    R. R. Davidson, "On extending the Bradley–Terry model to accommodate ties in paired comparison
    experiments", JASA 65, 1970.
    D. R. Hunter, "MM algorithms for generalized Bradley–Terry models", Annals of Statistics 32, 2004.
    """
    auto_prior = isinstance(prior, str) and prior == "auto"
    if not auto_prior and not (isinstance(prior, int | float) and math.isfinite(prior) and prior >= 0):
        raise ValueError(f"prior must be a finite precision ≥ 0 (default {DEFAULT_PRIOR}) or 'auto'; got {prior!r}.")
    if ties not in (None, "davidson"):
        raise ValueError(f"ties must be None (a tie counts half each way) or 'davidson'; got {ties!r}.")
    if interval not in (None, "wald", "sandwich", "bootstrap"):
        raise ValueError(f"interval must be 'wald', 'sandwich' or 'bootstrap'; got {interval!r}.")
    z = _z_value(level)
    model_ties = ties == "davidson"
    pairs = _pairs_from_data(comparisons, n_items, weights, tie_counts, model_ties)
    n = pairs.n
    if interval is None:
        interval = "sandwich" if pairs.folded is not None else "wald"
    prior = DEFAULT_PRIOR if auto_prior else float(prior)  # type: ignore[arg-type]
    if init is None:
        start = _initial_scores(pairs, prior)
    else:
        start = np.asarray(init, dtype=float)
        if start.shape != (n,):
            raise ValueError(f"init must hold one score per datapoint ({n}); got shape {start.shape}.")
        if not np.all(np.isfinite(start)):
            raise ValueError("init contains NaN or infinite scores; pass the previous fit's scores or None.")
    if prior == 0.0:
        _check_ml_exists(pairs)
        if model_ties and pairs.ties.sum() == 0:
            raise ValueError(
                "ties='davidson' with prior=0 needs at least one tie (ν would be 0); use ties=None or prior > 0."
            )
        if model_ties and (pairs.first_wins + pairs.second_wins).sum() == 0:
            raise ValueError(
                "ties='davidson' with prior=0 needs at least one decided vote (with only ties, ν would be "
                "infinite); use prior > 0."
            )
    wins = np.bincount(pairs.first, pairs.first_wins + pairs.ties / 2, n) + np.bincount(
        pairs.second, pairs.second_wins + pairs.ties / 2, n
    )
    votes = np.bincount(pairs.first, pairs.totals, n) + np.bincount(pairs.second, pairs.totals, n)
    n_comparisons = float(pairs.totals.sum())

    if n == 0:
        empty_f, empty_i = np.zeros(0), np.zeros(0, dtype=np.int64)
        return BradleyTerryResult(
            empty_f, empty_f, empty_f, empty_f, empty_f, empty_i, empty_i, empty_i, empty_f, empty_f,
            None, 0.0, True, 0, prior, level, interval, starting_elo, 0.0, np.zeros((0, 0)),
        )  # fmt: skip

    scale_direction = None
    if auto_prior and n_comparisons > 0:
        prior, start = _empirical_bayes_prior(pairs, start, model_ties, tol, max_iter)
    theta, fitted_nu, factor, converged, iterations = _fit_scores(pairs, prior, start, model_ties, tol, max_iter)
    log_nu = 0.0 if fitted_nu is None else fitted_nu
    if auto_prior and n_comparisons > 0 and interval != "bootstrap":
        scale_direction = _prior_scale_uncertainty(pairs, theta, prior, model_ties, tol, max_iter)

    if interval == "bootstrap":
        generator = np.random.default_rng(rng)
        draws = _bootstrap_scores(pairs, prior, theta, model_ties, n_bootstrap, generator, tol, max_iter)
        ci_low, ci_high, std_errors, rank_low, rank_high = percentile_summary(draws, level)
        covariance = None
    elif n > _FULL_COVARIANCE_LIMIT and not model_ties:
        std_errors = _diagonal_std_errors(pairs, theta, prior, interval == "sandwich")
        if scale_direction is not None:
            std_errors = np.sqrt(std_errors**2 + scale_direction**2)
        ci_low, ci_high = theta - z * std_errors, theta + z * std_errors
        rank_low, rank_high = _rank_ranges_from_intervals(ci_low, ci_high)
        covariance = None
    else:
        if factor is None:
            total = pairs.first_wins + pairs.second_wins
            p = expit(theta[pairs.first] - theta[pairs.second])
            hess = _bt_hessian(pairs, p, total, prior)
            factor = linalg.cho_factor(hess, overwrite_a=True, check_finite=False)
        inv = _inverse_from_cholesky(factor)
        # inv is (H + 11ᵀ/n)⁻¹; the all-ones direction of the θ block carries 1/(prior + 1) to remove.
        bread = inv.copy()
        bread[:n, :n] -= 1.0 / (n * (prior + 1.0))
        if interval == "sandwich":
            if model_ties:
                meat = _davidson_meat(pairs, theta, log_nu)
            else:
                meat = _sandwich_meat(
                    pairs.first, pairs.second, pairs.first_wins, pairs.second_wins, theta, pairs.folded
                )
            # The prior's curvature goes into the meat too, so that with no votes the sandwich
            # equals the prior covariance instead of collapsing to zero width.
            meat[np.diag_indices(len(meat))] += prior
            covariance = (bread @ meat @ bread)[:n, :n]
        else:
            covariance = bread[:n, :n]
        if scale_direction is not None:
            covariance = covariance + np.outer(scale_direction, scale_direction)
        std_errors = np.sqrt(np.maximum(np.diagonal(covariance), 0.0))
        ci_low, ci_high = theta - z * std_errors, theta + z * std_errors
        rank_low, rank_high = rank_ranges(theta, covariance, level)

    ranks = _competition_ranks(theta)
    rank_low = np.minimum(rank_low, ranks)
    rank_high = np.maximum(rank_high, ranks)
    loglik = -_davidson_objective(theta, log_nu, pairs, 0.0) if model_ties else -_bt_objective(theta, pairs, 0.0)
    return BradleyTerryResult(
        scores=theta,
        elo=elo_from_scores(theta, starting_elo),
        ci_low=ci_low,
        ci_high=ci_high,
        std_errors=std_errors,
        ranks=ranks,
        rank_low=rank_low,
        rank_high=rank_high,
        wins=wins,
        votes=votes,
        tie_strength=float(np.exp(log_nu)) if model_ties else None,
        log_likelihood=float(loglik),
        converged=converged,
        iterations=iterations,
        prior=prior,
        level=level,
        interval=interval,
        starting_elo=starting_elo,
        n_comparisons=n_comparisons,
        covariance=covariance,
    )


# Above this many datapoints the O(n³) exact covariance is skipped (an item of 10,000 would need 800 MB
# and minutes); intervals then come from the diagonal of the Fisher information.
_FULL_COVARIANCE_LIMIT = 2000


def _diagonal_std_errors(pairs: _Pairs, theta: np.ndarray, prior: float, sandwich: bool) -> np.ndarray:
    """Standard errors from the Hessian's diagonal: exact for a datapoint compared against many
    well-determined others, optimistic for sparse comparison graphs."""
    n = pairs.n
    p = expit(theta[pairs.first] - theta[pairs.second])
    total = pairs.first_wins + pairs.second_wins
    info = total * p * (1.0 - p)
    diag = np.bincount(pairs.first, info, n) + np.bincount(pairs.second, info, n) + prior
    if not sandwich:
        return np.sqrt(1.0 / diag)
    meat = pairs.first_wins * (1.0 - p) ** 2 + pairs.second_wins * p**2
    if pairs.folded is not None:
        meat -= 0.25 * pairs.folded  # a tie's score is ½ − p, not two half votes (see _sandwich_meat)
    meat_diag = np.bincount(pairs.first, meat, n) + np.bincount(pairs.second, meat, n) + prior
    return np.sqrt(meat_diag) / diag


def _rank_ranges_from_intervals(ci_low: np.ndarray, ci_high: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rank ranges from non-overlapping marginal intervals, in O(n log n)."""
    n = len(ci_low)
    surely_better = n - np.searchsorted(np.sort(ci_low), ci_high, side="right")  # ci_low_j > ci_high_i
    surely_worse = np.searchsorted(np.sort(ci_high), ci_low, side="left")  # ci_high_j < ci_low_i
    return (1 + surely_better).astype(np.int64), (n - surely_worse).astype(np.int64)


def _competition_ranks(scores: np.ndarray) -> np.ndarray:
    """1 + the number of strictly better scores, so equal scores share a rank."""
    order = np.sort(-scores)
    return (np.searchsorted(order, -scores, side="left") + 1).astype(np.int64)


def _bootstrap_scores(
    pairs: _Pairs,
    prior: float,
    theta: np.ndarray,
    model_ties: bool,
    n_bootstrap: int,
    rng: np.random.Generator,
    tol: float,
    max_iter: int,
) -> np.ndarray:
    """Refit on multinomial resamples of the vote cells (first won, second won, tie per pair)."""
    if n_bootstrap < 2:
        raise ValueError(f"n_bootstrap must be at least 2; got {n_bootstrap}.")
    folded = pairs.folded
    if folded is None:
        cells = np.concatenate([pairs.first_wins, pairs.second_wins, pairs.ties])
    else:  # resample a tie as one vote, not as two half votes drawn apart
        cells = np.concatenate([pairs.first_wins - folded / 2, pairs.second_wins - folded / 2, folded])
    total = cells.sum()
    k = len(pairs.first)
    draws = np.empty((n_bootstrap, pairs.n))
    if total <= 0:
        # No votes: the posterior is the prior, which the bootstrap cannot see; draw from it instead.
        sd = 1.0 / math.sqrt(prior) if prior > 0 else 0.0
        raw = rng.normal(0.0, sd, size=(n_bootstrap, pairs.n))
        return raw - raw.mean(axis=1, keepdims=True)
    probs = cells / total
    n_votes = max(round(total), 1)
    for b in range(n_bootstrap):
        counts = rng.multinomial(n_votes, probs) * (total / n_votes)
        first_wins, second_wins, ties = counts[:k], counts[k : 2 * k], counts[2 * k :]
        if folded is not None:
            first_wins, second_wins, ties = first_wins + ties / 2, second_wins + ties / 2, np.zeros(k)
        resampled = _Pairs(pairs.first, pairs.second, first_wins, second_wins, ties, pairs.n)
        # A resample can lose the connectivity the MLE needs; a whisper of prior keeps it finite.
        boot_prior = prior if prior > 0.0 else 1e-6
        draws[b] = _fit_scores(resampled, boot_prior, theta, model_ties, tol, max_iter)[0]
    # A datapoint nobody voted on is the same in every resample, so the bootstrap would give it a zero-width
    # interval; what is known of it is the prior, so its draws come from the prior instead.
    unvoted = (np.bincount(pairs.first, pairs.totals, pairs.n) + np.bincount(pairs.second, pairs.totals, pairs.n)) == 0
    if unvoted.any() and prior > 0:
        draws[:, unvoted] = rng.normal(0.0, 1.0 / math.sqrt(prior), size=(n_bootstrap, int(unvoted.sum())))
        draws -= draws.mean(axis=1, keepdims=True)
    return draws
