"""Bradley–Terry with an acceptability threshold: pairwise votes plus "both good" / "both bad" answers."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import expit, log_expit

from ._bradley_terry import DEFAULT_PRIOR, elo_from_scores
from ._intervals import _z_value, rank_ranges

# Answer codes of `votes`' last column, as a pairwise item logs them: the first datapoint won, a plain tie,
# both good, both bad.
DECIDED, TIE, BOTH_GOOD, BOTH_BAD = 0, 1, 2, 3
# Beta(a, b) prior on each annotator's reliability: mode 1, worth three careful answers, so an annotator with a
# handful of answers is trusted until their answers say otherwise (a stronger prior kept spammers with 40
# answers near η = 0.7 and their answers' pull on the level).
RELIABILITY_PRIOR = (4.0, 1.0)

__all__ = ["AbsoluteResult", "absolute_counts", "absolute_votes", "fit_absolute", "simulate_absolute"]


@dataclass(frozen=True, eq=False)
class AbsoluteResult:
    """A joint fit of relative scores and an acceptability threshold. Arrays have one entry per datapoint.

    Attributes
    ----------
    scores, elo, ci_low, ci_high, std_errors, ranks, rank_low, rank_high, covariance :
        As in :class:`BradleyTerryResult`: logits with mean zero, their Elo form, intervals and rank ranges.
    threshold : float
        τ on the scale of ``scores``: ``P(acceptable_i) = σ(θ_i − τ)``.
    p_acceptable, p_low, p_high : ndarray
        Each datapoint's probability of being judged acceptable, with its interval at ``level`` (the delta
        method on the logit scale, mapped back through σ).
    good, bad : ndarray
        The absolute judgements each datapoint received: wins and "both good" answers count as good, losses
        and "both bad" answers as bad (ties carry none). With ``votes``, each answer counts its posterior
        chance of having been given by the model rather than at random.
    reliability : ndarray or None
        With ``votes``: each annotator's ``η``, the chance that an answer of theirs follows the model rather
        than a uniform draw over the four absolute answers; None without.
    """

    scores: np.ndarray
    elo: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    std_errors: np.ndarray
    ranks: np.ndarray
    rank_low: np.ndarray
    rank_high: np.ndarray
    threshold: float
    p_acceptable: np.ndarray
    p_low: np.ndarray
    p_high: np.ndarray
    good: np.ndarray
    bad: np.ndarray
    log_likelihood: float
    converged: bool
    iterations: int
    prior: float
    level: float
    starting_elo: float
    covariance: np.ndarray | None = field(default=None, repr=False)
    reliability: np.ndarray | None = None

    @property
    def n_items(self) -> int:
        return len(self.scores)


def absolute_counts(
    wins: np.ndarray, both_good: np.ndarray | None, both_bad: np.ndarray | None, tie_counts: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Good and bad judgements per datapoint, and the plain ties between each pair, from the matrices a
    pairwise item keeps: ``wins`` counts every tie-like answer (ties, both good, both bad) as half a win each
    way; ``both_good``, ``both_bad`` and ``tie_counts`` are symmetric counts of each."""
    n = wins.shape[0]
    zero = np.zeros((n, n))
    g = zero if both_good is None else np.asarray(both_good, dtype=float)
    b = zero if both_bad is None else np.asarray(both_bad, dtype=float)
    t = zero if tie_counts is None else np.asarray(tie_counts, dtype=float)
    decided = np.asarray(wins, dtype=float) - 0.5 * (g + b + t)
    decided = np.where(decided < 1e-9, 0.0, decided)
    good = decided.sum(axis=1) + g.sum(axis=1)
    bad = decided.sum(axis=0) + b.sum(axis=1)
    return good, bad, t


