"""Annotator quality: gold agreement, consensus agreement, spammer flags and Crowd-BT."""

import numpy as np
import pytest
from scipy.stats import kendalltau

from flowlab.ranking import (
    annotator_quality,
    consensus_agreement,
    fit_bradley_terry,
    fit_crowd_bradley_terry,
    gold_agreement,
    simulate_crowd_votes,
    simulate_scores,
)


def test_gold_agreement_hand_example():
    gold = np.array([[0, 1, 0], [2, 3, 0], [4, 5, 1]])
    votes = np.array(
        [
            [0, 0, 1, 0],  # right
            [0, 3, 2, 0],  # wrong
            [0, 4, 5, 1],  # tie on a tie: right
            [1, 1, 0, 0],  # wrong
            [1, 2, 3, 1],  # tie on a decided pair: half
            [1, 0, 2, 0],  # not a gold pair: ignored
        ]
    )
    agreement, count = gold_agreement(votes, gold, n_annotators=3)
    np.testing.assert_array_equal(count, [3, 2, 0])
    np.testing.assert_allclose(agreement[:2], [2 / 3, 0.25])
    assert np.isnan(agreement[2])  # no gold votes: unknown, not zero


def test_gold_with_contradicting_answers_is_refused():
    with pytest.raises(ValueError, match="two different answers"):
        gold_agreement(np.array([[0, 0, 1]]), np.array([[0, 1], [1, 0]]))


def test_consensus_agreement_separates_spammers():
    theta = simulate_scores(30, spread=1.5, rng=0)
    votes, spammer = simulate_crowd_votes(theta, 6000, n_annotators=10, spammer_share=0.3, rng=1)
    agreement, evidence, count = consensus_agreement(votes)
    assert count.sum() == 6000
    assert agreement[spammer].max() < agreement[~spammer].min()
    assert np.all(evidence[spammer] < 0) and np.all(evidence[~spammer] > 0)


def test_spammer_flag_from_consensus_and_from_gold():
    theta = simulate_scores(30, spread=1.5, rng=2)
    votes, spammer = simulate_crowd_votes(theta, 6000, n_annotators=10, spammer_share=0.2, rng=3)
    quality = annotator_quality(votes)
    np.testing.assert_array_equal(quality.spammer, spammer)
    # Gold alone: annotator 0 answers five gold pairs wrongly, annotator 1 five others rightly. The
    # pairs share no datapoints, so the consensus knows nothing and only the gold test can flag.
    gold = np.array([[2 * k, 2 * k + 1] for k in range(10)])
    wrong = np.column_stack([np.zeros(5, int), gold[:5, 1], gold[:5, 0]])
    right = np.column_stack([np.ones(5, int), gold[5:, 0], gold[5:, 1]])
    quality = annotator_quality(np.vstack([wrong, right]), gold=gold)
    np.testing.assert_array_equal(quality.spammer, [True, False])
    np.testing.assert_allclose(quality.gold_agreement, [0.0, 1.0])


def test_quality_with_no_votes():
    quality = annotator_quality(np.zeros((0, 3), int), n_items=3, n_annotators=2)
    np.testing.assert_array_equal(quality.n_votes, [0, 0])
    assert not quality.spammer.any()


def test_crowd_bt_downweights_spammers_and_beats_the_plain_fit():
    taus = []
    for seed in range(3):
        theta = simulate_scores(40, rng=seed)
        votes, spammer = simulate_crowd_votes(theta, 2000, n_annotators=20, spammer_share=0.2, rng=seed + 50)
        crowd = fit_crowd_bradley_terry(votes)
        plain = fit_bradley_terry(votes[:, 1:], 40)
        assert crowd.reliability[spammer].max() < crowd.reliability[~spammer].min()
        taus.append((kendalltau(crowd.fit.scores, theta)[0], kendalltau(plain.scores, theta)[0]))
    crowd_tau, plain_tau = np.mean(taus, axis=0)
    assert crowd_tau > plain_tau


def test_crowd_bt_equals_plain_bt_when_everyone_is_careful():
    theta = simulate_scores(10, rng=0)
    votes, _ = simulate_crowd_votes(theta, 3000, n_annotators=5, spammer_share=0.0, rng=1)
    crowd = fit_crowd_bradley_terry(votes)
    plain = fit_bradley_terry(votes[:, 1:], 10)
    assert kendalltau(crowd.fit.scores, plain.scores)[0] > 0.95
    assert crowd.converged


