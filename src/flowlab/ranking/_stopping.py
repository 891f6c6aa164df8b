"""When a ranking's question is answered: the top datapoint, the top k or the whole order, settled."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import ndtri

__all__ = ["STOP_RULES", "Settlement", "settlement"]

StopRule = Literal["top", "top_k", "order"]
STOP_RULES: tuple[str, ...] = ("top", "top_k", "order")


@dataclass(frozen=True, eq=False)
class Settlement:
    """Whether a ranking question is settled, and by how much.

    Attributes
    ----------
    settled : bool
        Every comparison the rule needs is significant at the family-wise ``confidence``.
    rule : str
        ``"top"``, ``"top_k"`` or ``"order"``.
    confidence : float
        The family-wise confidence asked for.
    leaders : ndarray of int64
        The answer in index order of rank: the top datapoint, the top ``k`` or every datapoint.
    tests : int
        Comparisons the rule needs (the Bonferroni divisor).
    margin : float
        The smallest z-statistic among those comparisons minus the critical value: positive when settled,
        and how far from it otherwise.
    """

    settled: bool
    rule: str
    confidence: float
    leaders: np.ndarray
    tests: int
    margin: float


def settlement(
    scores: ArrayLike,
    covariance: ArrayLike,
    rule: StopRule = "top",
    *,
    k: int = 1,
    confidence: float = 0.95,
) -> Settlement:
    """Is the ranking's question answered at ``confidence``?

    A rule is a set of one-sided tests on score differences, each ``(θ_a − θ_b) / sd(θ_a − θ_b)`` against
    the normal quantile of ``1 − α/m`` (Bonferroni over the rule's ``m`` tests, so the chance that any
    of its claims is wrong is at most ``α = 1 − confidence`` for one look at the data):

    - ``"top"``: the best datapoint is above each of the other ``n − 1``;
    - ``"top_k"``: each of the best ``k`` is above each of the other ``n − k`` (which of the ``k`` is first
      is left open);
    - ``"order"``: each datapoint is above the next one down (``n − 1`` adjacent pairs).

    Looking again after every few votes gives a wrong answer more often than ``α``; the server looks at
    most fifty times per item, and ``benchmarks/bench_stopping.py`` measures the rate of wrong answers
    that results against running to the maximum.

    Parameters
    ----------
    scores : array_like, shape (n,)
        Logit scores.
    covariance : array_like, shape (n, n) or (n,)
        Their covariance, or only their variances (differences then count as independent).
    rule : {"top", "top_k", "order"}
        Which question.
    k : int
        Size of the top set for ``"top_k"``.
    confidence : float
        Family-wise confidence, in (0.5, 1).

    Returns
    -------
    Settlement
    """
    theta = np.asarray(scores, dtype=float)
    cov = np.asarray(covariance, dtype=float)
    n = len(theta)
    if rule not in STOP_RULES:
        raise ValueError(f"rule must be one of {', '.join(STOP_RULES)}; got {rule!r}.")
    if not 0.5 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0.5 and 1 (e.g. 0.95); got {confidence!r}.")
    if cov.shape not in ((n, n), (n,)):
        raise ValueError(f"covariance must be {n} × {n} or hold {n} variances; got shape {cov.shape}.")
    if rule == "top_k" and not 1 <= k < n:
        raise ValueError(f"top_k needs 1 ≤ k < {n} (the number of datapoints); got k={k}.")
    order = np.argsort(-theta, kind="stable")
    leaders = order[:1] if rule == "top" else order[:k] if rule == "top_k" else order
    if n < 2:
        return Settlement(True, rule, confidence, leaders.astype(np.int64), 0, math.inf)
    if rule == "order":
        above, below = order[:-1], order[1:]
    else:
        size = 1 if rule == "top" else k
        top, rest = order[:size], order[size:]
        above, below = np.repeat(top, len(rest)), np.tile(rest, len(top))
    var = np.diagonal(cov) if cov.ndim == 2 else cov
    diff_var = var[above] + var[below]
    if cov.ndim == 2:
        diff_var = diff_var - 2.0 * cov[above, below]
    z = (theta[above] - theta[below]) / np.sqrt(np.maximum(diff_var, 1e-300))
    tests = len(above)
    critical = float(ndtri(1.0 - (1.0 - confidence) / tests))
    margin = float(z.min()) - critical
    return Settlement(margin > 0.0, rule, confidence, leaders.astype(np.int64), tests, margin)
