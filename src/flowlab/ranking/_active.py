"""Choosing the next pairs to show annotators: uniform, or active (close, uncertain pairs, every datapoint covered)."""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import expit

from ._bradley_terry import DEFAULT_PRIOR, BradleyTerryResult
from ._counts import _as_win_matrix

__all__ = ["pair_utilities", "select_pairs", "select_pairs_uniform"]


def _generator(rng: np.random.Generator | int | None) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def select_pairs_uniform(n_items: int, n_pairs: int, *, rng: np.random.Generator | int | None = None) -> np.ndarray:
    """Pairs drawn uniformly at random, distinct within the batch while there are enough pairs.

    Parameters
    ----------
    n_items : int
        Number of datapoints (at least 2).
    n_pairs : int
        Pairs to return.
    rng : numpy.random.Generator or int, optional
        Randomness.

    Returns
    -------
    ndarray of int64, shape (n_pairs, 2)
        ``(a, b)`` rows with ``a != b``, in random order within each row.
    """
    _check_request(n_items, n_pairs)
    gen = _generator(rng)
    n_unique = n_items * (n_items - 1) // 2
    if n_pairs <= n_unique and n_unique <= 4 * n_pairs + 64:
        # Few pairs in all: sample distinct unordered pairs directly.
        flat = gen.choice(n_unique, size=n_pairs, replace=False)
        first, second = _unrank_pairs(flat, n_items)
    else:
        first = gen.integers(0, n_items, n_pairs)
        second = (first + gen.integers(1, n_items, n_pairs)) % n_items
    return _random_orientation(first, second, gen)


