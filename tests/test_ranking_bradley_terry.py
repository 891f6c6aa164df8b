"""Bradley–Terry fits against golden values, a slow direct likelihood maximisation, and edge cases."""

import itertools

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.special import expit

from flowlab.ranking import (
    DEFAULT_PRIOR,
    LiveBradleyTerry,
    elo_from_scores,
    fit_bradley_terry,
    simulate_comparisons,
    simulate_scores,
    win_matrix,
)

SMALL = np.array([[0, 3, 1, 2], [1, 0, 2, 2], [2, 1, 0, 3], [0, 1, 1, 0]], dtype=float)


def reference_fit(wins, prior=0.0):
    """Obviously-correct MAP/MLE: minimise the negative log-posterior written vote cell by vote cell."""
    n = len(wins)

    def nll(theta):
        total = 0.0
        for i, j in itertools.product(range(n), range(n)):
            if wins[i, j]:
                total -= wins[i, j] * np.log(expit(theta[i] - theta[j]))
        return total + 0.5 * prior * theta @ theta + 0.5 * (theta.sum()) ** 2  # pin the mean when prior=0

    theta = minimize(nll, np.zeros(n), method="BFGS", options={"gtol": 1e-10}).x
    return theta - theta.mean()


def reference_davidson(comps, n, prior):
    def nll(params):
        theta, log_nu = params[:n], params[n]
        total = 0.0
        for w, lose, tie in comps:
            d = theta[w] - theta[lose]
            den = np.exp(d / 2) + np.exp(-d / 2) + np.exp(log_nu)
            total -= (log_nu if tie else d / 2) - np.log(den)
        return total + 0.5 * prior * (theta @ theta + log_nu**2)

    params = minimize(nll, np.zeros(n + 1), method="BFGS", options={"gtol": 1e-10}).x
    return params[:n] - params[:n].mean(), np.exp(params[n])


def test_golden_values_small_matrix():
    mle = fit_bradley_terry(SMALL, prior=0.0)
    np.testing.assert_allclose(mle.scores, [0.63977886, 0.06398367, 0.27538987, -0.97915241], atol=1e-7)
    np.testing.assert_allclose(mle.std_errors, [0.55422749, 0.50430227, 0.51062177, 0.60997213], atol=1e-7)
    np.testing.assert_array_equal(mle.ranks, [1, 3, 2, 4])
    assert mle.log_likelihood == pytest.approx(-11.441725085659687, abs=1e-9)
    map_fit = fit_bradley_terry(SMALL)
    np.testing.assert_allclose(map_fit.scores, [0.6085997, 0.05769052, 0.26577099, -0.93206121], atol=1e-7)


@pytest.mark.parametrize("prior", [0.0, DEFAULT_PRIOR, 2.0])
def test_matches_direct_likelihood_maximisation(prior):
    fit = fit_bradley_terry(SMALL, prior=prior)
    np.testing.assert_allclose(fit.scores, reference_fit(SMALL, prior), atol=1e-6)
    assert fit.converged
    assert abs(fit.scores.mean()) < 1e-12


def test_large_sparse_path_matches_dense_path():
    theta = simulate_scores(400, rng=1)
    comps = simulate_comparisons(theta, 20_000, rng=2)
    sparse = fit_bradley_terry(comps)  # n > 250 takes the conjugate-gradient path
    from flowlab.ranking import _bradley_terry

    limit = _bradley_terry._DENSE_LIMIT
    try:
        _bradley_terry._DENSE_LIMIT = 10_000
        dense = fit_bradley_terry(comps)
    finally:
        _bradley_terry._DENSE_LIMIT = limit
    np.testing.assert_allclose(sparse.scores, dense.scores, atol=1e-8)
    np.testing.assert_allclose(sparse.std_errors, dense.std_errors, atol=1e-10)


def test_comparisons_and_matrix_give_the_same_fit():
    comps = simulate_comparisons(simulate_scores(8, rng=0), 300, rng=1)
    a = fit_bradley_terry(comps)
    b = fit_bradley_terry(win_matrix(comps))
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-10)
    np.testing.assert_allclose(a.ci_high, b.ci_high, atol=1e-10)


def test_result_fields_are_consistent():
    fit = fit_bradley_terry(SMALL)
    np.testing.assert_allclose(fit.elo, 1000 + 400 / np.log(10) * fit.scores)
    np.testing.assert_allclose(elo_from_scores(fit.ci_low), fit.elo_ci_low)
    assert np.all(fit.ci_low < fit.scores) and np.all(fit.scores < fit.ci_high)
    assert np.all(fit.rank_low <= fit.ranks) and np.all(fit.ranks <= fit.rank_high)
    np.testing.assert_allclose(fit.wins, SMALL.sum(axis=1))
    np.testing.assert_allclose(fit.votes, SMALL.sum(axis=1) + SMALL.sum(axis=0))
    assert fit.n_comparisons == SMALL.sum()
    assert fit.win_probability(0, 3) == pytest.approx(expit(fit.scores[0] - fit.scores[3]))