def fit_absolute(
    wins: ArrayLike,
    n_items: int | None = None,
    *,
    both_good: ArrayLike | None = None,
    both_bad: ArrayLike | None = None,
    tie_counts: ArrayLike | None = None,
    prior: float = DEFAULT_PRIOR,
    level: float = 0.95,
    starting_elo: float = 1000.0,
    init: ArrayLike | None = None,
    tol: float = 1e-8,
    max_iter: int = 100,
    votes: ArrayLike | None = None,
    reliability_prior: tuple[float, float] = RELIABILITY_PRIOR,
) -> AbsoluteResult:
    """Fit Bradley–Terry scores and an acceptability threshold to pairwise votes with "both good" / "both bad".

    The model reads each answer to a pair as two absolute judgements against a threshold τ, in the spirit of
    Böckenholt (2004), who pins the origin of a paired-comparison scale with accept/reject choices: each
    datapoint is judged acceptable with probability ``p_i = σ(θ_i − τ)``, independently; two agreeing
    judgements give "both good" (``p_a p_b``) or "both bad" (``(1 − p_a)(1 − p_b)``), and a split gives the
    acceptable one as the winner (``p_a (1 − p_b)``). Given a split, ``P(a wins) = σ(θ_a − θ_b)``: the
    Bradley–Terry model, so the relative part is the usual fit and the "both" answers add the level. A plain
    tie is a relative answer only (half a win each way) and carries no absolute judgement.

    Only ``u_i = θ_i − τ`` enters the likelihood; each ``u_i`` has a ``N(0, 1/prior)`` prior (an even chance
    of being acceptable). Scores are reported centred, ``θ = u − mean(u)`` and ``τ = −mean(u)``. Intervals
    are Wald intervals from the posterior's Hessian; ``P(acceptable)``'s interval is ``σ(u_i ± z·se_i)``.

    Parameters
    ----------
    wins : array_like
        ``n × n`` win matrix; ties and "both" answers count half a win each way, as a pairwise item keeps it.
    n_items : int, optional
        Number of datapoints (the matrix size by default).
    both_good, both_bad, tie_counts : array_like, optional
        Symmetric ``n × n`` counts of "both good", "both bad" and plain tie answers per pair.
    prior : float
        Precision of the Gaussian prior on each ``θ_i − τ`` (must be positive).
    level : float
        Interval coverage.
    starting_elo : float
        Centre of the Elo scale.
    init : array_like, optional
        Starting ``u`` (for example the previous fit's ``scores − threshold``).
    votes : array_like, shape (m, 4), optional
        The answers behind the matrices, one ``(annotator, first, second, answer)`` row each, ``answer`` one of
        0 (``first`` won), 1 (tie), 2 (both good), 3 (both bad); they must add up to ``wins`` and the counts.
        With them each annotator ``j`` gets a reliability ``η_j``: an answer follows the model with probability
        ``η_j`` and is otherwise one of a, b, both good, both bad uniformly at random (a spammer). ``η`` and
        ``u`` are fitted together by EM (Dawid and Skene 1979): each answer's judgements count the posterior
        chance that the model gave it, and intervals come from the observed information of the mixture
        (Louis 1982), ``η`` held at its estimate. Plain ties stay relative answers and do not inform ``η``.
    reliability_prior : (float, float)
        Beta prior ``(a, b)`` on each ``η`` (``a, b ≥ 1``); the default (mode 1, worth three careful answers)
        trusts an annotator with few answers.

    Returns
    -------
    AbsoluteResult

    References
    ----------
    U. Böckenholt. Comparative judgments as an alternative to ratings: identifying the scale origin.
    *Psychological Methods* 9(4), 2004.

    A. P. Dawid and A. M. Skene. Maximum likelihood estimation of observer error-rates using the EM
    algorithm. *Applied Statistics* 28(1), 1979.
    """
    w = np.asarray(wins, dtype=float)
    n = w.shape[0] if n_items is None else n_items
    if w.shape != (n, n):
        raise ValueError(f"wins must be an n × n matrix with n = {n}; got shape {w.shape}.")
    if prior <= 0:
        raise ValueError(f"prior must be positive (the threshold is not identified without it); got {prior}.")

    def square(m: ArrayLike | None) -> np.ndarray | None:
        return None if m is None else np.asarray(m, dtype=float).reshape(n, n)

    good, bad, ties = absolute_counts(w, square(both_good), square(both_bad), square(tie_counts))
    iu, ju = np.triu_indices(n, 1)
    t = ties[iu, ju]  # symmetric counts: the upper triangle holds each pair once
    keep = t > 0
    ti, tj, tw = iu[keep], ju[keep], t[keep]
    # Start from `init`, else from the smoothed share of good judgements on the logit scale.
    u = np.asarray(init, dtype=float).copy() if init is not None else np.log((good + 0.5) / (bad + 0.5))
    reliability = None
    if votes is None:
        u, value, converged, iterations = _posterior_mode(u, good, bad, (ti, tj, tw), prior, tol, max_iter)
        hess = _hessian(u, good + bad, ti, tj, tw, prior)
        log_likelihood = -(value - 0.5 * prior * float(u @ u))
    else:
        answers = _as_answers(votes, n, w, good, bad, ties)
        u, reliability, resp, converged, iterations = _reliability_em(
            u, answers, (ti, tj, tw), prior, reliability_prior, tol, max_iter
        )
        good, bad = _judgements(answers, resp, n)
        hess = _mixture_information(u, answers, reliability, (ti, tj, tw), prior)
        log_likelihood = _mixture_log_likelihood(u, answers, reliability, (ti, tj, tw))
    cov_u = _inverse(hess, prior) if n else np.zeros((0, 0))
    z = _z_value(level)
    se_u = np.sqrt(np.maximum(np.diag(cov_u), 0.0))
    centre = float(u.mean()) if n else 0.0
    scores = u - centre
    project = np.eye(n) - 1.0 / max(n, 1)
    cov = project @ cov_u @ project
    se = np.sqrt(np.maximum(np.diag(cov), 0.0))
    rank_low, rank_high = rank_ranges(scores, cov, level) if n else (np.zeros(0, int), np.zeros(0, int))
    order = np.sort(-scores)
    ranks = (np.searchsorted(order, -scores, side="left") + 1).astype(np.int64)
    return AbsoluteResult(
        scores=scores,
        elo=elo_from_scores(scores, starting_elo),
        ci_low=scores - z * se,
        ci_high=scores + z * se,
        std_errors=se,
        ranks=ranks,
        rank_low=rank_low,
        rank_high=rank_high,
        threshold=-centre,
        p_acceptable=expit(u),
        p_low=expit(u - z * se_u),
        p_high=expit(u + z * se_u),
        good=good,
        bad=bad,
        log_likelihood=log_likelihood,
        converged=converged,
        iterations=iterations,
        prior=prior,
        level=level,
        starting_elo=starting_elo,
        covariance=cov,
        reliability=reliability,
    )


