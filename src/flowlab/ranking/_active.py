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
    z = gap / np.sqrt(pair_var)
    weight = np.exp(-0.5 * z * z) * z / pair_var
    np.fill_diagonal(weight, 0.0)
    lap = -weight
    lap[np.diag_indices_from(lap)] = weight.sum(axis=1)
    # spread = Σ L Σ; only xᵀ spread x = spread_ii + spread_jj − 2 spread_ij is needed.
    spread = cov @ lap @ cov if full else var[:, None] * lap * var[None, :]
    diag = np.diagonal(spread)
    quad = diag[:, None] + diag[None, :] - 2.0 * spread
    q = expit(gap) * expit(-gap)
    util = q / (1.0 + q * pair_var) * np.maximum(quad, 0.0)
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
    util = _utilities(scores, cov)
    # A whisper of noise breaks exact ties (equal scores early on) at random.
    util += gen.random(util.shape) * (1e-9 * util.max() + 1e-300)

    n_explore = int(gen.binomial(n_pairs, exploration)) if exploration > 0 else 0
    n_active = n_pairs - n_explore
    cap = max(1, -(-2 * n_active // n))  # ceil(2·n_active / n): appearances per datapoint per batch
    used = np.zeros(n, dtype=np.int64)
    chosen: list[tuple[int, int]] = []
    taken: set[tuple[int, int]] = set()

    # Coverage first: the least-voted datapoints under min_votes, each with its best partner.
    votes = counts.sum(axis=1)
    starving = np.flatnonzero(votes < min_votes)
    if len(starving):
        starving = starving[np.lexsort((gen.random(len(starving)), votes[starving]))]
        # Pairing two under-covered datapoints covers both with one vote.
        needy = np.zeros(n)
        needy[starving] = 1.0 + util.max()
        for i in starving:  # few datapoints, and only until each has a vote
            if len(chosen) >= n_active:
                break
            if used[i] >= cap:
                continue
            order = np.argsort(-(util[i] + needy))
            for j in order:
                pair = (min(i, j), max(i, j))
                if j != i and used[j] < cap and pair not in taken:
                    chosen.append(pair)
                    taken.add(pair)
                    used[i] += 1
                    used[j] += 1
                    break

    if len(chosen) < n_active:
        # Candidates: each datapoint's few best partners. The very best pairs tend to share a datapoint,
        # so a global top list would fill up with pairs the per-batch cap then rejects.
        k = min(n - 1, 2 * cap + 6)
        partners = np.argpartition(util, n - k, axis=1)[:, n - k :]
        rows = np.repeat(np.arange(n), k)
        cols = partners.ravel()
        values = util[rows, cols]
        order = np.argsort(-values)
        for i, j in zip(rows[order].tolist(), cols[order].tolist(), strict=True):
            if len(chosen) >= n_active:
                break
            pair = (i, j) if i < j else (j, i)
            if i == j or used[i] >= cap or used[j] >= cap or pair in taken:
                continue
            chosen.append(pair)
            taken.add(pair)
            used[i] += 1
            used[j] += 1
    if len(chosen) < n_active:
        # The candidate lists ran dry: pair the datapoints still under the cap greedily, best first.
        masked = util.copy()
        np.fill_diagonal(masked, -np.inf)
        full_rows = used >= cap
        masked[full_rows, :] = -np.inf
        masked[:, full_rows] = -np.inf
        for a, b in taken:
            masked[a, b] = masked[b, a] = -np.inf
        while len(chosen) < n_active:
            flat = int(np.argmax(masked))
            i, j = divmod(flat, n)
            if not np.isfinite(masked[i, j]):
                break
            chosen.append((min(i, j), max(i, j)))
            masked[i, j] = masked[j, i] = -np.inf
            for item in (i, j):
                used[item] += 1
                if used[item] >= cap:
                    masked[item, :] = -np.inf
                    masked[:, item] = -np.inf
    n_missing = n_pairs - len(chosen)
    if n_missing:  # exploration, plus anything left unfilled
        extra = select_pairs_uniform(n, n_missing, rng=gen)
        chosen.extend((int(a), int(b)) for a, b in extra)
    arr = np.asarray(chosen, dtype=np.int64).reshape(-1, 2)
    return _random_orientation(arr[:, 0], arr[:, 1], gen)
