"""The judge blend (Crowd-BT with the judge as one more annotator), its agreement interval and the agreement
calibration, each against a slow, obvious reference: the log-posterior written as a loop and maximised by a
general-purpose optimiser."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import minimize

from flowlab.ranking import (
    agreement_interval,
    fit_agreement_model,
    fit_bradley_terry,
    fit_judge_bradley_terry,
    judge_log_posterior,
)


def sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def slow_log_posterior(theta, eta, people, judge, prior, a, b, people_eta=1.0):  # type: ignore[no-untyped-def]
    """The model written out term by term."""
    total = 0.0
    for w, l_, count in people:
        d = theta[int(w)] - theta[int(l_)]
        total += count * math.log(people_eta * sig(d) + (1 - people_eta) * sig(-d))
    for i, j, p, k in judge:
        d = theta[int(i)] - theta[int(j)]
        e = eta[int(k)]
        total += p * math.log(e * sig(d) + (1 - e) * sig(-d))
        total += (1 - p) * math.log(e * sig(-d) + (1 - e) * sig(d))
    total -= 0.5 * prior * sum(t * t for t in theta)
    for e in eta:
        total += (a - 1) * math.log(e) + (b - 1) * math.log(1 - e)
    return total


def problem(seed: int, n: int = 5, judges: int = 2) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = rng.normal(0, 1, n)
    people = []
    for _ in range(12):
        i, j = rng.choice(n, 2, replace=False)
        won = rng.random() < sig(truth[i] - truth[j])
        people.append((i, j, 1.0) if won else (j, i, 1.0))
    judge = []
    for i in range(n):
        for j in range(i + 1, n):
            k = (i + j) % judges
            right = truth[i] > truth[j]
            if rng.random() < (0.9 if k == 0 else 0.6):
                judge.append((i, j, float(right), k))
            else:
                judge.append((i, j, float(not right), k))
    return np.array(people), np.array(judge)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_em_reaches_the_maximum_of_the_written_out_posterior(seed: int) -> None:
    people, judge = problem(seed)
    n, prior, (a, b) = 5, 0.1, (3.0, 2.0)
    fit = fit_judge_bradley_terry(people, judge, n, n_judges=2, tol=1e-9, max_iter=2000)
    assert fit.converged

    def negative(x: np.ndarray) -> float:
        return -slow_log_posterior(x[:n], x[n:], people, judge, prior, a, b)

    best = None
    for start_eta in (0.6, 0.8, 0.95):
        ref = minimize(
            negative,
            np.concatenate([np.zeros(n), [start_eta, start_eta]]),
            method="L-BFGS-B",
            bounds=[(None, None)] * n + [(0.5, 1 - 1e-6)] * 2,
            options={"ftol": 1e-14, "gtol": 1e-10, "maxiter": 5000},
        )
        best = ref if best is None or ref.fun < best.fun else best
    assert best is not None
    assert -best.fun == pytest.approx(fit.log_posterior, abs=1e-5), "EM finds the posterior's maximum"
    assert fit.log_posterior == pytest.approx(
        slow_log_posterior(fit.scores, fit.judge_reliability, people, judge, prior, a, b), abs=1e-9
    )
    np.testing.assert_allclose(fit.scores, best.x[:n], atol=2e-3)
    np.testing.assert_allclose(fit.judge_reliability, best.x[n:], atol=2e-3)


def test_soft_preferences_and_less_reliable_people_match_the_written_out_posterior() -> None:
    people, judge = problem(3, judges=1)
    judge[:, 2] = np.clip(np.abs(judge[:, 2] - 0.2), 0, 1)  # soft: 0.8 / 0.2
    fit = fit_judge_bradley_terry(people, judge, 5, people_reliability=0.9, tol=1e-10, max_iter=3000)
    value = slow_log_posterior(fit.scores, fit.judge_reliability, people, judge, 0.1, 3.0, 2.0, people_eta=0.9)
    assert fit.log_posterior == pytest.approx(value, abs=1e-9)
    # Nudging any score or the reliability lowers the written-out posterior: it is a maximum.
    for k in range(6):
        for h in (-1e-3, 1e-3):
            theta, eta = fit.scores.copy(), fit.judge_reliability.copy()
            if k < 5:
                theta[k] += h
            else:
                eta[0] = min(eta[0] + h, 1 - 1e-6)
            assert slow_log_posterior(theta, eta, people, judge, 0.1, 3.0, 2.0, people_eta=0.9) <= value + 1e-9


def test_a_coin_judge_changes_nothing_and_a_good_judge_is_trusted() -> None:
    people, judge = problem(4, judges=1)
    coin = fit_judge_bradley_terry(people, judge, 5, judge_reliability=0.5)
    alone = fit_bradley_terry(people[:, :2].astype(int), 5, prior=0.1)
    np.testing.assert_allclose(coin.scores, alone.scores, atol=1e-6)
    assert coin.iterations == 0 and coin.judge_reliability[0] == 0.5

    # A judge whose preferences follow the people's own fit is found reliable; one reversing them is a coin.
    order = np.argsort(-alone.scores)
    rank = np.empty(5, dtype=int)
    rank[order] = np.arange(5)
    agreeing = np.array([(i, j, float(rank[i] < rank[j]), 0) for i in range(5) for j in range(i + 1, 5)])
    reversed_ = agreeing.copy()
    reversed_[:, 2] = 1 - reversed_[:, 2]
    assert fit_judge_bradley_terry(people, agreeing, 5).judge_reliability[0] > 0.8
    worst = fit_judge_bradley_terry(people, reversed_, 5)
    assert worst.judge_reliability[0] == 0.5
    np.testing.assert_allclose(worst.scores, alone.scores, atol=1e-4, err_msg="a reversed judge is ignored")


def test_the_blend_orders_better_than_either_source_on_seeded_groups() -> None:
    """Groups of four with four people votes each and a judge right 75 % of the time: the blend's pair
    accuracy beats the judge's and people's alone, summed over 300 seeded groups."""
    rng = np.random.default_rng(11)
    right = {"judge": 0, "people": 0, "blend": 0}
    pairs_total = 0
    for _ in range(300):
        truth = rng.normal(0, 1, 4)
        judged = truth + rng.normal(0, 1.05, 4)  # ~75 % of pairs in the right order
        votes = []
        for _ in range(4):
            i, j = rng.choice(4, 2, replace=False)
            votes.append((i, j) if rng.random() < sig(truth[i] - truth[j]) else (j, i))
        judge = [(i, j, float(judged[i] > judged[j])) for i in range(4) for j in range(i + 1, 4)]
        blend = fit_judge_bradley_terry(np.array(votes), np.array(judge), 4, judge_reliability=0.75).scores
        people = fit_bradley_terry(np.array(votes), 4, prior=0.1).scores
        for i in range(4):
            for j in range(i + 1, 4):
                sign = np.sign(truth[i] - truth[j])
                pairs_total += 1
                right["judge"] += np.sign(judged[i] - judged[j]) == sign
                right["people"] += np.sign(people[i] - people[j]) == sign
                right["blend"] += np.sign(blend[i] - blend[j]) == sign
    assert 0.70 < right["judge"] / pairs_total < 0.80
    assert right["blend"] > right["judge"] and right["blend"] > right["people"]


def test_bad_input_says_what_to_do() -> None:
    with pytest.raises(ValueError, match="P\\(i beats j\\) must lie in"):
        fit_judge_bradley_terry(np.zeros((0, 2)), [[0, 1, 1.5]], 2)
    with pytest.raises(ValueError, match="datapoint indices in \\[0, 2\\)"):
        fit_judge_bradley_terry([[0, 2]], np.zeros((0, 3)), 2)
    with pytest.raises(ValueError, match="judge_reliability must lie in"):
        fit_judge_bradley_terry([[0, 1]], [[0, 1, 1.0]], 2, judge_reliability=0.3)
    with pytest.raises(ValueError, match="people_reliability"):
        fit_judge_bradley_terry([[0, 1]], [[0, 1, 1.0]], 2, people_reliability=0.5)
    empty = fit_judge_bradley_terry(np.zeros((0, 2)), np.zeros((0, 3)), 3)
    assert list(empty.scores) == [0.0, 0.0, 0.0]
    assert judge_log_posterior(np.zeros(2), 0.75, [[0, 1]], [[0, 1, 1.0]]) < 0


def test_wilson_interval_matches_the_formula_and_known_values() -> None:
    share, low, high = agreement_interval(8, 10)
    assert share == 0.8 and low == pytest.approx(0.4902, abs=1e-4) and high == pytest.approx(0.9433, abs=1e-4)
    assert agreement_interval(0, 5)[1] == 0.0 and agreement_interval(5, 5)[2] == 1.0
    assert all(math.isnan(v) for v in agreement_interval(0, 0))
    with pytest.raises(ValueError, match="0 ≤ agree ≤ total"):
        agreement_interval(3, 2)
    # Coverage from seeded draws: a 95 % interval holds the true share about 95 % of the time.
    rng = np.random.default_rng(5)
    hits = sum(lo <= 0.75 <= hi for _, lo, hi in (agreement_interval(rng.binomial(40, 0.75), 40) for _ in range(2000)))
    assert 0.93 < hits / 2000 < 0.98


def test_agreement_model_matches_the_penalised_likelihood_and_finds_the_bad_tag() -> None:
    rng = np.random.default_rng(2)
    m = rng.exponential(1.0, 400)
    tag = rng.integers(0, 3, 400)
    truth = 1.0 * m + np.array([0.8, 0.8, -1.0])[tag]
    agree = (rng.random(400) < 1 / (1 + np.exp(-truth))).astype(float)
    model = fit_agreement_model(m, agree, tag, 3)

    def negative(w: np.ndarray) -> float:
        total = 0.0
        for mi, ti, yi in zip(m, tag, agree, strict=True):
            z = w[0] + w[1] * mi + w[2 + ti]
            total += yi * math.log(sig(z)) + (1 - yi) * math.log(1 - sig(z))
        total -= 0.5 * ((w[0] - 0.5) ** 2 + (w[1] - 1.0) ** 2) + 0.5 * 2.0 * float(np.sum(w[2:] ** 2))
        return -total

    ref = minimize(negative, np.zeros(5), method="BFGS", options={"gtol": 1e-8})
    np.testing.assert_allclose([model.intercept, model.slope, *model.tag_effects], ref.x, atol=1e-4)
    assert model.tag_effects[2] < model.tag_effects[0] - 0.8, "the tag where the judge errs stands out"
    p = model.probability([0.1, 0.1, 3.0], [2, 0, 2])
    assert p[0] < p[1] < p[2]
    assert model.probability(0.5, 7) == pytest.approx(model.probability(0.5, -1)), "unknown tags: no effect"
    empty = fit_agreement_model([], [])
    assert empty.intercept == 0.5 and empty.slope == 1.0, "without data: the prior (agreement grows with margin)"