def test_recovers_known_scores():
    theta = simulate_scores(20, rng=5)
    fit = fit_bradley_terry(simulate_comparisons(theta, 40_000, rng=6))
    np.testing.assert_allclose(fit.scores, theta, atol=0.1)


def test_warm_start_converges_in_fewer_iterations_to_the_same_answer():
    theta = simulate_scores(50, rng=0)
    comps = simulate_comparisons(theta, 5000, rng=1)
    first = fit_bradley_terry(comps[:4900])
    cold = fit_bradley_terry(comps)
    warm = fit_bradley_terry(comps, init=first.scores)
    np.testing.assert_allclose(warm.scores, cold.scores, atol=1e-9)
    assert warm.iterations < cold.iterations


def test_live_refit_matches_a_fresh_fit():
    comps = simulate_comparisons(simulate_scores(10, rng=0), 500, rng=1)
    live = LiveBradleyTerry(10)
    live.add_votes(comps[:300])
    first = live.result()
    assert live.result() is first  # cached until new votes arrive
    live.add_votes(comps[300:])
    live.add_vote(0, 1)
    expected = fit_bradley_terry(np.vstack([comps, [[0, 1]]]), 10)
    np.testing.assert_allclose(live.result().scores, expected.scores, atol=1e-9)


# ---------------------------------------------------------------- edge cases


def test_no_votes_give_zero_scores_and_wide_finite_intervals():
    fit = fit_bradley_terry(np.zeros((5, 5)))
    np.testing.assert_array_equal(fit.scores, np.zeros(5))
    assert np.all(np.isfinite(fit.ci_low)) and np.all(np.isfinite(fit.ci_high))
    assert np.all(fit.ci_high - fit.ci_low > 10)  # the N(0, 10) prior: ±1.96·√(10·4/5)
    np.testing.assert_array_equal(fit.ranks, np.ones(5))
    np.testing.assert_array_equal(fit.rank_low, np.ones(5))
    np.testing.assert_array_equal(fit.rank_high, np.full(5, 5))
    for interval in ("sandwich", "bootstrap"):
        other = fit_bradley_terry(np.zeros((5, 5)), interval=interval, n_bootstrap=50, rng=0)
        assert np.all(np.isfinite(other.ci_low)) and np.all(other.ci_high - other.ci_low > 1)


def test_no_votes_as_an_empty_comparison_list():
    fit = fit_bradley_terry(np.zeros((0, 2), dtype=int), n_items=3)
    np.testing.assert_array_equal(fit.scores, np.zeros(3))


def test_zero_datapoints_and_one_datapoint():
    assert fit_bradley_terry(np.zeros((0, 0))).scores.shape == (0,)
    one = fit_bradley_terry(np.zeros((1, 1)))
    np.testing.assert_array_equal(one.scores, [0.0])
    np.testing.assert_array_equal(one.ranks, [1])
    assert one.ci_low[0] == one.ci_high[0] == 0.0


def test_a_datapoint_that_never_lost_or_never_won():
    wins = np.array([[0, 5, 5], [0, 0, 3], [0, 2, 0]], dtype=float)  # 0 never lost
    fit = fit_bradley_terry(wins)
    assert np.all(np.isfinite(fit.scores)) and fit.ranks[0] == 1
    with pytest.raises(ValueError, match="prior"):
        fit_bradley_terry(wins, prior=0.0)
    never_won = fit_bradley_terry(wins.T)
    assert np.all(np.isfinite(never_won.scores)) and never_won.ranks[0] == 3


def test_disconnected_comparison_graph():
    wins = np.zeros((4, 4))
    wins[0, 1], wins[1, 0] = 3, 1
    wins[2, 3], wins[3, 2] = 1, 3
    fit = fit_bradley_terry(wins)
    assert np.all(np.isfinite(fit.scores))
    # Each component is centred by the prior, so the two groups' winners tie.
    assert fit.scores[0] == pytest.approx(fit.scores[3])
    with pytest.raises(ValueError, match="disconnected"):
        fit_bradley_terry(wins, prior=0.0)


def test_all_ties_give_equal_scores():
    comps = np.array([[0, 1, 1], [1, 2, 1], [2, 0, 1], [0, 2, 1]])
    fit = fit_bradley_terry(comps)
    np.testing.assert_allclose(fit.scores, 0.0, atol=1e-12)
    mle = fit_bradley_terry(comps, prior=0.0)  # ties are evidence both ways, so the MLE exists
    np.testing.assert_allclose(mle.scores, 0.0, atol=1e-12)
    davidson = fit_bradley_terry(comps, ties="davidson")
    np.testing.assert_allclose(davidson.scores, 0.0, atol=1e-9)
    assert davidson.tie_strength > 1


