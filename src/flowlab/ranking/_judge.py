"""A judge (reward model or LLM judge) blended with people's votes: Crowd-BT with the judge as one more
annotator, the judge's agreement with people and a calibration of when it disagrees."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import expit, log_expit, ndtri

from ._bradley_terry import DEFAULT_PRIOR, _bt_newton, _pairs_from_data
from ._counts import _check_n_items

__all__ = [
    "AgreementModel",
    "JudgeBlendResult",
    "agreement_interval",
    "fit_agreement_model",
    "fit_judge_bradley_terry",
    "judge_log_posterior",
]

_ETA_MAX = 1.0 - 1e-6


@dataclass(frozen=True, eq=False)
class JudgeBlendResult:
    """A fit of people's votes and a judge's preferences on one scale.

    Attributes
    ----------
    scores : ndarray, shape (n_items,)
        Logit strengths θ on the people's scale, mean zero over all items (items in separate groups are
        never compared, so only differences within a group mean anything).
    judge_reliability : ndarray, shape (n_judges,)
        Probability η that the judge (one entry per judge index, e.g. per tag) reports the preference people
        hold; 0.5 = no better than a coin, in which case its preferences carry no weight.
    log_posterior : float
        The objective at the optimum (:func:`judge_log_posterior`).
    iterations : int
        EM iterations used (0 when the reliabilities were given).
    converged : bool
        Whether EM (or Newton's method, with given reliabilities) met its tolerance.
    """

    scores: np.ndarray
    judge_reliability: np.ndarray
    log_posterior: float
    iterations: int
    converged: bool


def _as_people(people: ArrayLike, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    arr = np.asarray(people, dtype=float)
    if arr.size == 0:
        arr = arr.reshape(0, 3)
    if arr.ndim != 2 or arr.shape[1] not in (2, 3):
        raise ValueError(
            f"people must be an (m, 2) array of (winner, loser) rows or (m, 3) with a weight; got shape {arr.shape}."
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError("people votes contain NaN or infinite values.")
    idx = arr[:, :2]
    if np.any(idx != np.round(idx)) or np.any(idx < 0) or np.any(idx >= n):
        raise ValueError(f"people votes must hold datapoint indices in [0, {n}).")
    weight = arr[:, 2] if arr.shape[1] == 3 else np.ones(len(arr))
    if np.any(weight < 0):
        raise ValueError("people vote weights must be non-negative (a count of votes).")
    winner, loser = idx[:, 0].astype(np.int64), idx[:, 1].astype(np.int64)
    if np.any(winner == loser):
        raise ValueError("a people vote has the same datapoint as winner and loser.")
    return winner, loser, weight


def _as_judge(judge: ArrayLike, n: int, n_judges: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    arr = np.asarray(judge, dtype=float)
    if arr.size == 0:
        arr = arr.reshape(0, 3)
    if arr.ndim != 2 or arr.shape[1] not in (3, 4):
        raise ValueError(
            "judge must be an (k, 3) array of (i, j, P(i beats j)) rows, or (k, 4) with a judge index (e.g. the "
            f"tag); got shape {arr.shape}."
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError("judge rows contain NaN or infinite values.")
    idx = arr[:, :2]
    if np.any(idx != np.round(idx)) or np.any(idx < 0) or np.any(idx >= n):
        raise ValueError(f"judge rows must hold datapoint indices in [0, {n}).")
    p = arr[:, 2]
    if np.any((p < 0) | (p > 1)):
        raise ValueError("the judge's preference P(i beats j) must lie in [0, 1].")
    which = arr[:, 3] if arr.shape[1] == 4 else np.zeros(len(arr))
    if np.any(which != np.round(which)) or np.any(which < 0):
        raise ValueError("judge indices must be non-negative whole numbers.")
    which = which.astype(np.int64)
    need = int(which.max()) + 1 if len(which) else 1
    n_judges = need if n_judges is None else _check_n_items(n_judges)
    if need > n_judges:
        raise ValueError(f"judge rows refer to judge {need - 1} but n_judges is {n_judges}.")
    first, second = idx[:, 0].astype(np.int64), idx[:, 1].astype(np.int64)
    if np.any(first == second):
        raise ValueError("a judge row compares a datapoint with itself.")
    return np.stack([first, second], 1), p, which, n_judges


def _reliabilities(value: ArrayLike, n_judges: int) -> np.ndarray:
    eta = np.broadcast_to(np.asarray(value, dtype=float), (n_judges,)).copy()
    if np.any(~np.isfinite(eta)) or np.any(eta < 0.5) or np.any(eta > 1.0):
        raise ValueError("judge_reliability must lie in [0.5, 1] (0.5: a coin; 1: always agrees with people).")
    return np.minimum(eta, _ETA_MAX)


def _mixed_log(eta: np.ndarray | float, d: np.ndarray) -> np.ndarray:
    """log(η σ(d) + (1 − η) σ(−d)), stable for η = 1."""
    eta = np.asarray(eta, dtype=float)
    with np.errstate(divide="ignore"):
        return np.logaddexp(np.log(eta) + log_expit(d), np.log1p(-np.minimum(eta, 1.0)) + log_expit(-d))


def judge_log_posterior(
    scores: ArrayLike,
    judge_reliability: ArrayLike,
    people: ArrayLike,
    judge: ArrayLike,
    *,
    people_reliability: float = 1.0,
    judge_prior: tuple[float, float] = (3.0, 2.0),
    prior: float = DEFAULT_PRIOR,
) -> float:
    """The log-posterior :func:`fit_judge_bradley_terry` maximises (up to a constant).

    ``Σ_people w log q(η_P, θ_w − θ_l) + Σ_judge [p log q(η_J, θ_i − θ_j) + (1 − p) log q(η_J, θ_j − θ_i)]
    − prior/2 ‖θ‖² + Σ_J log Beta(η_J; a, b)`` with ``q(η, d) = η σ(d) + (1 − η) σ(−d)``.
    """
    theta = np.asarray(scores, dtype=float)
    n = len(theta)
    winner, loser, weight = _as_people(people, n)
    pairs, p, which, n_judges = _as_judge(judge, n, None)
    eta = np.asarray(judge_reliability, dtype=float)
    eta = np.broadcast_to(eta, (max(n_judges, len(np.atleast_1d(eta))),))
    a, b = judge_prior
    total = float(weight @ _mixed_log(people_reliability, theta[winner] - theta[loser]))
    d = theta[pairs[:, 0]] - theta[pairs[:, 1]]
    e = eta[which]
    total += float(p @ _mixed_log(e, d) + (1.0 - p) @ _mixed_log(e, -d))
    total -= 0.5 * prior * float(theta @ theta)
    with np.errstate(divide="ignore"):
        total += float(np.sum((a - 1.0) * np.log(eta) + (b - 1.0) * np.log1p(-np.minimum(eta, 1.0))))
    return total


def fit_judge_bradley_terry(
    people: ArrayLike,
    judge: ArrayLike,
    n_items: int,
    *,
    n_judges: int | None = None,
    judge_reliability: ArrayLike | None = None,
    judge_prior: tuple[float, float] = (3.0, 2.0),
    people_reliability: float = 1.0,
    prior: float = DEFAULT_PRIOR,
    max_iter: int = 200,
    tol: float = 1e-6,
) -> JudgeBlendResult:
    """Scores from people's votes and a judge's preferences, the judge weighted by its learnt reliability.

    This is Crowd-BT (Chen et al. 2013) with the judge as one more annotator: the judge reports the
    preference people hold with probability ``η_J`` and the opposite otherwise, so ``P(judge prefers i to
    j) = η_J σ(θ_i − θ_j) + (1 − η_J) σ(θ_j − θ_i)``. People are the reference — the reward is meant to be
    theirs — so their reliability is held at ``people_reliability`` (1: their votes are plain Bradley–Terry
    votes, as in every other flowlab fit) and sets the scale of ``θ``; only the judge's ``η`` (one per judge
    index, e.g. one per tag) is learnt. Holding people fixed is what makes ``η_J`` identifiable: with both
    free, a judge that votes on every pair could explain its own votes perfectly and write the people off.
    A judge may give a soft preference ``p = P(i beats j)``: it counts as a vote for ``i`` with weight
    ``p`` and for ``j`` with ``1 − p`` (a scoring judge gives 1, 0 or ½).

    EM alternates the posterior chance that each judge preference is truthful with a weighted
    Bradley–Terry fit and a Beta-MAP update of ``η_J`` (kept in [0.5, 1): a judge reliably wrong is
    treated as a coin, not trusted in reverse). With ``judge_reliability`` given, only the scores are fitted.
    Groups whose items are never compared with each other's (GRPO groups) may be fitted together: the
    judge's ``η`` is then shared across them.

    Parameters
    ----------
    people : array_like, shape (m, 2) or (m, 3)
        ``(winner, loser[, weight])`` rows; the weight counts votes (e.g. a win-matrix cell).
    judge : array_like, shape (k, 3) or (k, 4)
        ``(i, j, p[, judge])`` rows: the judge's ``P(i beats j)`` and which of its reliabilities applies.
    n_items : int
        Number of datapoints.
    n_judges : int, optional
        Number of judge reliabilities (default: the largest judge index plus one).
    judge_reliability : float or array_like, optional
        Known ``η_J`` (in [0.5, 1]); by default it is estimated.
    judge_prior : (float, float)
        Beta prior ``(a, b)`` on each ``η_J``; the default (mode ⅔, worth three preferences) lets a judge
        with little overlap with people count somewhat, and data move it quickly.
    people_reliability : float
        People's ``η``, held fixed (in (0.5, 1]).
    prior : float
        Gaussian prior precision on each score, as in :func:`fit_bradley_terry`.
    max_iter : int
        EM iteration limit.
    tol : float
        Stop when no score or reliability moves by more than this.

    Returns
    -------
    JudgeBlendResult

    References
    ----------
    X. Chen, P. N. Bennett, K. Collins-Thompson and E. Horvitz, "Pairwise ranking aggregation in a
    crowdsourced setting", WSDM 2013. A. P. Dempster, N. M. Laird and D. B. Rubin, "Maximum likelihood from
    incomplete data via the EM algorithm", JRSS B 1977.
    """
    n = _check_n_items(n_items)
    winner, loser, weight = _as_people(people, n)
    pairs, p, which, n_judges = _as_judge(judge, n, n_judges)
    if not 0.5 < people_reliability <= 1.0:
        raise ValueError("people_reliability must lie in (0.5, 1]: people are the reference the judge is measured by.")
    a_prior, b_prior = judge_prior
    if a_prior < 1 or b_prior < 1:
        raise ValueError("judge_prior needs a, b ≥ 1 so the prior has a mode.")
    fixed = judge_reliability is not None
    eta = _reliabilities(0.75 if judge_reliability is None else judge_reliability, n_judges)
    # Every preference is a vote each way: (i beats j) with one weight and (j beats i) with the other.
    comps = np.concatenate([np.stack([winner, loser], 1), np.stack([loser, winner], 1), pairs, pairs[:, ::-1]]).astype(
        np.int64
    )
    if len(comps) == 0:
        theta = np.zeros(n)
        return JudgeBlendResult(theta, eta, judge_log_posterior(theta, eta, people, judge, prior=prior), 0, True)
    theta = np.zeros(n)
    converged = False
    iteration = 0
    for iteration in range(1, max_iter + 1):  # noqa: B007 - the count is returned
        # E-step: the chance that each vote reports the truth, given θ and η.
        dp = theta[winner] - theta[loser]
        t_people = _truthful(people_reliability, dp)
        d = theta[pairs[:, 0]] - theta[pairs[:, 1]]
        e = eta[which]
        t_for = _truthful(e, d)  # the judge's "i beats j" part is true
        t_against = _truthful(e, -d)  # its "j beats i" part is true
        # Expected weight on "truly i beats j" and "truly j beats i".
        truly_i = p * t_for + (1.0 - p) * (1.0 - t_against)
        truly_j = p * (1.0 - t_for) + (1.0 - p) * t_against
        weights = np.concatenate([weight * t_people, weight * (1.0 - t_people), truly_i, truly_j])
        new_theta = _bt_newton(_pairs_from_data(comps, n, weights, None, False), prior, theta, 1e-9, 100)[0]
        new_eta = eta
        if not fixed:
            agree = p * t_for + (1.0 - p) * t_against
            count = np.bincount(which, minlength=n_judges).astype(float)
            new_eta = (np.bincount(which, agree, n_judges) + a_prior - 1.0) / np.maximum(
                count + a_prior + b_prior - 2.0, 1e-12
            )
            new_eta = np.where(count + a_prior + b_prior - 2.0 > 0, new_eta, a_prior / (a_prior + b_prior))
            new_eta = np.clip(new_eta, 0.5, _ETA_MAX)
        change = max(float(np.max(np.abs(new_theta - theta))), float(np.max(np.abs(new_eta - eta), initial=0.0)))
        theta, eta = new_theta, new_eta
        if change < tol:
            converged = True
            break
    log_post = judge_log_posterior(
        theta, eta, people, judge, people_reliability=people_reliability, judge_prior=judge_prior, prior=prior
    )
    return JudgeBlendResult(theta, eta, log_post, 0 if fixed else iteration, converged)


def _truthful(eta: np.ndarray | float, d: np.ndarray) -> np.ndarray:
    """P(a vote for the side ahead by ``d`` reports the truth): ``η σ(d) / (η σ(d) + (1 − η) σ(−d))``."""
    eta = np.minimum(np.asarray(eta, dtype=float), 1.0)
    num = eta * expit(d)
    return num / np.maximum(num + (1.0 - eta) * expit(-d), 1e-300)


def agreement_interval(agree: float, total: float, level: float = 0.95) -> tuple[float, float, float]:
    """The share ``agree / total`` with its Wilson score interval (Wilson 1927).

    Returns ``(share, low, high)``; all NaN when ``total`` is 0. Honest at small ``total`` and near 0 or 1,
    where the normal (Wald) interval is too narrow.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be between 0 and 1 (e.g. 0.95); got {level!r}.")
    if total < 0 or agree < 0 or agree > total:
        raise ValueError(f"need 0 ≤ agree ≤ total; got {agree} of {total}.")
    if total == 0:
        return float("nan"), float("nan"), float("nan")
    z = float(ndtri(0.5 + level / 2.0))
    share = agree / total
    centre = (share + z * z / (2 * total)) / (1 + z * z / total)
    half = z * np.sqrt(share * (1 - share) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return float(share), float(max(0.0, centre - half)), float(min(1.0, centre + half))


@dataclass(frozen=True, eq=False)
class AgreementModel:
    """``P(the judge agrees with people on a pair) = σ(a + a_tag + b · margin)``.

    Attributes
    ----------
    intercept : float
        ``a``, shared by every tag.
    tag_effects : ndarray, shape (n_tags,)
        ``a_tag``, each tag's departure from ``a`` (shrunk towards 0 by the prior).
    slope : float
        ``b``: how much more often the judge agrees as its margin grows.
    n_pairs : int
        Pairs the model was fitted on.
    """

    intercept: float
    tag_effects: np.ndarray
    slope: float
    n_pairs: int

    def probability(self, margin: ArrayLike, tag: ArrayLike | int = 0) -> np.ndarray:
        """P(agree) for pairs with the judge's ``margin`` in tag ``tag`` (an unseen tag gets no tag effect)."""
        m = np.asarray(margin, dtype=float)
        t = np.broadcast_to(np.asarray(tag, dtype=np.int64), m.shape)
        known = (t >= 0) & (t < len(self.tag_effects))
        effect = np.zeros(m.shape)
        if len(self.tag_effects):
            effect = np.where(known, self.tag_effects[np.clip(t, 0, len(self.tag_effects) - 1)], 0.0)
        return expit(self.intercept + effect + self.slope * m)


def fit_agreement_model(
    margin: ArrayLike,
    agree: ArrayLike,
    tag: ArrayLike | None = None,
    n_tags: int | None = None,
    *,
    prior_mean: tuple[float, float] = (0.5, 1.0),
    prior_precision: tuple[float, float, float] = (1.0, 1.0, 2.0),
    max_iter: int = 50,
) -> AgreementModel:
    """Calibrate when a judge agrees with people: a logistic regression of agreement on the judge's margin,
    with one intercept per tag shrunk towards a shared one (a random-intercept model fitted by MAP).

    The margin is how sure the judge is about a pair (``|s_i − s_j|`` over the judge's usual spread for a
    scoring judge, ``|logit p|`` for a pairwise one). Routing sends people the groups with the most expected
    disagreements, ``Σ (1 − P(agree))``; before any data the prior (agreement rising with margin, no tag
    effects) ranks groups by margin alone, and as people vote the tags where the judge errs rise to the top.

    Parameters
    ----------
    margin : array_like, shape (m,)
        The judge's margin on each pair people decided.
    agree : array_like, shape (m,)
        1 when the judge's preferred side is the one people preferred, else 0 (fractions allowed).
    tag : array_like of int, shape (m,), optional
        Each pair's tag index.
    n_tags : int, optional
        Number of tags.
    prior_mean : (float, float)
        Prior means of the shared intercept ``a`` and the slope ``b``.
    prior_precision : (float, float, float)
        Gaussian prior precisions of ``a``, ``b`` and each tag effect.
    max_iter : int
        Newton iterations at most.

    Returns
    -------
    AgreementModel

    References
    ----------
    J. C. Platt, "Probabilistic outputs for support vector machines and comparisons to regularized likelihood
    methods", 1999 (a logistic map from a classifier's margin to a calibrated probability); A. Gelman and
    J. Hill, "Data analysis using regression and multilevel/hierarchical models", 2007 (partial pooling of
    group intercepts).
    """
    m = np.asarray(margin, dtype=float).ravel()
    y = np.asarray(agree, dtype=float).ravel()
    if m.shape != y.shape:
        raise ValueError(f"margin and agree need one entry per pair; got {m.shape} and {y.shape}.")
    if not (np.all(np.isfinite(m)) and np.all(np.isfinite(y))) or np.any((y < 0) | (y > 1)):
        raise ValueError("margin must be finite and agree must lie in [0, 1].")
    t = np.zeros(len(m), dtype=np.int64) if tag is None else np.asarray(tag, dtype=np.int64).ravel()
    if t.shape != m.shape or np.any(t < 0):
        raise ValueError("tag needs one non-negative index per pair.")
    k = (int(t.max()) + 1 if len(t) else 0) if n_tags is None else int(n_tags)
    if len(t) and t.max() >= k:
        raise ValueError(f"tag refers to tag {int(t.max())} but n_tags is {k}.")
    # Design: [1, margin, one-hot tag]; parameters w = [a, b, a_tag...].
    x = np.zeros((len(m), 2 + k))
    x[:, 0] = 1.0
    x[:, 1] = m
    if k:
        x[np.arange(len(m)), 2 + t] = 1.0
    mean = np.concatenate([prior_mean, np.zeros(k)])
    precision = np.concatenate([prior_precision[:2], np.full(k, prior_precision[2])])
    w = mean.copy()
    for _ in range(max_iter):
        q = expit(x @ w)
        grad = x.T @ (y - q) - precision * (w - mean)
        hess = (x * (q * (1 - q))[:, None]).T @ x + np.diag(precision)
        step = np.linalg.solve(hess, grad)
        w = w + step
        if np.max(np.abs(step)) < 1e-9:
            break
    return AgreementModel(float(w[0]), w[2:].copy(), float(w[1]), len(m))
