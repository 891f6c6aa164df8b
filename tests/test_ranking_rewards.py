"""Per-sample RL rewards from scores and win matrices."""

import numpy as np
import pytest
from scipy.special import expit

from flowlab.ranking import fit_bradley_terry, rewards_from_result, rewards_from_scores, rewards_from_wins


def test_centred_rewards_are_normalised_with_a_floor():
    scores = np.array([2.0, 0.0, -2.0])
    np.testing.assert_allclose(rewards_from_scores(scores), scores / scores.std())
    np.testing.assert_allclose(rewards_from_scores(scores, normalise=False), scores)
    tiny = np.array([0.01, 0.0, -0.01])
    np.testing.assert_allclose(rewards_from_scores(tiny), tiny / 0.5)  # the floor, not the tiny std
    np.testing.assert_allclose(rewards_from_scores(tiny, floor=0.001), tiny / tiny.std())


def test_win_rate_rewards_match_a_loop():
    scores = np.array([1.0, 0.2, -0.5, -0.7])
    expected = np.array([np.mean([expit(scores[i] - scores[j]) for j in range(4) if j != i]) for i in range(4)])
    got = rewards_from_scores(scores, method="win_rate", normalise=False)
    np.testing.assert_allclose(got, expected - expected.mean())
    assert np.all(np.diff(got) < 0)


def test_rewards_from_wins_and_results():
    wins = np.array([[0, 4, 5], [1, 0, 3], [0, 2, 0]], dtype=float)
    fit = fit_bradley_terry(wins)
    np.testing.assert_allclose(rewards_from_wins(wins), rewards_from_result(fit))
    rates = rewards_from_wins(wins, method="win_rate", normalise=False)
    raw = (wins.sum(1) + 0.5) / (wins.sum(1) + wins.sum(0) + 1)
    np.testing.assert_allclose(rates, raw - raw.mean())


def test_edge_cases_have_defined_answers():
    np.testing.assert_array_equal(rewards_from_wins(np.zeros((3, 3))), np.zeros(3))
    np.testing.assert_array_equal(rewards_from_wins(np.zeros((3, 3)), method="win_rate"), np.zeros(3))
    np.testing.assert_array_equal(rewards_from_scores(np.array([0.7])), [0.0])
    assert rewards_from_scores(np.array([])).shape == (0,)
    with pytest.raises(ValueError, match="method"):
        rewards_from_scores(np.zeros(2), method="rank")
    with pytest.raises(ValueError, match="floor"):
        rewards_from_scores(np.zeros(2), floor=0.0)
    with pytest.raises(ValueError, match="NaN"):
        rewards_from_scores(np.array([np.nan, 0.0]))
