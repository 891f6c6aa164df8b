"""Plackett–Luce fits: against a slow, obviously correct likelihood, against choix, and their intervals' coverage."""

from __future__ import annotations

import math

import choix
import numpy as np
import pytest
from scipy.optimize import minimize

from flowlab import ranking
from flowlab.ranking import fit_plackett_luce, implied_pairs


def _draw_orders(theta: np.ndarray, m: int, k: int, rng: np.random.Generator) -> list[tuple[int, ...]]:
    """Plackett–Luce orders of random k-subsets: sort utilities plus Gumbel noise."""
    out = []
    for _ in range(m):
        shown = rng.choice(len(theta), k, replace=False)
        out.append(tuple(int(i) for i in shown[np.argsort(-(theta[shown] + rng.gumbel(size=k)))]))
    return out


def _slow_nll(theta: np.ndarray, orders, best_worst=()) -> float:
    """The negative log-likelihood written out one choice at a time."""
    total = 0.0
    for order in orders:
        for s in range(len(order) - 1):
            rest = order[s:]
            total -= theta[order[s]] - math.log(sum(math.exp(theta[j]) for j in rest))
    for shown, best, worst in best_worst:
        total -= theta[best] - math.log(sum(math.exp(theta[j]) for j in shown))
        rest = [j for j in shown if j != best]
        total -= -theta[worst] - math.log(sum(math.exp(-theta[j]) for j in rest))
    return total


def _reference(n: int, orders, best_worst=(), prior: float = 0.0) -> np.ndarray:
    result = minimize(
        lambda t: _slow_nll(t, orders, best_worst) + 0.5 * prior * t @ t + 0.5 * t.sum() ** 2,
        np.zeros(n),
        method="BFGS",
        options={"gtol": 1e-9},
    )
    return result.x - result.x.mean()


def test_full_orders_match_the_slow_reference_with_and_without_prior() -> None:
    rng = np.random.default_rng(1)
    theta = rng.normal(size=6)
    orders = _draw_orders(theta, 60, 3, rng)
    for prior in (0.0, 0.5):
        fit = fit_plackett_luce(orders, 6, prior=prior)
        assert fit.converged
        np.testing.assert_allclose(fit.scores, _reference(6, orders, prior=prior), atol=1e-4)
        assert fit.log_likelihood == pytest.approx(-_slow_nll(fit.scores, orders), rel=1e-9)


def test_best_worst_answers_match_the_slow_reference() -> None:
    rng = np.random.default_rng(2)
    theta = rng.normal(size=7)
    answers = []
    for order in _draw_orders(theta, 80, 4, rng):
        answers.append((order, order[0], order[-1]))  # best and worst of a Plackett–Luce draw
    fit = fit_plackett_luce([], 7, best_worst=answers, prior=0.1)
    np.testing.assert_allclose(fit.scores, _reference(7, [], answers, prior=0.1), atol=1e-4)
    # Best over every other shown, every other over the worst: 2k − 3 implied pairs per answer.
    assert len(implied_pairs([], answers)) == 80 * 5
    assert fit.votes.sum() == 2 * 80 * 5


def test_equal_estimates_to_choix() -> None:
    rng = np.random.default_rng(3)
    theta = rng.normal(size=12)
    orders = _draw_orders(theta, 400, 5, rng)
    fit = fit_plackett_luce(orders, 12, prior=0.0)
    for other in (choix.ilsr_rankings(12, orders), choix.opt_rankings(12, orders, alpha=0.0)):
        np.testing.assert_allclose(fit.scores, other - other.mean(), atol=1e-4)


def test_on_pairs_it_is_bradley_terry() -> None:
    rng = np.random.default_rng(4)
    orders = _draw_orders(rng.normal(size=5), 200, 2, rng)
    pl = fit_plackett_luce(orders, 5)
    bt = ranking.fit_bradley_terry(np.array(orders), 5)
    np.testing.assert_allclose(pl.scores, bt.scores, atol=1e-6)
    np.testing.assert_allclose(pl.std_errors, bt.std_errors, rtol=1e-5)
    np.testing.assert_array_equal(pl.rank_low, bt.rank_low)


def test_no_answers_give_the_prior_and_ml_refuses_what_does_not_exist() -> None:
    fit = fit_plackett_luce([], 4)
    assert np.all(fit.scores == 0) and np.allclose(fit.std_errors, math.sqrt(10 * 3 / 4))  # the centred prior
    with pytest.raises(ValueError, match="do not exist"):
        fit_plackett_luce([(0, 1, 2), (0, 2, 1)], 3, prior=0.0)
    with pytest.raises(ValueError, match="twice"):
        fit_plackett_luce([(0, 0, 1)], 3)
    with pytest.raises(ValueError, match="two different"):
        fit_plackett_luce([], 3, best_worst=[((0, 1, 2), 1, 1)])


@pytest.mark.parametrize("mode", ["order", "best_worst"])
def test_wald_intervals_cover_the_true_scores(mode: str) -> None:
    """Seeded simulation: 95 % intervals cover the true (centred) scores 93–97 % of the time."""
    rng = np.random.default_rng(5)
    hits = total = 0
    for _ in range(150):
        theta = rng.normal(size=10)
        theta -= theta.mean()
        orders = _draw_orders(theta, 120, 4, rng)
        if mode == "order":
            fit = fit_plackett_luce(orders, 10, prior=0.01)
        else:
            fit = fit_plackett_luce([], 10, best_worst=[(o, o[0], o[-1]) for o in orders], prior=0.01)
        hits += int(((fit.ci_low <= theta) & (theta <= fit.ci_high)).sum())
        total += 10
    assert 0.93 <= hits / total <= 0.97, hits / total