def _unrank_pairs(flat: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    first, second = np.triu_indices(n, 1)
    return first[flat], second[flat]


def _random_orientation(first: np.ndarray, second: np.ndarray, gen: np.random.Generator) -> np.ndarray:
    swap = gen.random(len(first)) < 0.5
    a = np.where(swap, second, first)
    b = np.where(swap, first, second)
    return np.stack([a, b], axis=1).astype(np.int64)


def _check_request(n_items: int, n_pairs: int) -> None:
    if n_items < 2:
        raise ValueError(f"pairs need at least 2 datapoints; this item has {n_items}.")
    if isinstance(n_pairs, bool) or int(n_pairs) != n_pairs or n_pairs < 0:
        raise ValueError(f"n_pairs must be a non-negative integer; got {n_pairs!r}.")


# Up to this many datapoints the utility uses the fit's full covariance (two n × n matrix products);
# above it, only the variances, which keeps a call O(n²).
_FULL_COVARIANCE_LIMIT = 300


def _estimates(
    counts: np.ndarray, wins: np.ndarray, fit: BradleyTerryResult | None, prior: float
) -> tuple[np.ndarray, np.ndarray]:
    """Scores and their covariance (n × n) or variances (n,) to judge pairs by.

    A fit may be a few votes stale; each datapoint's variance is shrunk by the information its newer
    votes carry (a fifth of a unit each, about what a vote between near-equal datapoints gives), keeping
    the fit's correlations.
    """
    n = counts.shape[0]
    votes = counts.sum(axis=1)
    if fit is None:
        # Smoothed win rates on the logit scale; variance from a quarter unit of information per vote.
        won = wins.sum(axis=1)
        scores = np.log((won + 0.5) / (votes - won + 0.5))
        return scores - scores.mean(), 1.0 / (prior + 0.25 * votes)
    if fit.scores.shape != (n,):
        raise ValueError(
            f"fit has {fit.scores.shape[0]} datapoints but the win matrix has {n}; refit on this item's matrix."
        )
    var = np.maximum(fit.std_errors, 1e-6) ** 2
    new_votes = np.maximum(votes - fit.votes, 0.0)
    shrunk = 1.0 / (1.0 / var + 0.2 * new_votes)
    if fit.covariance is None or n > _FULL_COVARIANCE_LIMIT:
        return fit.scores, shrunk
    scale = np.sqrt(shrunk / var)
    return fit.scores, fit.covariance * scale[:, None] * scale[None, :]


def pair_utilities(
    wins: ArrayLike,
    *,
    fit: BradleyTerryResult | None = None,
    prior: float = DEFAULT_PRIOR,
) -> np.ndarray:
    """Expected drop in the number of misordered pairs from one more vote on each pair.

    With scores ``μ`` and covariance ``Σ`` (a Gaussian approximation of the posterior), the expected
    number of pairs the current ranking gets wrong is ``D = Σ_{k<l} Φ(−|μ_k − μ_l| / σ_kl)``, with
    ``σ_kl² = Var(θ_k − θ_l)``. A vote on ``(i, j)`` carries Fisher information ``q = p (1 − p)`` about
    ``θ_i − θ_j`` and shrinks the covariance by the rank-one term ``q Σx xᵀΣ / (1 + q σ_ij²)``,
    ``x = e_i − e_j``. To first order the drop in ``D`` is therefore

        ``U_ij = q / (1 + q σ_ij²) · xᵀ Σ L Σ x``,

    where ``L`` is the graph Laplacian with pair weights ``∂D/∂σ_kl² = φ(z_kl) z_kl / (2 σ_kl²)``. Close
    pairs with uncertain order weigh most, and so do votes that firm up a datapoint that sits among many
    close neighbours, while pairs far apart (``q`` small) or already settled score near zero. This is a
    one-step lookahead in the spirit of information-gain pair selection (e.g. Chen et al. 2013, Crowd-BT;
    Chiang et al. 2024 sample Arena battles to shrink interval widths).

    Parameters
    ----------
    wins : array_like, shape (n, n)
        Current win matrix.
    fit : BradleyTerryResult, optional
        Latest fit; its covariance is used when present and ``n ≤ 300`` (otherwise only the variances).
        Without a fit, smoothed win rates stand in for the scores.
    prior : float
        Prior precision used when there is no fit.

    Returns
    -------
    ndarray, shape (n, n)
        Symmetric utilities with a zero diagonal.
    """
    mat = _as_win_matrix(wins)
    counts = mat + mat.T
    scores, cov = _estimates(counts, mat, fit, prior)
    return _utilities(scores, cov)


def _utilities(scores: np.ndarray, cov: np.ndarray) -> np.ndarray:
    full = cov.ndim == 2
    var = np.diagonal(cov) if full else cov
    gap = np.abs(scores[:, None] - scores[None, :])
    pair_var = var[:, None] + var[None, :]
    if full:
        pair_var -= 2.0 * cov
    np.maximum(pair_var, 1e-12, out=pair_var)
    inv_var = 1.0 / pair_var
    z = gap * np.sqrt(inv_var)
    # weight = φ(z) z / σ² up to a constant: how fast the chance of misordering the pair falls as σ² does.
    weight = np.square(z)
    weight *= -0.5
    np.exp(weight, out=weight)
    weight *= z
    weight *= inv_var
    np.fill_diagonal(weight, 0.0)
    lap = np.negative(weight)
    lap.ravel()[:: len(scores) + 1] = weight.sum(axis=1)
    # spread = Σ L Σ; only xᵀ spread x = spread_ii + spread_jj − 2 spread_ij is needed.
    spread = cov @ lap @ cov if full else var[:, None] * lap * var[None, :]
    diag = np.diagonal(spread).copy()
    quad = spread
    quad *= -2.0
    quad += diag[:, None]
    quad += diag[None, :]
    np.maximum(quad, 0.0, out=quad)
    p = expit(gap)
    q = p * (1.0 - p)
    util = q * quad
    q *= pair_var
    q += 1.0
    util /= q
    np.fill_diagonal(util, 0.0)
    return util


def select_pairs(
    wins: ArrayLike,
    n_pairs: int,
    *,
    fit: BradleyTerryResult | None = None,
    method: Literal["active", "uniform"] = "active",
    rng: np.random.Generator | int | None = None,
    pending: ArrayLike | None = None,
    min_votes: int = 1,
    exploration: float = 0.0,
    prior: float = DEFAULT_PRIOR,
) -> np.ndarray:
    """The next pairs to show annotators for one flow item.

    Active selection (the default) ranks pairs by :func:`pair_utilities`: close pairs whose order is
    still uncertain come first. Coverage is kept in two ways: a datapoint with fewer than ``min_votes``
    votes (counting pending pairs) is paired first, preferably with another such datapoint, else with its
    most useful partner; and no datapoint appears in more than ``ceil(2·n_pairs/n)`` pairs of one batch,
    so a batch spreads over the item.
    An optional ``exploration`` share of the pairs is drawn uniformly, a hedge against a fit that is badly
    stale or a model that does not hold.

    Parameters
    ----------
    wins : array_like, shape (n, n)
        Current win matrix of the item (``wins[i, j]``: votes for ``i`` over ``j``).
    n_pairs : int
        How many pairs to return.
    fit : BradleyTerryResult, optional
        Latest fit of this item (may be a few votes stale); without one, smoothed win rates are used.
    method : {"active", "uniform"}
        The flow's pair-selection setting.
    rng : numpy.random.Generator or int, optional
        Randomness for orientation, exploration and tie-breaking.
    pending : array_like, shape (k, 2), optional
        Pairs already handed out and not yet answered; they count as coming votes.
    min_votes : int
        Votes every datapoint should have before pairs are chosen purely by utility.
    exploration : float
        Share of pairs drawn uniformly, in [0, 1].
    prior : float
        Prior precision used when there is no fit.

    Returns
    -------
    ndarray of int64, shape (n_pairs, 2)
        ``(a, b)`` rows, ``a != b``, each row in random order (so position carries no signal).
    """
    mat = _as_win_matrix(wins)
    n = mat.shape[0]
    _check_request(n, n_pairs)
    if method not in ("active", "uniform"):
        raise ValueError(f"method must be 'active' or 'uniform'; got {method!r}.")
    if not 0.0 <= exploration <= 1.0:
        raise ValueError(f"exploration is a share of pairs in [0, 1]; got {exploration!r}.")
    gen = _generator(rng)
    if method == "uniform" or n_pairs == 0:
        return select_pairs_uniform(n, n_pairs, rng=gen)

    counts = mat + mat.T
    if pending is not None:
        pend = np.asarray(pending, dtype=np.int64).reshape(-1, 2)
        if len(pend) and (pend.min() < 0 or pend.max() >= n):
            raise ValueError(f"pending pairs must hold indices in 0..{n - 1}.")
        counts = counts.copy()
        np.add.at(counts, (pend[:, 0], pend[:, 1]), 1.0)
        np.add.at(counts, (pend[:, 1], pend[:, 0]), 1.0)
    scores, cov = _estimates(counts, mat, fit, prior)
    if n <= _DENSE_SELECT_LIMIT:
        util = _utilities(scores, cov)
        # Candidates: each datapoint's few best partners. The very best pairs tend to share a
        # datapoint, so a global list would be long before it held a batch the cap lets through.
        k = min(n - 1, 2 * max(1, -(-2 * n_pairs // n)) + 6)
        partners = np.argpartition(util, n - k, axis=1)[:, n - k :]
        first = np.repeat(np.arange(n), k)
        second = partners.ravel()
        values = util[first, second]
        keep = first != second
        first, second, values = first[keep], second[keep], values[keep]
    else:
        var = np.diagonal(cov) if cov.ndim == 2 else cov
        first, second, values = _window_utilities(scores, var, gen)
    # A whisper of noise breaks exact ties (equal scores early on) at random.
    values = values + gen.random(len(values)) * (1e-9 * values.max(initial=0.0) + 1e-300)

    n_explore = int(gen.binomial(n_pairs, exploration)) if exploration > 0 else 0
    n_active = n_pairs - n_explore
    cap = max(1, -(-2 * n_active // n))  # ceil(2·n_active / n): appearances per datapoint per batch
    picker = _BatchPicker(n, cap)

    # Coverage first: datapoints under min_votes, least-voted first, paired with each other where possible
    # (one vote covers two), a last odd one with its most useful partner.
    votes = counts.sum(axis=1)
    starving = np.flatnonzero(votes < min_votes)
    starving = starving[np.lexsort((gen.random(len(starving)), votes[starving]))]
    for a, b in zip(starving[0::2].tolist(), starving[1::2].tolist(), strict=False):
        if len(picker.chosen) >= n_active:
            break
        picker.try_add(a, b)
    if len(starving) % 2 and len(picker.chosen) < n_active:
        last = int(starving[-1])
        involved = np.flatnonzero((first == last) | (second == last))
        for k in involved[np.argsort(-values[involved])].tolist():
            if picker.try_add(int(first[k]), int(second[k])):
                break

    # Then the most useful pairs, best first, within the per-batch cap.
    if len(picker.chosen) < n_active:
        n_top = min(len(values), max(64 * n_active, 4 * n))
        top = np.argpartition(values, len(values) - n_top)[len(values) - n_top :] if n_top < len(values) else None
        order = np.arange(len(values)) if top is None else top
        order = order[np.argsort(-values[order])]
        picker.add_greedy(first[order].tolist(), second[order].tolist(), n_active)
    if len(picker.chosen) < n_active:
        # Still short (caps and a short list): pair the datapoints with room left at random.
        free = np.flatnonzero(np.asarray(picker.used) < cap)
        free = free[gen.permutation(len(free))]
        for a, b in zip(free[0::2].tolist(), free[1::2].tolist(), strict=False):
            if len(picker.chosen) >= n_active:
                break
            picker.try_add(a, b)
    chosen = picker.chosen
    n_missing = n_pairs - len(chosen)
    if n_missing:  # exploration, plus anything left unfilled
        extra = select_pairs_uniform(n, n_missing, rng=gen)
        chosen.extend((int(a), int(b)) for a, b in extra)
    arr = np.asarray(chosen, dtype=np.int64).reshape(-1, 2)
    return _random_orientation(arr[:, 0], arr[:, 1], gen)


class _BatchPicker:
    """The pairs of one batch, with at most ``cap`` appearances per datapoint and no repeated pair."""

    def __init__(self, n: int, cap: int) -> None:
        self.used = [0] * n
        self.cap = cap
        self.chosen: list[tuple[int, int]] = []
        self.taken: set[tuple[int, int]] = set()

    def try_add(self, a: int, b: int) -> bool:
        pair = (a, b) if a < b else (b, a)
        if a == b or self.used[a] >= self.cap or self.used[b] >= self.cap or pair in self.taken:
            return False
        self.chosen.append(pair)
        self.taken.add(pair)
        self.used[a] += 1
        self.used[b] += 1
        return True

    def add_greedy(self, firsts: list[int], seconds: list[int], limit: int) -> None:
        """Take candidate pairs in order until the batch holds ``limit`` (the hot loop, kept lean)."""
        used, taken, chosen, cap = self.used, self.taken, self.chosen, self.cap
        for a, b in zip(firsts, seconds, strict=True):
            if len(chosen) >= limit:
                return
            if a == b or used[a] >= cap or used[b] >= cap:
                continue
            pair = (a, b) if a < b else (b, a)
            if pair in taken:
                continue
            chosen.append(pair)
            taken.add(pair)
            used[a] += 1
            used[b] += 1


# Above this many datapoints, only pairs within a window of the current score order are considered;
# the utility of pairs further apart is negligible and scoring all n² pairs would cost tens of ms.
_DENSE_SELECT_LIMIT = 300
_WINDOW = 24


def _window_utilities(
    scores: np.ndarray, var: np.ndarray, gen: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`pair_utilities` with the diagonal covariance, for pairs near each other in score order."""
    n = len(scores)
    order = np.lexsort((gen.random(n), scores))
    offsets = np.arange(1, min(_WINDOW, n - 1) + 1)
    pos_a = np.concatenate([np.arange(n - k) for k in offsets])
    pos_b = pos_a + np.repeat(offsets, n - offsets)
    a, b = order[pos_a], order[pos_b]
    gap = np.abs(scores[a] - scores[b])
    pair_var = np.maximum(var[a] + var[b], 1e-12)
    z = gap / np.sqrt(pair_var)
    weight = np.exp(-0.5 * z * z) * z / pair_var
    lap_diag = np.bincount(a, weight, n) + np.bincount(b, weight, n)
    quad = var[a] ** 2 * lap_diag[a] + var[b] ** 2 * lap_diag[b] + 2.0 * var[a] * var[b] * weight
    q = expit(gap) * expit(-gap)
    values = q / (1.0 + q * pair_var) * quad
    first, second = np.minimum(a, b), np.maximum(a, b)
    return first, second, values