@pytest.mark.parametrize(
    ("votes", "message"),
    [
        (np.array([[0, 1]]), "shape"),
        (np.array([[0, 1, 1]]), "same datapoint"),
        (np.array([[-1, 0, 1]]), "negative"),
        (np.array([[0.0, 1.0, np.nan]]), "NaN"),
        (np.array([[0, 1, 2, 5]]), "tie column"),
    ],
)
def test_bad_votes_raise_clear_errors(votes, message):
    with pytest.raises(ValueError, match=message):
        consensus_agreement(votes)


def test_crowd_bt_with_a_flat_prior_and_an_annotator_without_decided_votes_stays_finite() -> None:
    from flowlab.ranking import fit_crowd_bradley_terry

    votes = np.array([[0, 0, 1, 0], [0, 1, 2, 0], [0, 0, 2, 0], [1, 0, 1, 1]])  # annotator 1 only tied
    result = fit_crowd_bradley_terry(votes, 3, 2, reliability_prior=(1, 1))
    assert np.all(np.isfinite(result.reliability))


def test_crowd_bt_intervals_do_not_count_random_votes_as_information() -> None:
    """Half the votes come from random clickers: intervals must not shrink below what the honest half
    supports (the weighted refit's own Fisher information gave ~60 % coverage here)."""
    from flowlab.ranking import fit_crowd_bradley_terry

    covered = []
    for seed in range(10):
        rng = np.random.default_rng(seed)
        theta = rng.normal(0, 1, 8)
        theta -= theta.mean()
        rows = []
        for k in range(600):
            i, j = rng.choice(8, 2, replace=False)
            honest = k < 300
            i_wins = rng.random() < 1 / (1 + np.exp(-(theta[i] - theta[j]))) if honest else rng.random() < 0.5
            rows.append((k % 5 + (0 if honest else 5), i if i_wins else j, j if i_wins else i, 0))
        fit = fit_crowd_bradley_terry(np.array(rows), 8, 10).fit
        covered.append(np.mean((fit.ci_low <= theta) & (theta <= fit.ci_high)))
    assert np.mean(covered) >= 0.8


def _crowd_data(seed: int):
    rng = np.random.default_rng(seed)
    theta = rng.normal(0, 1, 50)
    theta -= theta.mean()
    votes, spam = simulate_crowd_votes(theta, 2000, n_annotators=20, spammer_share=0.2, rng=rng)
    return theta, votes, spam


def test_crowd_bt_puts_careful_annotators_at_full_reliability_and_scores_on_their_scale() -> None:
    """The model sees only the product of 2η − 1 and the score gaps; left alone, EM put careful annotators
    near η = 0.92 and stretched the scores 1.4×. Anchored to the careful, both come out right."""
    reliability, slopes = [], []
    for seed in range(4):
        theta, votes, spam = _crowd_data(seed)
        result = fit_crowd_bradley_terry(votes, 50, 20)
        reliability.append(result.reliability[~spam].mean())
        slopes.append(np.polyfit(theta, result.fit.scores, 1)[0])
        assert result.reliability[spam].mean() < 0.65
    assert np.mean(reliability) > 0.96
    assert np.mean(slopes) < 1.2


@pytest.mark.parametrize("interval", ["sandwich", "bootstrap"])
def test_crowd_bt_sandwich_and_bootstrap_see_the_reliabilities(interval: str) -> None:
    """Their errors were a plain weighted fit's, as if every vote were known truthful or not (coverage 71 % and
    67 %); from the observed likelihood under the fitted reliabilities they come out like the Wald errors."""
    _, votes, _ = _crowd_data(7)
    wald = fit_crowd_bradley_terry(votes, 50, 20)
    other = fit_crowd_bradley_terry(votes, 50, 20, interval=interval, n_bootstrap=60, rng=1)
    assert other.fit.interval == interval
    np.testing.assert_allclose(other.fit.scores, wald.fit.scores)
    ratio = np.median(other.fit.std_errors / wald.fit.std_errors)
    assert 0.8 < ratio < 1.25


def test_crowd_bt_refuses_an_unknown_interval() -> None:
    _, votes, _ = _crowd_data(0)
    with pytest.raises(ValueError, match="interval must be"):
        fit_crowd_bradley_terry(votes, 50, 20, interval="profile")
