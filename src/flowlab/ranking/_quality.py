"""Annotator quality: agreement with gold pairs and with the consensus, spammer flags, and Crowd-BT fits."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import (  # binomial CDF and normal quantile, without importing scipy.stats
    bdtr,
    expit,
    log_expit,
    ndtri,
)

from ._bradley_terry import (
    DEFAULT_PRIOR,
    BradleyTerryResult,
    _bt_newton,
    _pairs_from_data,
    fit_bradley_terry,
)
from ._counts import _check_n_items
from ._intervals import percentile_summary, rank_ranges

__all__ = [
    "AnnotatorQuality",
    "CrowdBradleyTerryResult",
    "annotator_quality",
    "consensus_agreement",
    "fit_crowd_bradley_terry",
    "gold_agreement",
]


def _as_votes(
    votes: ArrayLike, n_items: int | None, n_annotators: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int, int]:
    """Validate (m, 3) or (m, 4) ``(annotator, winner, loser[, tie])`` votes."""
    arr = np.asarray(votes)
    if arr.size == 0:
        arr = arr.reshape(0, 3)
    if arr.ndim != 2 or arr.shape[1] not in (3, 4):
        raise ValueError(
            "votes must be an (m, 3) array of (annotator, winner, loser) indices or (m, 4) with a tie column; "
            f"got shape {arr.shape}."
        )
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)) or arr.dtype == bool:
        raise ValueError(f"votes must hold integer indices; got dtype {arr.dtype}.")
    if np.issubdtype(arr.dtype, np.floating) and (not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr))):
        raise ValueError("votes contain NaN, infinite or fractional indices; indices must be whole numbers.")
    arr = arr.astype(np.int64)
    annotator, winner, loser = arr[:, 0], arr[:, 1], arr[:, 2]
    tie = arr[:, 3] if arr.shape[1] == 4 else np.zeros(len(arr), dtype=np.int64)
    if np.any((tie != 0) & (tie != 1)):
        raise ValueError("the tie column of votes must be 0 or 1.")
    if len(arr) and (arr[:, :3].min() < 0):
        raise ValueError("votes contain negative indices.")
    if len(arr) and np.any(winner == loser):
        raise ValueError("a vote has the same datapoint as winner and loser; drop self-comparisons.")
    need_items = int(max(winner.max(), loser.max())) + 1 if len(arr) else 0
    need_annotators = int(annotator.max()) + 1 if len(arr) else 0
    n_items = need_items if n_items is None else _check_n_items(n_items)
    n_annotators = need_annotators if n_annotators is None else _check_n_items(n_annotators)
    if need_items > n_items:
        raise ValueError(f"votes refer to datapoint {need_items - 1} but n_items is {n_items}.")
    if need_annotators > n_annotators:
        raise ValueError(f"votes refer to annotator {need_annotators - 1} but n_annotators is {n_annotators}.")
    return annotator, winner, loser, tie.astype(bool), n_items, n_annotators


def gold_agreement(votes: ArrayLike, gold: ArrayLike, n_annotators: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Each annotator's agreement with gold pairs (validation pairs whose answer is known).

    A vote on a gold pair scores 1 when it matches the gold answer, 0 when it picks the other side, and
    0.5 when one of the two is a tie and the other is not.

    Parameters
    ----------
    votes : array_like, shape (m, 3) or (m, 4)
        ``(annotator, winner, loser[, tie])`` rows; votes on pairs that are not gold are ignored.
    gold : array_like, shape (g, 2) or (g, 3)
        ``(better, worse[, tie])`` rows: the known answers, over the same datapoint indices.
    n_annotators : int, optional
        Number of annotators.

    Returns
    -------
    agreement : ndarray, shape (n_annotators,)
        Mean score on gold votes; NaN for an annotator with no gold votes.
    n_gold_votes : ndarray of int, shape (n_annotators,)
        Gold votes per annotator.
    """
    annotator, winner, loser, tie, _, n_ann = _as_votes(votes, None, n_annotators)
    g = np.asarray(gold)
    if g.size == 0:
        g = g.reshape(0, 2)
    if g.ndim != 2 or g.shape[1] not in (2, 3) or not np.issubdtype(g.dtype, np.integer):
        raise ValueError("gold must be an (g, 2) integer array of (better, worse) or (g, 3) with a tie column.")
    g_tie = g[:, 2].astype(bool) if g.shape[1] == 3 else np.zeros(len(g), dtype=bool)
    lookup: dict[tuple[int, int], tuple[int, bool]] = {}
    for better, worse, is_tie in zip(g[:, 0].tolist(), g[:, 1].tolist(), g_tie.tolist(), strict=True):
        key = (min(better, worse), max(better, worse))
        if key in lookup and lookup[key] != (better, is_tie):
            raise ValueError(f"gold gives two different answers for pair {key}.")
        lookup[key] = (better, is_tie)
    score_sum = np.zeros(n_ann)
    count = np.zeros(n_ann, dtype=np.int64)
    for a, w, lose, t in zip(annotator.tolist(), winner.tolist(), loser.tolist(), tie.tolist(), strict=True):
        answer = lookup.get((min(w, lose), max(w, lose)))
        if answer is None:
            continue
        better, gold_tie = answer
        score = (1.0 if t and gold_tie else 0.5) if t or gold_tie else 1.0 if w == better else 0.0
        score_sum[a] += score
        count[a] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        agreement = np.where(count > 0, score_sum / np.maximum(count, 1), np.nan)
    return agreement, count