@pytest.mark.parametrize(
    ("data", "kwargs", "message"),
    [
        (np.array([[0, np.nan], [1, 0]]), {}, "NaN"),
        (np.array([[0, -1.0], [1, 0]]), {}, "negative"),
        (np.array([[1.0, 1], [1, 0]]), {}, "diagonal"),
        (np.zeros((3, 4)), {}, "shape"),
        (SMALL, {"prior": -1}, "prior"),
        (SMALL, {"prior": float("nan")}, "prior"),
        (SMALL, {"ties": "rao"}, "ties"),
        (SMALL, {"interval": "profile"}, "interval"),
        (SMALL, {"level": 1.5}, "level"),
        (SMALL, {"init": np.zeros(3)}, "init"),
        (SMALL, {"init": np.full(4, np.inf)}, "init"),
        (SMALL, {"ties": "davidson"}, "tie_counts"),
        (SMALL, {"weights": np.ones(4)}, "weights"),
        (SMALL, {"n_items": 5}, "n_items"),
        (np.array([[0, 1], [1, 9]]), {"n_items": 3}, "n_items"),
    ],
)
def test_bad_input_raises_a_clear_error(data, kwargs, message):
    with pytest.raises(ValueError, match=message):
        fit_bradley_terry(data, **kwargs)


# ---------------------------------------------------------------- weights and ties


def test_weights_equal_repeating_votes():
    comps = np.array([[0, 1], [1, 2], [2, 0], [0, 2]])
    weighted = fit_bradley_terry(comps, weights=[3, 1, 1, 2])
    repeated = fit_bradley_terry(np.repeat(comps, [3, 1, 1, 2], axis=0))
    np.testing.assert_allclose(weighted.scores, repeated.scores, atol=1e-10)
    with pytest.raises(ValueError, match="weights"):
        fit_bradley_terry(comps, weights=[1, 1])


def test_davidson_matches_direct_likelihood_maximisation():
    comps = np.array([[0, 1, 0], [1, 2, 0], [2, 0, 0], [0, 1, 1], [1, 2, 1], [0, 2, 0], [2, 1, 0], [1, 0, 0]])
    fit = fit_bradley_terry(comps, ties="davidson")
    theta, nu = reference_davidson(comps, 3, DEFAULT_PRIOR)
    np.testing.assert_allclose(fit.scores, theta, atol=1e-6)
    assert fit.tie_strength == pytest.approx(nu, rel=1e-5)


def test_davidson_recovers_the_tie_parameter():
    theta = simulate_scores(10, rng=0)
    comps = simulate_comparisons(theta, 30_000, tie_strength=0.7, rng=1)
    fit = fit_bradley_terry(comps, ties="davidson")
    assert fit.tie_strength == pytest.approx(0.7, abs=0.05)
    np.testing.assert_allclose(fit.scores, theta, atol=0.1)
    # The same data as a win matrix (ties halved) plus tie counts gives the same fit.
    wins = win_matrix(comps)
    tie_idx = comps[comps[:, 2] == 1]
    ties = np.zeros((10, 10))
    np.add.at(ties, (tie_idx[:, 0], tie_idx[:, 1]), 1)
    ties = ties + ties.T
    again = fit_bradley_terry(wins, ties="davidson", tie_counts=ties)
    np.testing.assert_allclose(again.scores, fit.scores, atol=1e-8)
    assert again.tie_strength == pytest.approx(fit.tie_strength)


def test_davidson_without_ties_and_without_prior_is_refused():
    with pytest.raises(ValueError, match="at least one tie"):
        fit_bradley_terry(np.array([[0, 1, 0], [1, 0, 0]]), ties="davidson", prior=0.0)


def test_davidson_mle_with_only_ties_explains_itself() -> None:
    import pytest

    from flowlab.ranking import fit_bradley_terry

    all_ties = np.array([[0, 1, 1], [1, 2, 1], [2, 0, 1], [0, 1, 1]])
    with pytest.raises(ValueError, match="decided vote"):
        fit_bradley_terry(all_ties, 3, ties="davidson", prior=0.0)


def test_auto_prior_finds_the_spread_of_the_scores():
    """Empirical Bayes: the fitted prior's variance is close to the variance of the true scores."""
    for spread in (0.5, 2.0):
        theta = np.random.default_rng(1).normal(0, spread, 40)
        votes = simulate_comparisons(theta, 8000, rng=2)
        fit = fit_bradley_terry(votes, 40, prior="auto")
        assert 1.0 / fit.prior == pytest.approx(np.var(theta, ddof=1), rel=0.3)


def test_auto_prior_without_votes_is_the_default_and_widens_for_its_own_uncertainty():
    empty = fit_bradley_terry(np.zeros((0, 2), dtype=np.int64), 4, prior="auto")
    assert empty.prior == DEFAULT_PRIOR
    votes = simulate_comparisons(np.linspace(-1, 1, 10), 400, rng=5)
    auto = fit_bradley_terry(votes, 10, prior="auto")
    plug_in = fit_bradley_terry(votes, 10, prior=auto.prior)
    np.testing.assert_allclose(auto.scores, plug_in.scores, atol=1e-5)
    assert np.all(auto.std_errors >= plug_in.std_errors - 1e-12)
    assert np.max(auto.std_errors - plug_in.std_errors) > 1e-3, "the prior's own uncertainty adds width"


def test_auto_prior_is_checked():
    with pytest.raises(ValueError, match="or 'auto'"):
        fit_bradley_terry([[0, 1]], prior="fitted")  # type: ignore[arg-type]
