"""Wald, sandwich and bootstrap intervals, and rank ranges."""

import numpy as np
import pytest
from scipy.special import expit

from flowlab.ranking import fit_bradley_terry, rank_ranges, simulate_comparisons, simulate_scores

SMALL = np.array([[0, 3, 1, 2], [1, 0, 2, 2], [2, 1, 0, 3], [0, 1, 1, 0]], dtype=float)


def numerical_covariance(wins, theta, prior):
    """Reference: invert a finite-difference Hessian of the negative log-posterior, then centre."""
    n = len(theta)

    def grad(t):
        g = prior * t.copy()
        for i in range(n):
            for j in range(n):
                if wins[i, j]:
                    p = expit(t[i] - t[j])
                    g[i] -= wins[i, j] * (1 - p)
                    g[j] += wins[i, j] * (1 - p)
        return g

    eps = 1e-6
    hess = np.array([(grad(theta + eps * e) - grad(theta - eps * e)) / (2 * eps) for e in np.eye(n)])
    centre = np.eye(n) - 1.0 / n
    if prior == 0:
        return centre @ np.linalg.pinv(hess) @ centre
    return centre @ np.linalg.inv(hess) @ centre


@pytest.mark.parametrize("prior", [0.0, 0.1])
def test_wald_covariance_matches_a_numerical_hessian(prior):
    fit = fit_bradley_terry(SMALL, prior=prior)
    np.testing.assert_allclose(fit.covariance, numerical_covariance(SMALL, fit.scores, prior), atol=1e-6)
    np.testing.assert_allclose(fit.ci_high - fit.scores, 1.959964 * fit.std_errors, rtol=1e-6)


def test_level_changes_the_width():
    narrow = fit_bradley_terry(SMALL, level=0.5)
    wide = fit_bradley_terry(SMALL, level=0.99)
    assert np.all(wide.ci_high - wide.ci_low > narrow.ci_high - narrow.ci_low)


def test_sandwich_agrees_with_wald_when_the_model_holds():
    comps = simulate_comparisons(simulate_scores(10, rng=0), 20_000, rng=1)
    wald = fit_bradley_terry(comps)
    sandwich = fit_bradley_terry(comps, interval="sandwich")
    np.testing.assert_allclose(sandwich.std_errors, wald.std_errors, rtol=0.1)
    np.testing.assert_allclose(sandwich.scores, wald.scores)


def test_sandwich_is_wider_when_votes_are_overdispersed():
    # Every pair's votes split 50:50 in identical blocks, duplicated: more spread than the model's.
    comps = simulate_comparisons(simulate_scores(6, rng=0), 300, rng=1)
    clustered = np.repeat(comps, 10, axis=0)
    wald = fit_bradley_terry(clustered)
    sandwich = fit_bradley_terry(clustered, interval="sandwich")
    assert sandwich.std_errors.mean() == pytest.approx(wald.std_errors.mean(), rel=0.2)


def test_bootstrap_is_reproducible_and_close_to_wald():
    comps = simulate_comparisons(simulate_scores(8, rng=0), 4000, rng=1)
    boot_a = fit_bradley_terry(comps, interval="bootstrap", n_bootstrap=200, rng=7)
    boot_b = fit_bradley_terry(comps, interval="bootstrap", n_bootstrap=200, rng=7)
    np.testing.assert_array_equal(boot_a.ci_low, boot_b.ci_low)
    wald = fit_bradley_terry(comps)
    np.testing.assert_allclose(boot_a.std_errors, wald.std_errors, rtol=0.25)
    assert boot_a.covariance is None
    assert np.all(boot_a.rank_low <= boot_a.ranks) and np.all(boot_a.ranks <= boot_a.rank_high)
    with pytest.raises(ValueError, match="n_bootstrap"):
        fit_bradley_terry(comps, interval="bootstrap", n_bootstrap=1)


def test_davidson_sandwich_and_wald_agree_under_the_model():
    comps = simulate_comparisons(simulate_scores(6, rng=0), 20_000, tie_strength=0.5, rng=1)
    wald = fit_bradley_terry(comps, ties="davidson")
    sandwich = fit_bradley_terry(comps, ties="davidson", interval="sandwich")
    np.testing.assert_allclose(sandwich.std_errors, wald.std_errors, rtol=0.1)


def test_intervals_cover_the_truth_about_95_percent():
    hits = []
    for seed in range(60):
        theta = simulate_scores(20, rng=seed)
        fit = fit_bradley_terry(simulate_comparisons(theta, 3000, rng=seed + 1000))
        hits.append(np.mean((fit.ci_low <= theta) & (theta <= fit.ci_high)))
    assert 0.92 <= np.mean(hits) <= 0.98


