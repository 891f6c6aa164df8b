"""Per-sample rewards for RL from a flow item's human votes."""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import expit

from ._bradley_terry import DEFAULT_PRIOR, BradleyTerryResult, fit_bradley_terry
from ._counts import _as_win_matrix

__all__ = ["rewards_from_result", "rewards_from_scores", "rewards_from_wins"]

_DEFAULT_FLOOR = {"centred": 0.5, "win_rate": 0.1}


def _normalise(raw: np.ndarray, normalise: bool, floor: float) -> np.ndarray:
    centred = raw - raw.mean() if len(raw) else raw
    if not normalise or len(raw) < 2:
        return centred
    # The floor keeps a group of near-equal samples from having its noise blown up into large rewards.
    return centred / max(float(centred.std()), floor)


def _check_method(method: str, floor: float | None) -> float:
    if method not in _DEFAULT_FLOOR:
        raise ValueError(f"method must be 'centred' or 'win_rate'; got {method!r}.")
    floor = _DEFAULT_FLOOR[method] if floor is None else float(floor)
    if not floor > 0:
        raise ValueError(f"floor must be positive (it bounds the scale rewards are divided by); got {floor!r}.")
    return floor


def rewards_from_scores(
    scores: ArrayLike,
    *,
    method: Literal["centred", "win_rate"] = "centred",
    normalise: bool = True,
    floor: float | None = None,
    threshold: float | None = None,
) -> np.ndarray:
    """Per-sample rewards for one group (one flow item) from Bradley–Terry scores.

    ``"centred"`` gives the scores minus their mean; ``"win_rate"`` gives each sample's modelled
    probability of beating the rest of the group, ``mean_{j≠i} σ(θ_i − θ_j)``, minus its mean (a bounded
    reward, less sensitive to one runaway score). With ``normalise`` the rewards are divided by
    ``max(std, floor)``, the group normalisation of GRPO-style training; the floor stops a group whose
    samples are all about equally good from turning vote noise into large rewards.

    Parameters
    ----------
    scores : array_like, shape (n,)
        Logit scores of the group's samples (e.g. ``BradleyTerryResult.scores``).
    method : {"centred", "win_rate"}
        Reward shape.
    normalise : bool
        Divide by ``max(std, floor)``.
    floor : float, optional
        Smallest scale to divide by; default 0.5 (logits) for ``"centred"`` and 0.1 for ``"win_rate"``.
    threshold : float, optional
        An acceptability threshold on the scale of ``scores`` (``AbsoluteResult.threshold``): rewards are
        then measured from it instead of from the group's mean, so they carry the absolute level — a sample
        at the threshold gets zero, and a group of samples that are all unacceptable gets only negative
        rewards. The scale (``max(std, floor)``) is the same as without it.

    Returns
    -------
    ndarray, shape (n,)
        Rewards with mean zero (without ``threshold``).
    """
    theta = np.asarray(scores, dtype=float)
    if theta.ndim != 1:
        raise ValueError(f"scores must be one-dimensional (one per sample); got shape {theta.shape}.")
    if not np.all(np.isfinite(theta)):
        raise ValueError("scores contain NaN or infinite values.")
    floor = _check_method(method, floor)
    n = len(theta)
    if method == "win_rate" and n >= 2:
        p = expit(theta[:, None] - theta[None, :])
        raw = (p.sum(axis=1) - 0.5) / (n - 1)  # drop the diagonal σ(0) = 0.5
    else:
        raw = theta
    rewards = _normalise(raw, normalise, floor)
    if threshold is None or n == 0:
        return rewards
    # What a sample sitting at the threshold would get, on the same scale: the rewards' new zero.
    at = float(threshold) if method == "centred" or n < 2 else float(expit(threshold - theta).mean())
    scale = max(float((raw - raw.mean()).std()), floor) if normalise and n >= 2 else 1.0
    return rewards - (at - float(raw.mean())) / scale


def rewards_from_result(
    result: BradleyTerryResult,
    *,
    method: Literal["centred", "win_rate"] = "centred",
    normalise: bool = True,
    floor: float | None = None,
) -> np.ndarray:
    """:func:`rewards_from_scores` applied to a fit's scores."""
    return rewards_from_scores(result.scores, method=method, normalise=normalise, floor=floor)


def rewards_from_wins(
    wins: ArrayLike,
    *,
    method: Literal["centred", "win_rate"] = "centred",
    normalise: bool = True,
    floor: float | None = None,
    prior: float = DEFAULT_PRIOR,
) -> np.ndarray:
    """Per-sample rewards straight from an item's win matrix.

    ``"centred"`` fits Bradley–Terry (MAP, so a sample that never won still gets a finite reward) and
    centres the scores; ``"win_rate"`` uses the empirical win rate against the group,
    ``(wins + 0.5) / (votes + 1)``, which is 0.5 for a sample nobody voted on.

    Parameters
    ----------
    wins : array_like, shape (n, n)
        ``wins[i, j]``: votes for ``i`` over ``j`` (ties count half).
    method, normalise, floor :
        As in :func:`rewards_from_scores`.
    prior : float
        Prior precision of the Bradley–Terry fit.

    Returns
    -------
    ndarray, shape (n,)
    """
    mat = _as_win_matrix(wins)
    floor = _check_method(method, floor)
    if method == "centred":
        return _normalise(fit_bradley_terry(mat, prior=prior).scores, normalise, floor)
    won = mat.sum(axis=1)
    votes = won + mat.sum(axis=0)
    return _normalise((won + 0.5) / (votes + 1.0), normalise, floor)