Ties = tuple[np.ndarray, np.ndarray, np.ndarray]  # the pairs with plain ties (i < j) and their counts


def _posterior_mode(
    u: np.ndarray, good: np.ndarray, bad: np.ndarray, ties: Ties, prior: float, tol: float, max_iter: int
) -> tuple[np.ndarray, float, bool, int]:
    """Damped Newton on the negative log-posterior of (possibly weighted) judgements and plain ties."""
    ti, tj, tw = ties
    n = len(u)

    def objective(x: np.ndarray) -> float:
        rel = 0.5 * tw * (log_expit(x[ti] - x[tj]) + log_expit(x[tj] - x[ti]))
        ll = float(good @ log_expit(x) + bad @ log_expit(-x) + rel.sum())
        return -ll + 0.5 * prior * float(x @ x)

    converged = False
    iterations = 0
    value = objective(u)
    while iterations < max_iter:
        iterations += 1
        p = expit(u)
        q = expit(u[ti] - u[tj])
        grad = -(good * (1 - p) - bad * p) + prior * u
        rel_grad = -tw * (0.5 - q)
        grad += np.bincount(ti, rel_grad, n) - np.bincount(tj, rel_grad, n)
        if len(ti):
            step = np.linalg.solve(_hessian(u, good + bad, ti, tj, tw, prior), grad)
        else:  # without ties every datapoint's judgements are its own: the Hessian is diagonal
            step = grad / ((good + bad) * p * (1 - p) + prior)
        scale = 1.0
        while True:  # the objective is convex: halving finds descent quickly
            trial = u - scale * step
            new = objective(trial)
            if new <= value + 1e-12 or scale < 1e-6:
                break
            scale /= 2
        u, decrease = trial, value - new
        value = new
        if float(np.max(np.abs(scale * step), initial=0.0)) < tol or decrease < tol * 1e-3:
            converged = True
            break
    return u, value, converged, iterations