def test_rank_ranges_hand_example():
    scores = np.array([3.0, 0.1, 0.0, -3.0])
    cov = np.eye(4) * 0.01
    low, high = rank_ranges(scores, cov)
    np.testing.assert_array_equal(low, [1, 2, 2, 4])
    np.testing.assert_array_equal(high, [1, 3, 3, 4])
    low, high = rank_ranges(scores, np.eye(4) * 100.0)
    np.testing.assert_array_equal(low, [1, 1, 1, 1])
    np.testing.assert_array_equal(high, [4, 4, 4, 4])
    with pytest.raises(ValueError, match="covariance"):
        rank_ranges(scores, np.eye(3))


def test_rank_ranges_narrow_with_more_votes():
    theta = simulate_scores(10, spread=2.0, rng=0)
    few = fit_bradley_terry(simulate_comparisons(theta, 200, rng=1))
    many = fit_bradley_terry(simulate_comparisons(theta, 20_000, rng=1))
    assert (many.rank_high - many.rank_low).sum() < (few.rank_high - few.rank_low).sum()


def test_very_large_items_fall_back_to_diagonal_intervals(monkeypatch):
    from flowlab.ranking import _bradley_terry

    comps = simulate_comparisons(simulate_scores(40, rng=0), 20_000, rng=1)
    exact = fit_bradley_terry(comps)
    monkeypatch.setattr(_bradley_terry, "_FULL_COVARIANCE_LIMIT", 10)
    approx = fit_bradley_terry(comps)
    assert approx.covariance is None
    np.testing.assert_allclose(approx.scores, exact.scores)
    np.testing.assert_allclose(approx.std_errors, exact.std_errors, rtol=0.05)
    assert np.all(approx.rank_low <= approx.ranks) and np.all(approx.ranks <= approx.rank_high)
    sandwich = fit_bradley_terry(comps, interval="sandwich")
    np.testing.assert_allclose(sandwich.std_errors, exact.std_errors, rtol=0.1)
    # Selection still works without a covariance.
    from flowlab.ranking import select_pairs, win_matrix

    assert select_pairs(win_matrix(comps, 40), 4, fit=approx, rng=0).shape == (4, 2)


def _davidson_replicates(n_sims: int, interval: str):
    theta = np.linspace(-1.5, 1.5, 12)
    theta -= theta.mean()
    fits = [
        fit_bradley_terry(
            simulate_comparisons(theta, 1500, tie_strength=0.8, rng=seed),
            12,
            interval=interval,  # type: ignore[arg-type]
            n_bootstrap=60,
            rng=seed,
        )
        for seed in range(n_sims)
    ]
    estimates = np.array([f.scores for f in fits])
    errors = np.array([f.std_errors for f in fits])
    return float(np.mean(errors.mean(axis=0) / estimates.std(axis=0))), fits


@pytest.mark.parametrize("interval", ["sandwich", "bootstrap"])
def test_ties_counted_half_keep_sandwich_and_bootstrap_errors_honest(interval):
    """About a quarter of the votes are ties. Counted as two half votes apiece, the sandwich's meat and the
    bootstrap's resamples saw 1.2× the real spread; as one vote each, their errors match the estimates'
    spread over replicate data sets."""
    ratio, _ = _davidson_replicates(40, interval)
    assert 0.88 < ratio < 1.12


def test_with_known_ties_the_default_interval_is_the_sandwich():
    votes = simulate_comparisons(np.linspace(-1, 1, 6), 600, tie_strength=0.8, rng=3)
    assert fit_bradley_terry(votes, 6).interval == "sandwich"
    assert fit_bradley_terry(votes[:, :2], 6).interval == "wald", "no tie column, no ties"
    assert fit_bradley_terry(votes, 6, ties="davidson").interval == "wald", "ties modelled: the model's information"


def test_bootstrap_gives_an_unvoted_datapoint_the_prior_width():
    votes = simulate_comparisons(np.array([1.0, 0.0, -1.0, 0.0]), 300, rng=1)
    votes = votes[(votes[:, 0] != 3) & (votes[:, 1] != 3)]
    boot = fit_bradley_terry(votes, 4, interval="bootstrap", rng=0)
    wald = fit_bradley_terry(votes, 4)
    width = boot.ci_high - boot.ci_low
    assert width[3] > 2.5 * width[:3].max(), "nothing is known about datapoint 3 but the prior"
    assert width[3] == pytest.approx(wald.ci_high[3] - wald.ci_low[3], rel=0.25)
