"""A seeded Bradley–Terry vote simulator, with ties and spamming annotators, for tests and benchmarks."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import expit

__all__ = ["simulate_comparisons", "simulate_crowd_votes", "simulate_scores"]


def _generator(rng: np.random.Generator | int | None) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def simulate_scores(n_items: int, *, spread: float = 1.0, rng: np.random.Generator | int | None = None) -> np.ndarray:
    """True logit scores ``θ ~ N(0, spread²)``, centred to mean zero."""
    theta = _generator(rng).normal(0.0, spread, n_items)
    return theta - theta.mean()


def _outcomes(
    scores: np.ndarray, a: np.ndarray, b: np.ndarray, tie_strength: float | None, gen: np.random.Generator
) -> np.ndarray:
    d = scores[a] - scores[b]
    if tie_strength is None:
        a_wins = gen.random(len(a)) < expit(d)
        return np.stack([np.where(a_wins, a, b), np.where(a_wins, b, a)], axis=1).astype(np.int64)
    # Davidson (1970): P(a) ∝ e^{d/2}, P(b) ∝ e^{−d/2}, P(tie) ∝ ν.
    ea, eb = np.exp(d / 2.0), np.exp(-d / 2.0)
    den = ea + eb + tie_strength
    u = gen.random(len(a)) * den
    a_wins = u < ea
    tie = (u >= ea) & (u < ea + tie_strength)
    winner = np.where(a_wins | tie, a, b)
    loser = np.where(a_wins | tie, b, a)
    return np.stack([winner, loser, tie.astype(np.int64)], axis=1).astype(np.int64)


def simulate_comparisons(
    scores: ArrayLike,
    n_comparisons: int,
    *,
    pairs: ArrayLike | None = None,
    tie_strength: float | None = None,
    rng: np.random.Generator | int | None = None,
) -> np.ndarray:
    """Votes drawn from a Bradley–Terry (or Davidson) model.

    Parameters
    ----------
    scores : array_like, shape (n,)
        True logit scores.
    n_comparisons : int
        Votes to draw (ignored when ``pairs`` is given).
    pairs : array_like, shape (m, 2), optional
        The pairs to vote on; by default pairs are uniform over distinct datapoints.
    tie_strength : float, optional
        Davidson's ν; when given, the output has a third tie column.
    rng : numpy.random.Generator or int, optional
        Randomness.

    Returns
    -------
    ndarray of int64, shape (m, 2) or (m, 3)
        ``(winner, loser[, tie])`` rows.
    """
    theta = np.asarray(scores, dtype=float)
    gen = _generator(rng)
    n = len(theta)
    if pairs is None:
        if n < 2:
            raise ValueError("simulating votes needs at least 2 datapoints.")
        a = gen.integers(0, n, n_comparisons)
        b = (a + gen.integers(1, n, n_comparisons)) % n
    else:
        p = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
        a, b = p[:, 0], p[:, 1]
    return _outcomes(theta, a, b, tie_strength, gen)


def simulate_crowd_votes(
    scores: ArrayLike,
    n_comparisons: int,
    *,
    n_annotators: int = 20,
    spammer_share: float = 0.2,
    rng: np.random.Generator | int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Votes from a crowd where a share of annotators click at random.

    Parameters
    ----------
    scores : array_like, shape (n,)
        True logit scores.
    n_comparisons : int
        Votes to draw, spread evenly at random over annotators.
    n_annotators : int
        Crowd size.
    spammer_share : float
        Share of annotators (rounded) who pick a side at random.
    rng : numpy.random.Generator or int, optional
        Randomness.

    Returns
    -------
    votes : ndarray of int64, shape (m, 3)
        ``(annotator, winner, loser)`` rows.
    is_spammer : ndarray of bool, shape (n_annotators,)
        Which annotators were spammers.
    """
    theta = np.asarray(scores, dtype=float)
    gen = _generator(rng)
    n = len(theta)
    is_spammer = np.zeros(n_annotators, dtype=bool)
    is_spammer[gen.permutation(n_annotators)[: round(spammer_share * n_annotators)]] = True
    annotator = gen.integers(0, n_annotators, n_comparisons)
    a = gen.integers(0, n, n_comparisons)
    b = (a + gen.integers(1, n, n_comparisons)) % n
    p_a = np.where(is_spammer[annotator], 0.5, expit(theta[a] - theta[b]))
    a_wins = gen.random(n_comparisons) < p_a
    winner = np.where(a_wins, a, b)
    loser = np.where(a_wins, b, a)
    return np.stack([annotator, winner, loser], axis=1).astype(np.int64), is_spammer
