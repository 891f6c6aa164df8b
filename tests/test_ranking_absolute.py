"""fit_absolute: Bradley–Terry with an acceptability threshold, against a slow reference and by coverage."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.special import expit

from flowlab.ranking import fit_absolute, fit_bradley_terry, simulate_absolute


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