def _leave_one_out_scores(
    annotator: np.ndarray,
    winner: np.ndarray,
    loser: np.ndarray,
    tie: np.ndarray,
    n_items: int,
    n_annotators: int,
    prior: float,
) -> np.ndarray:
    """For each vote, the consensus score gap winner − loser from everyone else's votes."""
    comps = np.stack([winner, loser, tie.astype(np.int64)], axis=1)
    everyone = _bt_newton(_pairs_from_data(comps, n_items, None, None, False), prior, np.zeros(n_items), 1e-6, 100)[0]
    gap = np.empty(len(winner))
    for a in range(n_annotators):
        mine = annotator == a
        if not mine.any():
            continue
        others = _pairs_from_data(comps[~mine], n_items, None, None, False)
        theta = _bt_newton(others, prior, everyone, 1e-6, 100)[0]
        gap[mine] = theta[winner[mine]] - theta[loser[mine]]
    return gap


def consensus_agreement(
    votes: ArrayLike,
    n_items: int | None = None,
    n_annotators: int | None = None,
    *,
    prior: float = DEFAULT_PRIOR,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each annotator's agreement with the consensus order of everyone else.

    The consensus for annotator ``a`` is a Bradley–Terry MAP fit to all votes except ``a``'s, so an
    annotator with many votes cannot agree with themselves. A vote agrees when its winner has the higher
    consensus score (ties score 0.5).

    Parameters
    ----------
    votes : array_like, shape (m, 3) or (m, 4)
        ``(annotator, winner, loser[, tie])`` rows.
    n_items, n_annotators : int, optional
        Numbers of datapoints and annotators.
    prior : float
        Prior precision of the consensus fits.

    Returns
    -------
    agreement : ndarray, shape (n_annotators,)
        Share of the annotator's votes agreeing with the consensus; NaN for an annotator with no votes.
    evidence : ndarray, shape (n_annotators,)
        Log-likelihood ratio of the annotator's votes under the consensus model against coin flipping:
        it grows by about ``½ log(4 p (1 − p))`` (negative) per vote for a random clicker and is positive
        for an annotator who follows the consensus.
    n_votes : ndarray of int, shape (n_annotators,)
        Votes per annotator.
    """
    annotator, winner, loser, tie, n, n_ann = _as_votes(votes, n_items, n_annotators)
    count = np.bincount(annotator, minlength=n_ann)
    if len(annotator) == 0:
        return np.full(n_ann, np.nan), np.zeros(n_ann), count
    gap = _leave_one_out_scores(annotator, winner, loser, tie, n, n_ann, prior)
    agree = np.where(tie, 0.5, (gap > 0).astype(float) + 0.5 * (gap == 0))
    loglik = np.where(tie, 0.0, log_expit(gap) + math.log(2.0))
    with np.errstate(invalid="ignore", divide="ignore"):
        agreement = np.where(count > 0, np.bincount(annotator, agree, n_ann) / np.maximum(count, 1), np.nan)
    return agreement, np.bincount(annotator, loglik, n_ann), count


@dataclass(frozen=True, eq=False)
class AnnotatorQuality:
    """Quality statistics per annotator.

    Attributes
    ----------
    n_votes : ndarray of int
        Votes cast.
    gold_agreement : ndarray
        Agreement with gold pairs (NaN without gold votes).
    n_gold_votes : ndarray of int
        Votes on gold pairs.
    consensus_agreement : ndarray
        Agreement with the leave-one-out consensus (NaN without votes).
    consensus_evidence : ndarray
        Log-likelihood ratio, consensus model against coin flipping.
    spammer : ndarray of bool
        Flagged as indistinguishable from (or worse than) random clicking; see :func:`annotator_quality`.
    """

    n_votes: np.ndarray
    gold_agreement: np.ndarray
    n_gold_votes: np.ndarray
    consensus_agreement: np.ndarray
    consensus_evidence: np.ndarray
    spammer: np.ndarray


def annotator_quality(
    votes: ArrayLike,
    n_items: int | None = None,
    n_annotators: int | None = None,
    *,
    gold: ArrayLike | None = None,
    prior: float = DEFAULT_PRIOR,
    gold_threshold: float = 0.8,
    min_gold_votes: int = 5,
    alpha: float = 0.05,
) -> AnnotatorQuality:
    """Gold agreement, consensus agreement and a spammer flag for every annotator.

    An annotator is flagged as a spammer when either

    * they answered at least ``min_gold_votes`` gold pairs and a one-sided binomial test rejects, at level
      ``alpha``, that their gold accuracy is at least ``gold_threshold``; or
    * the consensus explains their votes worse than coin flipping by a likelihood ratio of ``1/alpha``
      (``consensus_evidence < log alpha``), which a random clicker reaches after a few dozen votes and a
      careful annotator almost never does.

    Parameters
    ----------
    votes : array_like, shape (m, 3) or (m, 4)
        ``(annotator, winner, loser[, tie])`` rows. Votes on gold pairs may be included; they count
        towards both statistics.
    n_items, n_annotators : int, optional
        Numbers of datapoints and annotators.
    gold : array_like, shape (g, 2) or (g, 3), optional
        Known answers ``(better, worse[, tie])``.
    prior : float
        Prior precision of the consensus fits.
    gold_threshold : float
        Gold accuracy a careful annotator is expected to reach.
    min_gold_votes : int
        Gold votes needed before the gold test may flag anyone.
    alpha : float
        Significance level of both tests.

    Returns
    -------
    AnnotatorQuality
    """
    annotator, winner, loser, tie, n, n_ann = _as_votes(votes, n_items, n_annotators)
    arr = np.stack([annotator, winner, loser, tie.astype(np.int64)], axis=1)
    agreement, evidence, count = consensus_agreement(arr, n, n_ann, prior=prior)
    if gold is None:
        g_agree, g_count = np.full(n_ann, np.nan), np.zeros(n_ann, dtype=np.int64)
    else:
        g_agree, g_count = gold_agreement(arr, gold, n_ann)
    correct = np.round(np.nan_to_num(g_agree) * g_count)
    gold_flag = (g_count >= min_gold_votes) & (bdtr(correct, g_count, gold_threshold) < alpha)
    consensus_flag = evidence < math.log(alpha)
    return AnnotatorQuality(count, g_agree, g_count, agreement, evidence, gold_flag | consensus_flag)


@dataclass(frozen=True, eq=False)
class CrowdBradleyTerryResult:
    """A Crowd-BT fit: datapoint scores plus a reliability per annotator.

    Attributes
    ----------
    fit : BradleyTerryResult
        Scores, intervals and ranks from the reliability-weighted votes.
    reliability : ndarray, shape (n_annotators,)
        Probability that an annotator reports the true preference (0.5 = random clicking).
    iterations : int
        EM iterations used.
    converged : bool
        Whether EM met its tolerance.
    """

    fit: BradleyTerryResult
    reliability: np.ndarray
    iterations: int
    converged: bool


def fit_crowd_bradley_terry(
    votes: ArrayLike,
    n_items: int | None = None,
    n_annotators: int | None = None,
    *,
    prior: float = DEFAULT_PRIOR,
    reliability_prior: tuple[float, float] = (8.0, 2.0),
    interval: str = "wald",
    level: float = 0.95,
    max_iter: int = 200,
    tol: float = 1e-5,
    n_bootstrap: int = 200,
    rng: np.random.Generator | int | None = None,
) -> CrowdBradleyTerryResult:
    """Bradley–Terry scores and annotator reliabilities, fitted together (Crowd-BT).

    Annotator ``k`` reports the true preference with probability ``η_k`` and the opposite otherwise, so
    ``P(k says i beats j) = η_k σ(θ_i − θ_j) + (1 − η_k) σ(θ_j − θ_i)`` (Chen et al. 2013). EM
    alternates between the posterior probability that each vote is truthful and a weighted
    Bradley–Terry fit in which a vote counts that probability for its winner and the rest for its loser.
    A random clicker ends near ``η = 0.5``, where their votes carry no weight. ``η`` is kept in
    [0.5, 1): an annotator who is reliably wrong is treated as random rather than trusted in reverse.
    Ties count half each way and do not inform ``η``.

    Parameters
    ----------
    votes : array_like, shape (m, 3) or (m, 4)
        ``(annotator, winner, loser[, tie])`` rows.
    n_items, n_annotators : int, optional
        Numbers of datapoints and annotators.
    prior : float
        Prior precision on each score, as in :func:`fit_bradley_terry`.
    reliability_prior : (float, float)
        Beta prior ``(a, b)`` on each ``η``; the default (mode 0.875, worth eight votes) leans towards
        careful annotators, so an annotator with few votes is not written off.
    interval : {"wald", "sandwich", "bootstrap"}
        Wald intervals from the observed information of the votes under the fitted reliabilities
        (default); a sandwich with that information as bread; or a bootstrap over votes, each resample's
        scores refitted under the same reliabilities.
    level : float
        Coverage of the intervals.
    max_iter : int
        EM iteration limit.
    tol : float
        Stop when no score or reliability moves by more than this.
    n_bootstrap : int
        Resamples when ``interval="bootstrap"``.
    rng : numpy.random.Generator or int, optional
        Randomness for the bootstrap.

    Returns
    -------
    CrowdBradleyTerryResult

    Notes
    -----
    Near ``½`` the model only sees the product of ``2η − 1`` and the score gaps, so EM alone leaves
    careful annotators near η = 0.92 and the scores about 1.4× too wide. After EM the reliabilities are
    rescaled so the crowd's careful annotators (those with at least half the best ``2η − 1``; their median)
    sit at η = 1, and the scores are refitted under them: scores are on the scale of a careful annotator.

    References
    ----------
    X. Chen, P. N. Bennett, K. Collins-Thompson and E. Horvitz, "Pairwise ranking aggregation in a
    crowdsourced setting", WSDM 2013.
    """
    annotator, winner, loser, tie, n, n_ann = _as_votes(votes, n_items, n_annotators)
    if interval not in ("wald", "sandwich", "bootstrap"):
        raise ValueError(f"interval must be 'wald', 'sandwich' or 'bootstrap'; got {interval!r}.")
    a_prior, b_prior = reliability_prior
    if a_prior < 1 or b_prior < 1:
        raise ValueError("reliability_prior needs a, b ≥ 1 so the prior has a mode.")
    decided = ~tie
    comps = np.concatenate([np.stack([winner, loser, tie], 1), np.stack([loser, winner, tie], 1)]).astype(np.int64)
    # Start from the unweighted fit and a middling reliability: at η = 1 every vote would look truthful
    # and EM could never move away.
    eta = np.full(n_ann, 0.8)
    theta = _bt_newton(_pairs_from_data(comps[: len(winner)], n, None, None, False), prior, np.zeros(n), 1e-8, 100)[0]
    count = np.bincount(annotator[decided], minlength=n_ann)
    converged = False
    iteration = 0
    truthful = np.ones(len(winner))
    for iteration in range(1, max_iter + 1):  # noqa: B007
        truthful = _truth_weights(theta, eta, annotator, winner, loser, decided)
        # MAP of a Beta prior; an annotator with no decided votes (and a flat prior) keeps the prior mean.
        denom = count + a_prior + b_prior - 2
        new_eta = np.where(
            denom > 0,
            (np.bincount(annotator[decided], truthful[decided], n_ann) + a_prior - 1) / np.maximum(denom, 1e-12),
            a_prior / (a_prior + b_prior),
        )
        new_eta = np.clip(new_eta, 0.5, 1 - 1e-6)
        weights = np.concatenate([truthful, 1.0 - truthful])
        pairs = _pairs_from_data(comps, n, weights, None, False)
        new_theta = _bt_newton(pairs, prior, theta, 1e-8, 100)[0]
        change = max(np.max(np.abs(new_theta - theta), initial=0.0), np.max(np.abs(new_eta - eta), initial=0.0))
        theta, eta = new_theta, new_eta
        if change < tol:
            converged = True
            break
    eta = _anchor_reliabilities(eta, count)
    theta, truthful = _scores_given_reliability(
        theta, eta, annotator, winner, loser, decided, comps, n, prior, tol, max_iter
    )
    weights = np.concatenate([truthful, 1.0 - truthful])
    fit = fit_bradley_terry(comps, n, prior=prior, weights=weights, init=theta, level=level)  # type: ignore[arg-type]
    if interval == "bootstrap":
        gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        draws = np.empty((n_bootstrap, n))
        for b in range(n_bootstrap):
            pick = gen.integers(0, len(winner), len(winner))
            w, lose, dec = winner[pick], loser[pick], decided[pick]
            sample = np.concatenate([np.stack([w, lose, tie[pick]], 1), np.stack([lose, w, tie[pick]], 1)])
            draws[b] = _scores_given_reliability(
                fit.scores, eta, annotator[pick], w, lose, dec, sample.astype(np.int64), n, prior, tol, max_iter
            )[0]
        fit = _percentile_intervals(fit, draws, level)
    else:
        fit = _observed_information_intervals(fit, winner, loser, tie, eta[annotator], prior, level, interval)
    return CrowdBradleyTerryResult(fit, eta, iteration, converged)


def _truth_weights(
    theta: np.ndarray,
    eta: np.ndarray,
    annotator: np.ndarray,
    winner: np.ndarray,
    loser: np.ndarray,
    decided: np.ndarray,
) -> np.ndarray:
    """EM's E-step: the posterior chance that each decided vote reports its annotator's true preference."""
    p = expit(theta[winner] - theta[loser])
    e = eta[annotator]
    return np.where(decided, e * p / (e * p + (1 - e) * (1 - p)), 0.5)


def _scores_given_reliability(
    theta: np.ndarray,
    eta: np.ndarray,
    annotator: np.ndarray,
    winner: np.ndarray,
    loser: np.ndarray,
    decided: np.ndarray,
    comps: np.ndarray,
    n: int,
    prior: float,
    tol: float,
    max_iter: int,
) -> tuple[np.ndarray, np.ndarray]:
    """EM over the scores alone, the reliabilities held fixed; returns scores and each vote's truth weight."""
    truthful = np.full(len(winner), 0.5)
    for _ in range(max_iter):
        truthful = _truth_weights(theta, eta, annotator, winner, loser, decided)
        pairs = _pairs_from_data(comps, n, np.concatenate([truthful, 1.0 - truthful]), None, False)
        new_theta = _bt_newton(pairs, prior, theta, 1e-8, 100)[0]
        change = np.max(np.abs(new_theta - theta), initial=0.0)
        theta = new_theta
        if change < tol:
            break
    return theta, truthful


# Annotators with at least this many decided votes set the reliability scale.
_ANCHOR_MIN_VOTES = 10


def _anchor_reliabilities(eta: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Rescale reliabilities so that the most reliable annotators count as careful (η = 1).

    The model cannot tell a crowd that flips a tenth of its votes on a wide spread of scores from a
    careful crowd on a narrower spread: ``P = ½ + (2η − 1)(σ(θ_i − θ_j) − ½)``, and near ``½`` only the
    product of ``2η − 1`` and the score gaps is identified. EM left alone splits the difference: careful
    annotators come out near 0.92 and the scores 1.4× too wide. Fixing the scale by the crowd's careful
    annotators keeps every annotator's
    reliability relative to theirs and puts the scores on the scale of a careful annotator. The careful
    are those with at least half the best signal ``2η − 1`` (among annotators with enough votes); their
    median is the reference.
    """
    signal = 2.0 * eta - 1.0
    enough = count >= _ANCHOR_MIN_VOTES
    pool = signal[enough] if enough.any() else signal
    if len(pool) == 0:
        return eta
    reference = float(np.median(pool[pool >= 0.5 * pool.max()]))
    if reference <= 0.05:  # nobody is distinguishable from a random clicker: nothing to anchor to
        return eta
    return np.clip(0.5 + 0.5 * signal / reference, 0.5, 1 - 1e-6)


def _observed_information_intervals(
    fit: BradleyTerryResult,
    winner: np.ndarray,
    loser: np.ndarray,
    tie: np.ndarray,
    eta: np.ndarray,
    prior: float,
    level: float,
    interval: str = "wald",
) -> BradleyTerryResult:
    """Wald or sandwich intervals from the information the observed votes carry (Louis 1982).

    The weighted refit counts every vote as if it were known to be truthful or not, which overstates
    the information in votes from unreliable annotators: a random clicker's votes would still narrow the
    intervals. Here each decided vote contributes the curvature of its observed log-likelihood
    ``log(η p + (1 − η)(1 − p))``, which is near zero when ``η`` is near 0.5. ``η`` is treated as known, so
    the intervals are still slightly optimistic where reliabilities are uncertain. The sandwich keeps
    that information as its bread and takes the spread of the votes' own scores as its meat.
    """
    n = fit.n_items
    theta = fit.scores
    p = expit(theta[winner] - theta[loser])
    q = eta * p + (1 - eta) * (1 - p)
    dq = (2 * eta - 1) * p * (1 - p)
    curvature = (dq**2 - q * dq * (1 - 2 * p)) / q**2  # −∂² log q / ∂(θ_w − θ_l)²
    curvature = np.where(tie, p * (1 - p), curvature)  # a tie is half a win each way
    info = prior * np.eye(n)
    np.add.at(info, (winner, winner), curvature)
    np.add.at(info, (loser, loser), curvature)
    np.add.at(info, (winner, loser), -curvature)
    np.add.at(info, (loser, winner), -curvature)
    centre = np.eye(n) - 1.0 / n
    bread = np.linalg.pinv(info, hermitian=True)
    if interval == "sandwich":
        # Each vote's score of its observed log-likelihood, squared: ∂ log q / ∂(θ_w − θ_l) = dq / q.
        grad = np.where(tie, 0.5 - p, dq / q) ** 2  # a tie: half a win each way
        meat = prior * np.eye(n)
        np.add.at(meat, (winner, winner), grad)
        np.add.at(meat, (loser, loser), grad)
        np.add.at(meat, (winner, loser), -grad)
        np.add.at(meat, (loser, winner), -grad)
        bread = bread @ meat @ bread
    cov = centre @ bread @ centre
    se = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    z = float(ndtri(0.5 + level / 2))
    rank_low, rank_high = rank_ranges(theta, cov, level)
    return replace(
        fit,
        ci_low=theta - z * se,
        ci_high=theta + z * se,
        std_errors=se,
        rank_low=rank_low,
        rank_high=rank_high,
        interval=interval,
        covariance=cov,
    )


def _percentile_intervals(fit: BradleyTerryResult, draws: np.ndarray, level: float) -> BradleyTerryResult:
    """Percentile intervals and rank ranges from bootstrap draws of the scores."""
    ci_low, ci_high, std, rank_low, rank_high = percentile_summary(draws, level)
    return replace(
        fit,
        ci_low=ci_low,
        ci_high=ci_high,
        std_errors=std,
        rank_low=np.minimum(rank_low, fit.ranks),
        rank_high=np.maximum(rank_high, fit.ranks),
        interval="bootstrap",
        covariance=None,
    )
