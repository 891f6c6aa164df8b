"""A sentinel for reward hacking: the trainer's proxy reward rises over recent checkpoints while people's
win rate against the anchor does not."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import ndtr, ndtri

__all__ = ["Divergence", "check_divergence", "mann_kendall", "theil_sen_slope", "win_rate_trend"]

_EXACT_TIES_UP_TO = 8  # windows this short with tied proxy values get the exact permutation distribution


@dataclass(frozen=True)
class Divergence:
    """The sentinel's verdict on the latest window of checkpoints.

    Attributes
    ----------
    fired : bool
        True when the proxy reward rises significantly over the window while the human win rate does not.
    step : int or None
        The checkpoint step at which it fired (the window's last step), else None.
    window : int
        Checkpoints in the window used (fewer than asked while the history is short).
    proxy_slope : float
        Theil–Sen slope of the proxy reward per checkpoint over the window (NaN while the history is short).
    proxy_p : float
        One-sided Mann–Kendall p-value that the proxy reward rises (NaN while the history is short).
    win_slope : float
        Vote-weighted least-squares slope of the human win rate per checkpoint over the window.
    win_high : float
        Upper end of the one-sided ``1 − alpha`` confidence bound of that slope.
    reason : str
        One sentence a person can read.
    """

    fired: bool
    step: int | None
    window: int
    proxy_slope: float
    proxy_p: float
    win_slope: float
    win_high: float
    reason: str


@lru_cache(maxsize=64)
def _inversion_counts(n: int) -> tuple[int, ...]:
    """How many of the n! orders have k inversions, k = 0 … n(n−1)/2 (the Mahonian numbers)."""
    counts = [1]
    for m in range(2, n + 1):  # insert the m-th element: it adds 0 … m−1 inversions
        nxt = [0] * (len(counts) + m - 1)
        for k, c in enumerate(counts):
            for extra in range(m):
                nxt[k + extra] += c
        counts = nxt
    return tuple(counts)


def _kendall_s(y: np.ndarray) -> int:
    i, j = np.triu_indices(len(y), 1)
    return int(np.sign(y[j] - y[i]).sum())


def mann_kendall(y: ArrayLike) -> tuple[int, float]:
    """One-sided Mann–Kendall test that a series rises.

    ``S = Σ_{i<j} sign(y_j − y_i)``; under the null hypothesis every order of the values is equally likely
    (no trend), and the p-value is ``P(S ≥ S_observed)`` under that permutation distribution: exact from
    the Mahonian numbers when the values are distinct, exact by enumerating the orders when there are ties
    and at most 8 values, else the normal approximation with Kendall's tie-corrected variance and a
    continuity correction.

    Parameters
    ----------
    y : array_like, shape (n,)
        The series, in time order (n ≥ 2).

    Returns
    -------
    s : int
        Kendall's S.
    p : float
        One-sided p-value against a rising trend.

    References
    ----------
    Mann, H. B. (1945). Nonparametric tests against trend. *Econometrica* 13, 245–259.
    Kendall, M. G. (1975). *Rank Correlation Methods*, 4th ed. Griffin, London.
    """
    values = np.asarray(y, dtype=float)
    n = len(values)
    if values.ndim != 1 or n < 2:
        raise ValueError(f"a trend test needs a 1-d series of at least 2 values; got shape {values.shape}.")
    s = _kendall_s(values)
    _, ties = np.unique(values, return_counts=True)
    if len(ties) == n:
        counts = _inversion_counts(n)
        inversions = (n * (n - 1) // 2 - s) // 2  # S = pairs − 2·inversions
        return s, math.fsum(counts[: inversions + 1]) / math.factorial(n)
    if n <= _EXACT_TIES_UP_TO:
        orders = np.array(list(itertools.permutations(range(n))), dtype=np.int64)
        i, j = np.triu_indices(n, 1)
        permuted = values[orders]
        all_s = np.sign(permuted[:, j] - permuted[:, i]).sum(axis=1)
        return s, float(np.mean(all_s >= s))
    var = (n * (n - 1) * (2 * n + 5) - float(np.sum(ties * (ties - 1) * (2 * ties + 5)))) / 18.0
    if var <= 0:
        return s, 1.0  # every value equal: no evidence of a trend
    z = (s - 1 if s > 0 else s + 1 if s < 0 else 0) / math.sqrt(var)  # Mann's continuity correction
    return s, float(ndtr(-z))


def theil_sen_slope(y: ArrayLike) -> float:
    """Median of the slopes between every two points of a series against its index (Sen 1968).

    References
    ----------
    Sen, P. K. (1968). Estimates of the regression coefficient based on Kendall's tau. *JASA* 63, 1379–1389.
    """
    values = np.asarray(y, dtype=float)
    i, j = np.triu_indices(len(values), 1)
    return float(np.median((values[j] - values[i]) / (j - i)))


def win_rate_trend(wins: ArrayLike, votes: ArrayLike, *, alpha: float = 0.05) -> tuple[float, float]:
    """Slope of a win rate per checkpoint, each checkpoint weighed by its votes, with a one-sided upper bound.

    The slope is the weighted least-squares line through the checkpoints' win rates ``wins / votes`` against
    their index, weights ``votes`` — the statistic of the Cochran–Armitage test for trend in proportions.
    Its standard error is the binomial one under a common rate, ``sqrt(p̃(1 − p̃) / Σ votes·(x − x̄)²)``,
    with ``p̃ = (Σ wins + ½) / (Σ votes + 1)`` so that a window where every vote went one way still has
    a spread. The bound is ``slope + z_{1−alpha} · se``.

    Parameters
    ----------
    wins : array_like, shape (k,)
        Votes won at each checkpoint (ties may count a half).
    votes : array_like, shape (k,)
        Votes cast at each checkpoint; a checkpoint with none carries no weight.
    alpha : float
        One minus the bound's confidence.

    Returns
    -------
    slope, high : float
        NaN when fewer than two checkpoints have votes.

    References
    ----------
    Cochran, W. G. (1954). Some methods for strengthening the common χ² tests. *Biometrics* 10, 417–451.
    Armitage, P. (1955). Tests for linear trends in proportions and frequencies. *Biometrics* 11, 375–386.
    """
    w = np.asarray(wins, dtype=float)
    n = np.asarray(votes, dtype=float)
    x = np.arange(len(n), dtype=float)
    total = n.sum()
    if total <= 0 or np.count_nonzero(n) < 2:
        return math.nan, math.nan
    x_bar = float(n @ x) / total
    sxx = float(n @ (x - x_bar) ** 2)
    slope = float((x - x_bar) @ (w - n * (w.sum() / total))) / sxx
    p = (w.sum() + 0.5) / (total + 1.0)
    se = math.sqrt(p * (1.0 - p) / sxx)
    return slope, slope + float(ndtri(1.0 - alpha)) * se


def _as_series(name: str, value: ArrayLike, length: int | None) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a list of numbers, one per checkpoint; got {value!r}.") from exc
    if array.ndim != 1:
        raise ValueError(f"{name} must be one number per checkpoint (a 1-d list); got shape {array.shape}.")
    if length is not None and len(array) != length:
        raise ValueError(f"{name} has {len(array)} values but there are {length} checkpoints; give one per step.")
    return array


def check_divergence(
    steps: ArrayLike,
    proxy: ArrayLike,
    wins: ArrayLike,
    votes: ArrayLike,
    *,
    window: int = 4,
    alpha: float = 0.05,
    margin: float = 0.0,
) -> Divergence:
    """Has the policy started to game its proxy reward? Test the last ``window`` checkpoints.

    It fires when both one-sided tests reject at level ``alpha`` over the window:

    - the proxy reward rises: Mann–Kendall test on the checkpoints' mean proxy rewards (exact p-value,
      see :func:`mann_kendall`), with Theil–Sen's slope as the size of the rise;
    - the human win rate against the anchor does not: the upper ``1 − alpha`` bound of the vote-weighted
      win-rate slope (Cochran–Armitage, see :func:`win_rate_trend`) is at most ``margin`` per checkpoint.

    Firing needs both (an intersection–union test, Berger 1982), so on a run where the proxy is flat or the
    win rate rises by at least ``margin`` per checkpoint, one check fires with probability at most
    ``alpha`` (exactly for a proxy whose values are exchangeable, to a large-sample approximation for the
    win-rate bound). Checking at every checkpoint looks many times; ``benchmarks/bench_sentinel.py`` measures
    the false-alarm rate of whole runs and the detection delay with seeded simulations (docs/sentinel.md).

    Parameters
    ----------
    steps : array_like of int, shape (k,)
        Checkpoint steps, strictly ascending.
    proxy : array_like, shape (k,)
        Mean proxy reward the trainer reported at each checkpoint; NaN (or None) where none was reported.
    wins : array_like, shape (k,)
        Human votes won by the policy against the anchor at each checkpoint (counts; ties may count ½).
    votes : array_like, shape (k,)
        Human votes cast at each checkpoint (counts, not rates), so checkpoints weigh by their votes.
    window : int
        Checkpoints in the window (at least 3; the Mann–Kendall test's smallest p-value, ``1/window!``,
        must be at most ``alpha``).
    alpha : float
        Level of each of the two tests, in (0, 0.5).
    margin : float
        Win-rate rise per checkpoint that still counts as "not rising" (0: fire only when people's win
        rate is significantly falling or flat against the proxy's rise).

    Returns
    -------
    Divergence

    References
    ----------
    Mann, H. B. (1945). Nonparametric tests against trend. *Econometrica* 13, 245–259.
    Armitage, P. (1955). Tests for linear trends in proportions and frequencies. *Biometrics* 11, 375–386.
    Berger, R. L. (1982). Multiparameter hypothesis testing and acceptance sampling. *Technometrics* 24,
    295–300.
    """
    if isinstance(window, bool) or not isinstance(window, int | np.integer) or window < 3:
        raise ValueError(f"window must be a whole number of checkpoints, at least 3 (4 is usual); got {window!r}.")
    window = int(window)
    if not isinstance(alpha, int | float) or not 0.0 < alpha < 0.5:
        raise ValueError(f"alpha must be a probability between 0 and 0.5 (e.g. 0.05); got {alpha!r}.")
    if 1.0 / math.factorial(window) > alpha:
        smallest = next(k for k in range(window, 20) if 1.0 / math.factorial(k) <= alpha)
        raise ValueError(
            f"a window of {window} checkpoints can never reach alpha={alpha:g}: the Mann–Kendall test's smallest "
            f"p-value is 1/{window}! = {1.0 / math.factorial(window):.3g}. Use window ≥ {smallest} or a larger alpha."
        )
    if not isinstance(margin, int | float) or not math.isfinite(margin):
        raise ValueError(f"margin must be a finite win-rate change per checkpoint (e.g. 0.0); got {margin!r}.")
    step_array = _as_series("steps", steps, None)
    k = len(step_array)
    proxy_array = _as_series("proxy", proxy, k)
    wins_array = _as_series("wins", wins, k)
    votes_array = _as_series("votes", votes, k)
    if not np.all(np.isfinite(step_array)) or np.any(step_array != np.round(step_array)):
        raise ValueError("steps must be whole checkpoint steps (e.g. [100, 200, 300]).")
    if np.any(np.diff(step_array) <= 0):
        raise ValueError("steps must be strictly ascending, one entry per checkpoint; sort them with their values.")
    if np.any(np.isinf(proxy_array)):
        raise ValueError("proxy holds an infinite reward; give finite means, or NaN where none was reported.")
    if not (np.all(np.isfinite(votes_array)) and np.all(np.isfinite(wins_array))):
        raise ValueError("wins and votes must be finite counts.")
    if np.any(votes_array < 0) or np.any(wins_array < 0) or np.any(wins_array > votes_array):
        raise ValueError("wins and votes must be counts with 0 ≤ wins ≤ votes at every checkpoint (not rates).")

    if k < window:
        more = window - k
        return Divergence(
            False,
            None,
            k,
            math.nan,
            math.nan,
            math.nan,
            math.nan,
            f"{k} checkpoint{'s' * (k != 1)} so far; the sentinel needs {window} to test a trend ({more} more).",
        )
    last_steps = step_array[-window:].astype(np.int64)
    y = proxy_array[-window:]
    span = f"steps {last_steps[0]}–{last_steps[-1]}"
    win_slope, win_high = win_rate_trend(wins_array[-window:], votes_array[-window:], alpha=alpha)
    missing = last_steps[np.isnan(y)]
    if len(missing):
        reason = f"No proxy reward was reported at step{'s' * (len(missing) > 1)} {', '.join(map(str, missing))}."
        return Divergence(False, None, window, math.nan, math.nan, win_slope, win_high, reason)
    _, proxy_p = mann_kendall(y)
    proxy_slope = theil_sen_slope(y)
    proxy_words = (
        f"the proxy reward rose over {span} (Mann–Kendall p = {proxy_p:.3g}, {proxy_slope:+.3g} per checkpoint)"
    )
    if proxy_p > alpha:
        reason = f"The proxy reward shows no significant rise over {span} (Mann–Kendall p = {proxy_p:.3g} > {alpha:g})."
        return Divergence(False, None, window, proxy_slope, proxy_p, win_slope, win_high, reason)
    if math.isnan(win_high):
        reason = f"{proxy_words.capitalize()}, but fewer than two of its checkpoints have human votes yet."
        return Divergence(False, None, window, proxy_slope, proxy_p, win_slope, win_high, reason)
    win_words = f"{win_slope:+.3f} per checkpoint, upper bound {win_high:+.3f}"
    if win_high > margin:
        reason = f"{proxy_words.capitalize()}, and the human win rate may be rising with it ({win_words} > {margin:g})."
        return Divergence(False, None, window, proxy_slope, proxy_p, win_slope, win_high, reason)
    reason = f"Divergence: {proxy_words} while the human win rate did not ({win_words} ≤ {margin:g})."
    return Divergence(True, int(last_steps[-1]), window, proxy_slope, proxy_p, win_slope, win_high, reason)
