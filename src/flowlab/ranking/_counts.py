"""Win-loss counts from votes: dense matrices, sparse unique-pair counts and a streaming counter."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "PairCounts",
    "WinLossCounter",
    "comparisons_from_keys",
    "pair_counts",
    "win_matrix",
]


def _as_comparisons(comparisons: ArrayLike, n_items: int | None) -> tuple[np.ndarray, np.ndarray, int]:
    """Validate an (m, 2) or (m, 3) comparison array; return (winner/loser indices, tie flags, n_items)."""
    arr = np.asarray(comparisons)
    if arr.size == 0:
        arr = arr.reshape(0, 2)
    if arr.ndim != 2 or arr.shape[1] not in (2, 3):
        raise ValueError(
            f"comparisons must be an (m, 2) array of (winner, loser) indices or an (m, 3) array whose third "
            f"column flags ties; got shape {arr.shape}."
        )
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise ValueError(f"comparisons must hold integer datapoint indices; got dtype {arr.dtype}.")
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)):
            raise ValueError("comparisons contain NaN or infinite values; drop those votes before fitting.")
        if np.any(arr != np.round(arr)):
            raise ValueError("comparisons must hold whole-number datapoint indices; found fractions.")
    idx = arr[:, :2].astype(np.int64, copy=False)
    if arr.shape[1] == 3:
        tie_col = arr[:, 2]
        if np.any((tie_col != 0) & (tie_col != 1)):
            raise ValueError("the third column of comparisons flags ties and must be 0 or 1.")
        ties = tie_col.astype(bool)
    else:
        ties = np.zeros(len(arr), dtype=bool)
    if len(idx) and idx.min() < 0:
        raise ValueError("comparisons contain negative datapoint indices; indices run from 0 to n_items - 1.")
    inferred = int(idx.max()) + 1 if len(idx) else 0
    if n_items is None:
        n_items = inferred
    else:
        n_items = _check_n_items(n_items)
        if inferred > n_items:
            raise ValueError(
                f"comparisons refer to datapoint {inferred - 1} but n_items is {n_items}; "
                "pass a larger n_items or fix the indices."
            )
    if len(idx) and np.any(idx[:, 0] == idx[:, 1]):
        raise ValueError("a comparison has the same datapoint as winner and loser; drop self-comparisons.")
    return idx, ties, n_items


def _check_n_items(n_items: int) -> int:
    if isinstance(n_items, bool) or int(n_items) != n_items or n_items < 0:
        raise ValueError(f"n_items must be a non-negative integer; got {n_items!r}.")
    return int(n_items)


def _as_win_matrix(wins: ArrayLike, n_items: int | None = None) -> np.ndarray:
    """Validate an n×n win-count matrix and return it as float64 (not copied when already float64)."""
    mat = np.asarray(wins, dtype=np.float64)
    if mat.ndim != 2 or mat.shape[0] != mat.shape[1]:
        raise ValueError(f"a win matrix must be square (n × n); got shape {mat.shape}.")
    if n_items is not None and _check_n_items(n_items) != mat.shape[0]:
        raise ValueError(f"the win matrix is {mat.shape[0]} × {mat.shape[0]} but n_items is {n_items}.")
    if not np.all(np.isfinite(mat)):
        raise ValueError("the win matrix contains NaN or infinite counts; counts must be finite.")
    if np.any(mat < 0):
        raise ValueError("the win matrix contains negative counts; counts must be ≥ 0.")
    if np.any(np.diagonal(mat) != 0):
        raise ValueError("the win matrix has a non-zero diagonal; a datapoint cannot beat itself.")
    return mat


def _is_comparison_array(arr: np.ndarray, given: object = None) -> bool:
    """Integer arrays with 2 or 3 columns are comparisons; any other square array is a win matrix.

    A labelled table whose row labels equal its column labels (a pandas DataFrame such as the SDK's
    ``get_win_loss_matrix()``) is always a win matrix, even a 2 × 2 or 3 × 3 one with integer counts.
    """
    if arr.ndim != 2:
        return True  # let the comparison validator explain the shape problem
    index, columns = getattr(given, "index", None), getattr(given, "columns", None)
    if index is not None and columns is not None and arr.shape[0] == arr.shape[1] and list(index) == list(columns):
        return False
    if arr.shape[0] == arr.shape[1] and not (np.issubdtype(arr.dtype, np.integer) and arr.shape[1] in (2, 3)):
        return False
    return arr.shape[1] in (2, 3) or arr.shape[0] != arr.shape[1]


def win_matrix(comparisons: ArrayLike, n_items: int | None = None) -> np.ndarray:
    """Dense win-count matrix from a list of comparisons.

    Parameters
    ----------
    comparisons : array_like, shape (m, 2) or (m, 3)
        Rows of ``(winner, loser)`` datapoint indices; an optional third column flags a tie (1), which
        counts half a win to each side.
    n_items : int, optional
        Number of datapoints; defaults to the largest index plus one.

    Returns
    -------
    wins : ndarray, shape (n_items, n_items)
        ``wins[i, j]`` is the number of votes for ``i`` over ``j``; it sums to ``m``.
    """
    idx, ties, n = _as_comparisons(comparisons, n_items)
    weight = np.where(ties, 0.5, 1.0)
    flat = np.bincount(idx[:, 0] * n + idx[:, 1], weights=weight, minlength=n * n)
    if ties.any():
        flat += np.bincount(idx[ties, 1] * n + idx[ties, 0], weights=weight[ties], minlength=n * n)
    return flat.reshape(n, n)


@dataclass(frozen=True)
class PairCounts:
    """Sparse counts over the unique unordered pairs ``first < second`` that have at least one vote.

    Attributes
    ----------
    first, second : ndarray of int64, shape (k,)
        The pair's datapoints, ``first < second``.
    first_wins, second_wins : ndarray of float64, shape (k,)
        Votes for ``first`` over ``second`` and the reverse (ties count half to each side).
    ties : ndarray of float64, shape (k,)
        Votes that were ties (already included, halved, in the two win counts).
    n_items : int
        Number of datapoints.
    """

    first: np.ndarray
    second: np.ndarray
    first_wins: np.ndarray
    second_wins: np.ndarray
    ties: np.ndarray
    n_items: int

    @property
    def totals(self) -> np.ndarray:
        """Votes on each pair."""
        return self.first_wins + self.second_wins

    def to_matrix(self) -> np.ndarray:
        """The dense ``n × n`` win matrix."""
        mat = np.zeros((self.n_items, self.n_items))
        mat[self.first, self.second] = self.first_wins
        mat[self.second, self.first] = self.second_wins
        return mat


def pair_counts(comparisons: ArrayLike, n_items: int | None = None) -> PairCounts:
    """Sparse unique-pair counts from comparisons or from a dense win matrix.

    Parameters
    ----------
    comparisons : array_like
        Either an (m, 2) / (m, 3) comparison array (see :func:`win_matrix`) or an n×n win matrix.
    n_items : int, optional
        Number of datapoints.

    Returns
    -------
    PairCounts
        One entry per unordered pair with at least one vote. Ties are only known separately when
        comparisons carry a tie column; from a matrix they are already folded into the win counts.
    """
    arr = np.asarray(comparisons)
    if _is_comparison_array(arr, comparisons):
        idx, tie_flags, n = _as_comparisons(arr, n_items)
        lo = np.minimum(idx[:, 0], idx[:, 1])
        hi = np.maximum(idx[:, 0], idx[:, 1])
        key = lo * max(n, 1) + hi
        first_won = (idx[:, 0] == lo) & ~tie_flags
        uniq, inverse = np.unique(key, return_inverse=True)
        k = len(uniq)
        fw = np.bincount(inverse, weights=first_won.astype(float), minlength=k)
        sw = np.bincount(inverse, weights=(~first_won & ~tie_flags).astype(float), minlength=k)
        tc = np.bincount(inverse, weights=tie_flags.astype(float), minlength=k)
        return PairCounts(uniq // max(n, 1), uniq % max(n, 1), fw + tc / 2, sw + tc / 2, tc, n)
    mat = _as_win_matrix(arr, n_items)
    return _pairs_from_matrix(mat)


def _pairs_from_matrix(mat: np.ndarray) -> PairCounts:
    n = mat.shape[0]
    total = mat + mat.T
    first, second = np.nonzero(np.triu(total, 1))
    return PairCounts(first, second, mat[first, second], mat[second, first], np.zeros(len(first)), n)


def comparisons_from_keys(votes: Iterable[Sequence[Hashable]], keys: Sequence[Hashable]) -> np.ndarray:
    """Turn votes given as datapoint keys into an index comparison array.

    Parameters
    ----------
    votes : iterable of (winner_key, loser_key) or (winner_key, loser_key, tie)
        One vote per entry; ``tie`` is truthy when the vote was a tie.
    keys : sequence of hashable
        The datapoint keys in index order.

    Returns
    -------
    ndarray of int64, shape (m, 3)
        ``(winner, loser, tie)`` rows ready for :func:`win_matrix` or :func:`fit_bradley_terry`.
    """
    position = {key: i for i, key in enumerate(keys)}
    if len(position) != len(keys):
        raise ValueError("keys contain duplicates; every datapoint needs a unique key.")
    rows = []
    for vote in votes:
        if len(vote) not in (2, 3):
            raise ValueError(f"each vote is (winner_key, loser_key[, tie]); got {vote!r}.")
        try:
            winner, loser = position[vote[0]], position[vote[1]]
        except KeyError as exc:
            raise ValueError(f"vote {vote!r} names key {exc.args[0]!r}, which is not in keys.") from None
        rows.append((winner, loser, int(bool(vote[2])) if len(vote) == 3 else 0))
    return np.asarray(rows, dtype=np.int64).reshape(-1, 3)


class WinLossCounter:
    """A dense win matrix that is cheap to update as votes stream in.

    Parameters
    ----------
    n_items : int
        Number of datapoints.

    Examples
    --------
    >>> counter = WinLossCounter(3)
    >>> counter.add(0, 1)
    >>> counter.add(2, 1, tie=True)
    >>> counter.n_votes
    2.0
    """

    def __init__(self, n_items: int) -> None:
        self.n_items = _check_n_items(n_items)
        self.matrix = np.zeros((self.n_items, self.n_items))
        self.n_votes = 0.0

    def add(self, winner: int, loser: int, tie: bool = False) -> None:
        """Count one vote; a tie adds half a win to each side."""
        n = self.n_items
        if not (0 <= winner < n and 0 <= loser < n) or winner == loser:
            raise ValueError(
                f"a vote needs two different datapoints in 0..{n - 1}; got winner={winner}, loser={loser}."
            )
        if tie:
            self.matrix[winner, loser] += 0.5
            self.matrix[loser, winner] += 0.5
        else:
            self.matrix[winner, loser] += 1.0
        self.n_votes += 1.0

    def add_many(self, comparisons: ArrayLike) -> None:
        """Count a batch of (winner, loser[, tie]) votes in one vectorised update."""
        arr = np.asarray(comparisons)
        self.matrix += win_matrix(arr, self.n_items)
        self.n_votes += float(arr.shape[0]) if arr.size else 0.0

    @property
    def wins(self) -> np.ndarray:
        """Wins per datapoint (ties count half)."""
        return self.matrix.sum(axis=1)

    @property
    def votes(self) -> np.ndarray:
        """Votes each datapoint took part in."""
        return self.matrix.sum(axis=1) + self.matrix.sum(axis=0)