def absolute_votes(rows: ArrayLike, n_items: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """The win matrix and the "both good", "both bad" and tie counts of ``(annotator, first, second, answer)``
    rows, kept as a pairwise item keeps them (see :func:`fit_absolute`)."""
    arr = np.asarray(rows, dtype=np.int64).reshape(-1, 4)
    n = n_items
    wins, counts = np.zeros((n, n)), {c: np.zeros((n, n)) for c in (TIE, BOTH_GOOD, BOTH_BAD)}
    a, b, code = arr[:, 1], arr[:, 2], arr[:, 3]
    decided = code == DECIDED
    np.add.at(wins, (a[decided], b[decided]), 1.0)
    for c, m in counts.items():
        pick = code == c
        np.add.at(m, (a[pick], b[pick]), 1.0)
        np.add.at(m, (b[pick], a[pick]), 1.0)
        wins += 0.5 * m
    return wins, counts[BOTH_GOOD], counts[BOTH_BAD], counts[TIE] if (code == TIE).any() else None


class _Answers:
    """The absolute answers of ``votes``: who gave each, and the judgement it makes of each of its datapoints."""

    def __init__(self, annotator: np.ndarray, a: np.ndarray, b: np.ndarray, code: np.ndarray) -> None:
        self.annotator = annotator
        self.a, self.b = a, b
        self.ok_a = (code == DECIDED) | (code == BOTH_GOOD)
        self.ok_b = code == BOTH_GOOD
        self.n_annotators = int(annotator.max()) + 1 if len(annotator) else 0

    def model_probability(self, u: np.ndarray) -> np.ndarray:
        """P(answer) under the model: the two judgements, independent."""
        fa = np.where(self.ok_a, expit(u[self.a]), expit(-u[self.a]))
        fb = np.where(self.ok_b, expit(u[self.b]), expit(-u[self.b]))
        return fa * fb


def _as_answers(
    votes: ArrayLike, n: int, wins: np.ndarray, good: np.ndarray, bad: np.ndarray, ties: np.ndarray
) -> _Answers:
    arr = np.asarray(votes)
    if arr.size == 0:
        arr = arr.reshape(0, 4)
    if arr.ndim != 2 or arr.shape[1] != 4 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(
            f"votes must be an (m, 4) integer array of (annotator, first, second, answer) rows; got {arr.shape}."
        )
    annotator, a, b, code = arr.T.astype(np.int64)
    if len(arr) and (arr.min() < 0 or max(a.max(), b.max()) >= n or code.max() > BOTH_BAD or np.any(a == b)):
        raise ValueError(f"votes hold an index outside 0..{n - 1}, a pair with itself or an answer code above 3.")
    w, g, bb, t = absolute_votes(arr, n)
    zero = np.zeros((n, n))
    if not (
        np.allclose(w, wins)
        and np.allclose(absolute_counts(w, g, bb, t)[0], good)
        and np.allclose(absolute_counts(w, g, bb, t)[1], bad)
        and np.allclose(zero if t is None else t, ties)
    ):
        raise ValueError("votes do not add up to the win matrix and counts given; pass the matrices they make.")
    absolute = code != TIE  # plain ties make no absolute judgement and stay in the tie counts
    return _Answers(annotator[absolute], a[absolute], b[absolute], code[absolute])


def _judgements(answers: _Answers, weight: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Good and bad judgements per datapoint, each answer counting ``weight``."""
    good = np.bincount(answers.a, weight * answers.ok_a, n) + np.bincount(answers.b, weight * answers.ok_b, n)
    bad = np.bincount(answers.a, weight * ~answers.ok_a, n) + np.bincount(answers.b, weight * ~answers.ok_b, n)
    return good, bad


def _reliability_em(
    u: np.ndarray,
    answers: _Answers,
    ties: Ties,
    prior: float,
    reliability_prior: tuple[float, float],
    tol: float,
    max_iter: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool, int]:
    """EM for the spammer mixture, accelerated by SQUAREM: returns ``u``, each annotator's ``η``, each answer's
    posterior chance of coming from the model, whether EM converged, and its iterations (EM steps taken).

    Plain EM creeps here (thousands of steps with a fifth of spammers: the mixture's missing information is
    large), so each round extrapolates two EM steps along their squared difference (Varadhan and Roland's
    SqS3, 2008) and takes one EM step from there; a round that would lower the posterior falls back to the two
    plain steps, so the posterior never decreases and the fixed point is EM's own."""
    a_prior, b_prior = reliability_prior
    if a_prior < 1 or b_prior < 1:
        raise ValueError(f"reliability_prior needs a, b ≥ 1 so the prior has a mode; got {reliability_prior}.")
    n = len(u)
    count = np.bincount(answers.annotator, minlength=answers.n_annotators).astype(float)
    denom = count + a_prior + b_prior - 2

    def responsibility(x: np.ndarray) -> np.ndarray:
        e = x[n:][answers.annotator]
        model = e * answers.model_probability(x[:n])
        return model / (model + (1 - e) / 4)  # four answers, equally likely from a spammer

    def em_step(x: np.ndarray) -> np.ndarray:
        resp = responsibility(x)
        eta = np.where(
            denom > 0,
            (np.bincount(answers.annotator, resp, answers.n_annotators) + a_prior - 1) / np.maximum(denom, 1e-12),
            1.0,
        )
        good, bad = _judgements(answers, resp, n)
        new_u = _posterior_mode(x[:n], good, bad, ties, prior, 1e-10, max_iter)[0]
        return np.concatenate([new_u, np.clip(eta, 0.0, 1 - 1e-9)])

    def log_posterior(x: np.ndarray) -> float:
        eta = np.clip(x[n:], 1e-12, 1 - 1e-12)
        beta = (a_prior - 1) * np.log(eta) + (b_prior - 1) * np.log1p(-eta)
        return (
            _mixture_log_likelihood(x[:n], answers, eta, ties) + float(beta.sum()) - 0.5 * prior * float(x[:n] @ x[:n])
        )

    # Start η short of 1: at η = 1 every answer looks like the model's and EM could never move.
    x = np.concatenate([u, np.full(answers.n_annotators, 0.9)])
    value = log_posterior(x)
    converged = False
    steps = 0
    while steps < 10 * max_iter:
        x1 = em_step(x)
        x2 = em_step(x1)
        r, v = x1 - x, x2 - 2 * x1 + x
        steps += 2
        alpha = -float(np.linalg.norm(r)) / max(float(np.linalg.norm(v)), 1e-300)
        trial = x2
        if alpha < -1:
            jump = x - 2 * alpha * r + alpha**2 * v
            jump[n:] = np.clip(jump[n:], 0.0, 1 - 1e-9)
            trial = em_step(jump)
            steps += 1
        trial_value = log_posterior(trial)
        if trial is not x2 and trial_value < value - 1e-9 * max(1.0, abs(value)):
            trial, trial_value = x2, log_posterior(x2)  # the jump overshot: keep the two plain steps
        change = float(np.max(np.abs(trial - x), initial=0.0))
        x, value = trial, trial_value
        if change < max(tol, 1e-7):
            converged = True
            break
    return x[:n], x[n:], responsibility(x), converged, steps


def _mixture_log_likelihood(u: np.ndarray, answers: _Answers, eta: np.ndarray, ties: Ties) -> float:
    ti, tj, tw = ties
    e = eta[answers.annotator]
    q = e * answers.model_probability(u) + (1 - e) / 4
    rel = 0.5 * tw * (log_expit(u[ti] - u[tj]) + log_expit(u[tj] - u[ti]))
    return float(np.log(q).sum() + rel.sum())


def _mixture_information(u: np.ndarray, answers: _Answers, eta: np.ndarray, ties: Ties, prior: float) -> np.ndarray:
    """The negative log-posterior's Hessian under the mixture, ``η`` held fixed (observed information).

    With ``r`` an answer's posterior chance of coming from the model and ``s = ∂ log P / ∂u`` for each of its
    datapoints (``1 − p`` if judged good, ``−p`` if bad), ``−∂² log q = r·p(1 − p) − r(1 − r)·s²`` on the
    diagonal and ``−r(1 − r)·s_a s_b`` between the pair: an answer likely to be a spammer's carries little.
    """
    n = len(u)
    ti, tj, tw = ties
    e = eta[answers.annotator]
    model = e * answers.model_probability(u)
    r = model / (model + (1 - e) / 4)
    pa, pb = expit(u[answers.a]), expit(u[answers.b])
    sa = np.where(answers.ok_a, 1 - pa, -pa)
    sb = np.where(answers.ok_b, 1 - pb, -pb)
    hess = _hessian(u, np.zeros(n), ti, tj, tw, prior)
    spread = r * (1 - r)
    np.add.at(hess, (answers.a, answers.a), r * pa * (1 - pa) - spread * sa**2)
    np.add.at(hess, (answers.b, answers.b), r * pb * (1 - pb) - spread * sb**2)
    np.add.at(hess, (answers.a, answers.b), -spread * sa * sb)
    np.add.at(hess, (answers.b, answers.a), -spread * sa * sb)
    return hess


def _inverse(hess: np.ndarray, prior: float) -> np.ndarray:
    """The covariance from a Hessian; directions the observed information leaves non-positive keep the prior's."""
    values, vectors = np.linalg.eigh(hess)
    return (vectors / np.maximum(values, prior)) @ vectors.T


def _hessian(
    u: np.ndarray, judged: np.ndarray, ti: np.ndarray, tj: np.ndarray, tw: np.ndarray, prior: float
) -> np.ndarray:
    """The negative log-posterior's Hessian: a diagonal from the absolute judgements, a Laplacian from ties."""
    p = expit(u)
    hess = np.diag(judged * p * (1 - p) + prior)
    if len(ti):
        q = expit(u[ti] - u[tj])
        info = 0.5 * tw * 2 * q * (1 - q)  # two half votes' curvature: a tie's information
        np.add.at(hess, (ti, ti), info)
        np.add.at(hess, (tj, tj), info)
        np.add.at(hess, (ti, tj), -info)
        np.add.at(hess, (tj, ti), -info)
    return hess


def simulate_absolute(
    utilities: ArrayLike, n_votes: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Votes on uniformly drawn pairs under the model of :func:`fit_absolute`, given ``u_i = θ_i − τ``: the
    win matrix (both answers as half a win each way), and the "both good" and "both bad" counts."""
    u = np.asarray(utilities, dtype=float)
    n = len(u)
    wins, good, bad = np.zeros((n, n)), np.zeros((n, n)), np.zeros((n, n))
    a = rng.integers(0, n, n_votes)
    b = (a + rng.integers(1, n, n_votes)) % n
    ok_a = rng.random(n_votes) < expit(u[a])
    ok_b = rng.random(n_votes) < expit(u[b])
    for i, j, x, y in zip(a.tolist(), b.tolist(), ok_a.tolist(), ok_b.tolist(), strict=True):
        if x == y:
            target = good if x else bad
            target[i, j] += 1
            target[j, i] += 1
            wins[i, j] += 0.5
            wins[j, i] += 0.5
        elif x:
            wins[i, j] += 1
        else:
            wins[j, i] += 1
    return wins, good, bad
