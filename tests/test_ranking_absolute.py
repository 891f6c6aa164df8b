"""fit_absolute: Bradley–Terry with an acceptability threshold, against a slow reference and by coverage."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.special import expit

from flowlab.ranking import absolute_votes, fit_absolute, fit_bradley_terry, simulate_absolute


def _reference(wins: np.ndarray, good: np.ndarray, bad: np.ndarray, ties: np.ndarray, prior: float) -> np.ndarray:
    """The same posterior written answer type by answer type over pairs, minimised by BFGS: u_i = θ_i − τ."""
    n = len(wins)
    decided = wins - 0.5 * (good + bad + ties)

    def nll(u: np.ndarray) -> float:
        p = expit(u)
        total = 0.0
        for i in range(n):
            for j in range(n):
                if i == j:
                    continue
                total += decided[i, j] * np.log(p[i] * (1 - p[j]))  # a split: i judged good, j bad
                if i < j:
                    total += good[i, j] * np.log(p[i] * p[j])
                    total += bad[i, j] * np.log((1 - p[i]) * (1 - p[j]))
                    q = expit(u[i] - u[j])
                    total += ties[i, j] * 0.5 * (np.log(q) + np.log(1 - q))
        return -total + 0.5 * prior * float(u @ u)

    return minimize(nll, np.zeros(n), method="BFGS", options={"gtol": 1e-9}).x


def test_matches_a_slow_reference_with_ties() -> None:
    rng = np.random.default_rng(3)
    u = rng.normal(0, 1.2, 6)
    wins, good, bad = simulate_absolute(u, 120, rng)
    ties = np.zeros((6, 6))
    for i, j in [(0, 1), (2, 5), (0, 1)]:
        ties[i, j] += 1
        ties[j, i] += 1
        wins[i, j] += 0.5
        wins[j, i] += 0.5
    fit = fit_absolute(wins, both_good=good, both_bad=bad, tie_counts=ties, prior=0.1)
    ref = _reference(wins, good, bad, ties, 0.1)
    assert fit.converged
    np.testing.assert_allclose(fit.p_acceptable, expit(ref), atol=1e-5)
    np.testing.assert_allclose(fit.scores, ref - ref.mean(), atol=1e-4)
    assert fit.threshold == pytest.approx(-ref.mean(), abs=1e-4)
    np.testing.assert_allclose(fit.p_acceptable, expit(fit.scores - fit.threshold))
    assert np.all(fit.p_low <= fit.p_acceptable) and np.all(fit.p_acceptable <= fit.p_high)


def test_without_both_answers_the_relative_part_is_bradley_terry() -> None:
    # Given a split, P(a wins) = σ(θ_a − θ_b): decided votes alone order datapoints as Bradley–Terry does.
    rng = np.random.default_rng(5)
    wins = rng.integers(0, 6, (8, 8)).astype(float)
    np.fill_diagonal(wins, 0)
    fit = fit_absolute(wins)
    bt = fit_bradley_terry(wins)
    assert np.corrcoef(fit.scores, bt.scores)[0, 1] > 0.9
    assert fit.ranks[np.argmax(bt.scores)] == 1


def test_a_group_of_bad_datapoints_is_not_acceptable() -> None:
    # Eight completions, all bad: a relative fit still ranks half of them above the middle; the level says no.
    rng = np.random.default_rng(0)
    u = np.full(8, -2.5) + rng.normal(0, 0.3, 8)
    wins, good, bad = simulate_absolute(u, 200, rng)
    fit = fit_absolute(wins, both_good=good, both_bad=bad)
    assert np.all(fit.p_acceptable < 0.5)
    assert np.all(fit.p_high < 0.5)


def test_no_votes_give_an_even_chance_with_wide_intervals() -> None:
    fit = fit_absolute(np.zeros((4, 4)))
    np.testing.assert_allclose(fit.p_acceptable, 0.5)
    assert np.all(fit.p_low < 0.05) and np.all(fit.p_high > 0.95)


def test_p_acceptable_intervals_cover_about_95_percent() -> None:
    hits = total = 0
    for seed in range(60):
        rng = np.random.default_rng(1000 + seed)
        u = rng.normal(0, 1.5, 20)
        wins, good, bad = simulate_absolute(u, 400, rng)
        fit = fit_absolute(wins, both_good=good, both_bad=bad)
        truth = expit(u)
        hits += int(((fit.p_low <= truth) & (truth <= fit.p_high)).sum())
        total += len(u)
    assert 0.93 <= hits / total <= 0.97, hits / total


def _crowd_answers(seed: int, spammers: int) -> tuple[np.ndarray, np.ndarray]:
    """400 answers on uniform pairs of 20 datapoints from ten annotators, the first `spammers` of whom answer
    a, b, both good or both bad at random: the true u and ``(annotator, first, second, answer)`` rows."""
    rng = np.random.default_rng(seed)
    u = rng.normal(0, 1.5, 20)
    a = rng.integers(0, 20, 400)
    pairs = np.stack([a, (a + rng.integers(1, 20, 400)) % 20], axis=1)
    who = rng.integers(0, 10, 400)
    ok = rng.random((400, 2)) < expit(u[pairs])
    spam = who < spammers
    ok[spam] = rng.random((int(spam.sum()), 2)) < 0.5
    first = np.where(ok[:, 0] | (ok[:, 0] == ok[:, 1]), pairs[:, 0], pairs[:, 1])
    code = np.where(ok[:, 0] == ok[:, 1], np.where(ok[:, 0], 2, 3), 0)
    return u, np.stack([who, first, pairs.sum(axis=1) - first, code], axis=1)


def test_annotator_reliability_discounts_spammers() -> None:
    spam_eta, careful_eta, gap, gap_plain = [], [], [], []
    for seed in range(8):
        _, rows = _crowd_answers(200 + seed, spammers=2)
        wins, good, bad, ties = absolute_votes(rows, 20)
        fit = fit_absolute(wins, both_good=good, both_bad=bad, tie_counts=ties, votes=rows)
        plain = fit_absolute(wins, both_good=good, both_bad=bad, tie_counts=ties)
        # The spam-free fit: the careful annotators' answers alone.
        careful = rows[rows[:, 0] >= 2]
        w, g, b, t = absolute_votes(careful, 20)
        clean = fit_absolute(w, both_good=g, both_bad=b, tie_counts=t)
        assert fit.reliability is not None and plain.reliability is None
        spam_eta.append(fit.reliability[:2].mean())
        careful_eta.append(fit.reliability[2:].min())
        gap.append(np.abs(fit.p_acceptable - clean.p_acceptable).mean())
        gap_plain.append(np.abs(plain.p_acceptable - clean.p_acceptable).mean())
    assert np.mean(spam_eta) < 0.6, spam_eta
    assert np.mean(careful_eta) > 0.9, careful_eta
    assert np.mean(gap) < 0.04 and np.mean(gap) < 0.5 * np.mean(gap_plain), (gap, gap_plain)


def test_the_accelerated_em_reaches_the_maximum_of_the_mixture_posterior() -> None:
    """The spammer mixture's posterior written answer by answer and maximised directly (L-BFGS over u and
    logit η): SQUAREM's fixed point is its maximum, whatever path EM took."""
    _, rows = _crowd_answers(211, spammers=2)
    wins, good, bad, ties = absolute_votes(rows, 20)
    fit = fit_absolute(wins, both_good=good, both_bad=bad, tie_counts=ties, votes=rows)
    who, a, b, code = rows.T
    ok_a, ok_b = (code == 0) | (code == 2), code == 2
    a_prior, b_prior = 4.0, 1.0

    def negative_log_posterior(x: np.ndarray) -> float:
        u, eta = x[:20], expit(x[20:])
        pa, pb = expit(u[a]), expit(u[b])
        model = np.where(ok_a, pa, 1 - pa) * np.where(ok_b, pb, 1 - pb)
        e = eta[who]
        beta = (a_prior - 1) * np.log(eta) + (b_prior - 1) * np.log1p(-eta)
        return -(np.log(e * model + (1 - e) / 4).sum() + beta.sum()) + 0.5 * 0.1 * float(u @ u)  # DEFAULT_PRIOR

    best = minimize(negative_log_posterior, np.zeros(30), method="L-BFGS-B", options={"ftol": 1e-15, "gtol": 1e-10})
    assert fit.converged and fit.iterations < 400, fit.iterations
    assert fit.scores - fit.threshold == pytest.approx(best.x[:20], abs=1e-4)
    assert fit.reliability == pytest.approx(expit(best.x[20:]), abs=1e-4)


def test_reliability_leaves_a_careful_crowd_alone() -> None:
    _, rows = _crowd_answers(7, spammers=0)
    wins, good, bad, ties = absolute_votes(rows, 20)
    fit = fit_absolute(wins, both_good=good, both_bad=bad, tie_counts=ties, votes=rows)
    plain = fit_absolute(wins, both_good=good, both_bad=bad, tie_counts=ties)
    # Forty careful answers each: chance alone takes one or two a little below 1, and costs the level little.
    assert fit.reliability is not None and fit.reliability.mean() > 0.9 and fit.reliability.min() > 0.7
    assert np.abs(fit.p_acceptable - plain.p_acceptable).mean() < 0.02


def test_votes_must_match_the_matrices() -> None:
    _, rows = _crowd_answers(1, spammers=0)
    wins, good, bad, ties = absolute_votes(rows, 20)
    with pytest.raises(ValueError, match="add up"):
        fit_absolute(wins, both_good=good, both_bad=bad, tie_counts=ties, votes=rows[:-1])
