"""Live refits: a win matrix plus the last fit, refitted warm and only when votes have arrived."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from ._bradley_terry import DEFAULT_PRIOR, BradleyTerryResult, fit_bradley_terry
from ._counts import WinLossCounter

__all__ = ["LiveBradleyTerry"]


class LiveBradleyTerry:
    """Bradley–Terry results for a vote stream, refitted incrementally.

    Votes are added to a dense win matrix as they arrive; :meth:`result` refits only when votes came in
    since the last fit, starting Newton's method from the previous scores, so a refit after a few votes
    costs one or two Newton steps plus the intervals.

    Parameters
    ----------
    n_items : int
        Number of datapoints.
    prior : float
        Prior precision, as in :func:`fit_bradley_terry`.
    **fit_options
        Further keyword arguments for :func:`fit_bradley_terry` (``interval``, ``level``, ...).

    Examples
    --------
    >>> live = LiveBradleyTerry(3)
    >>> live.add_votes([[0, 1], [0, 2]])
    >>> live.result().ranks[0]
    1
    """

    def __init__(self, n_items: int, *, prior: float = DEFAULT_PRIOR, **fit_options: Any) -> None:
        self.counter = WinLossCounter(n_items)
        self.prior = prior
        self.fit_options = fit_options
        self._result: BradleyTerryResult | None = None
        self._fitted_votes = -1.0

    @property
    def wins(self) -> np.ndarray:
        """The current win matrix."""
        return self.counter.matrix

    @property
    def n_votes(self) -> float:
        return self.counter.n_votes

    def add_vote(self, winner: int, loser: int, tie: bool = False) -> None:
        """Count one vote."""
        self.counter.add(winner, loser, tie)

    def add_votes(self, comparisons: ArrayLike) -> None:
        """Count a batch of ``(winner, loser[, tie])`` votes."""
        self.counter.add_many(comparisons)

    def result(self) -> BradleyTerryResult:
        """The fit for all votes so far (cached until the next vote)."""
        if self._result is None or self._fitted_votes != self.counter.n_votes:
            init = None if self._result is None else self._result.scores
            self._result = fit_bradley_terry(self.counter.matrix, prior=self.prior, init=init, **self.fit_options)
            self._fitted_votes = self.counter.n_votes
        return self._result
