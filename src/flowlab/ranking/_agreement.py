"""Agreement statistics: inter-annotator agreement on repeated pairs and transitivity violations."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from ._counts import _as_comparisons, _as_win_matrix

__all__ = ["PairAgreement", "Transitivity", "repeated_pair_agreement", "transitivity_violations"]


@dataclass(frozen=True)
class PairAgreement:
    """Agreement between votes on the same pair.

    Attributes
    ----------
    observed : float
        Probability that two votes on the same pair, drawn without replacement, agree (NaN if no pair
        has two votes).
    expected : float
        The same probability if outcomes were drawn from their overall frequencies.
    kappa : float
        Fleiss' κ, ``(observed − expected) / (1 − expected)``: 1 is perfect agreement, 0 is chance
        (NaN when undefined).
    n_pairs : int
        Pairs with at least two votes.
    n_votes : int
        Votes on those pairs.
    """

    observed: float
    expected: float
    kappa: float
    n_pairs: int
    n_votes: int


def repeated_pair_agreement(comparisons: ArrayLike, n_items: int | None = None) -> PairAgreement:
    """Inter-annotator agreement on pairs that were voted on more than once (Fleiss' κ).

    Each vote on the unordered pair ``{i, j}`` (``i < j``) falls in one of three categories: ``i`` won,
    ``j`` won, tie. Fleiss' κ compares how often two votes on the same pair agree with how often they
    would by chance.

    Parameters
    ----------
    comparisons : array_like, shape (m, 2) or (m, 3)
        ``(winner, loser[, tie])`` rows, one per vote (annotator identity is not needed).
    n_items : int, optional
        Number of datapoints.

    Returns
    -------
    PairAgreement

    References
    ----------
    J. L. Fleiss, "Measuring nominal scale agreement among many raters", Psychological Bulletin 76, 1971.
    """
    idx, ties, n = _as_comparisons(comparisons, n_items)
    lo = np.minimum(idx[:, 0], idx[:, 1])
    hi = np.maximum(idx[:, 0], idx[:, 1])
    category = np.where(ties, 2, np.where(idx[:, 0] == lo, 0, 1))
    key = lo * max(n, 1) + hi
    uniq, inverse = np.unique(key, return_inverse=True)
    table = np.zeros((len(uniq), 3))
    np.add.at(table, (inverse, category), 1.0)
    per_pair = table.sum(axis=1)
    repeated = per_pair >= 2
    table, per_pair = table[repeated], per_pair[repeated]
    if len(table) == 0:
        return PairAgreement(float("nan"), float("nan"), float("nan"), 0, 0)
    rater_pairs = per_pair * (per_pair - 1)
    observed = float(((table * (table - 1)).sum(axis=1)).sum() / rater_pairs.sum())
    share = table.sum(axis=0) / per_pair.sum()
    expected = float((share**2).sum())
    kappa = float((observed - expected) / (1.0 - expected)) if expected < 1.0 else float("nan")
    return PairAgreement(observed, expected, kappa, len(table), int(per_pair.sum()))


@dataclass(frozen=True)
class Transitivity:
    """Cyclic triads in the majority preference graph.

    Attributes
    ----------
    n_cycles : int
        Triads ``a > b > c > a`` where each ``>`` is a strict majority of the votes on that pair.
    n_triads : int
        Triads whose three pairs all have a strict majority.
    share : float
        ``n_cycles / n_triads`` (0 when there are no such triads).
    """

    n_cycles: int
    n_triads: int
    share: float


def transitivity_violations(wins: ArrayLike) -> Transitivity:
    """Count intransitive (cyclic) triads among the pairs with a strict majority.

    A consistent set of preferences has none; many cycles point to noisy annotators, an ill-posed
    instruction, or preferences that no single score can represent (Kendall & Babington Smith 1940
    counted the same circular triads for one judge).

    Parameters
    ----------
    wins : array_like, shape (n, n)
        ``wins[i, j]``: votes for ``i`` over ``j``.

    Returns
    -------
    Transitivity
    """
    mat = _as_win_matrix(wins)
    beats = (mat > mat.T).astype(float)
    decided = beats + beats.T
    n_cycles = round(np.trace(beats @ beats @ beats) / 3.0)
    n_triads = round(np.trace(decided @ decided @ decided) / 6.0)
    return Transitivity(n_cycles, n_triads, n_cycles / n_triads if n_triads else 0.0)
