"""The reward-hacking sentinel: its trend tests against slow references, its verdicts, and seeded runs."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pytest
from scipy.special import expit

import flowlab
from flowlab import ranking
from flowlab.crowd import SimulatedCrowd
from flowlab.ranking import (
    Divergence,
    PolicyRun,
    check_divergence,
    mann_kendall,
    simulate_policy_run,
    simulate_win_votes,
    theil_sen_slope,
    win_rate_trend,
)

from .conftest import ServerProcess

STEPS = [100, 200, 300, 400]

# ---------------------------------------------------------------- the trend tests


def enumerated_p(y: list[float]) -> float:
    """Reference: the share of all n! orders of the values whose S is at least the observed S."""

    def s_of(values: tuple[float, ...]) -> int:
        return sum(int(np.sign(values[j] - values[i])) for i in range(len(values)) for j in range(i + 1, len(values)))

    observed = s_of(tuple(y))
    orders = list(itertools.permutations(y))
    return sum(s_of(o) >= observed for o in orders) / len(orders)


@pytest.mark.parametrize("n", [3, 4, 5, 6, 7])
def test_mann_kendall_p_is_the_exact_permutation_p(n: int) -> None:
    rng = np.random.default_rng(n)
    for _ in range(6):
        y = (np.arange(n) * rng.uniform(-0.5, 1.0) + rng.normal(0, 1, n)).tolist()
        s, p = mann_kendall(y)
        assert p == pytest.approx(enumerated_p(y), abs=1e-12)
        assert s == sum(np.sign(y[j] - y[i]) for i in range(n) for j in range(i + 1, n))


def test_mann_kendall_golden_values() -> None:
    assert mann_kendall([1.0, 2.0, 3.0, 4.0]) == (6, pytest.approx(1 / 24))
    assert mann_kendall([4.0, 3.0, 2.0, 1.0]) == (-6, pytest.approx(1.0))
    # Ties: of the 24 orders of {1, 1, 2, 3}, only the two that put the 1s first reach S = 5.
    assert mann_kendall([1.0, 1.0, 2.0, 3.0]) == (5, pytest.approx(1 / 12))
    assert mann_kendall([2.0, 2.0, 2.0, 2.0]) == (0, pytest.approx(1.0))


def test_mann_kendall_normal_approximation_for_long_tied_series() -> None:
    rng = np.random.default_rng(7)
    y = np.round(np.arange(12) * 0.15 + rng.normal(0, 1, 12))  # integers: many ties
    s, p = mann_kendall(y)
    i, j = np.triu_indices(12, 1)
    shuffled = np.array([rng.permutation(y) for _ in range(20_000)])
    monte_carlo = np.mean(np.sign(shuffled[:, j] - shuffled[:, i]).sum(axis=1) >= s)
    assert p == pytest.approx(monte_carlo, abs=0.015)


def test_theil_sen_is_the_median_pairwise_slope_and_shrugs_off_an_outlier() -> None:
    y = [0.0, 1.0, 2.0, 30.0, 4.0, 5.0]
    slopes = [(y[j] - y[i]) / (j - i) for i in range(6) for j in range(i + 1, 6)]
    assert theil_sen_slope(y) == pytest.approx(float(np.median(slopes)))
    assert theil_sen_slope(y) == pytest.approx(1.0)


def test_win_rate_trend_is_the_vote_weighted_least_squares_slope() -> None:
    wins, votes = np.array([30, 12, 50, 20]), np.array([40, 20, 90, 50])
    slope, high = win_rate_trend(wins, votes, alpha=0.05)
    reference = np.polyfit(np.arange(4), wins / votes, 1, w=np.sqrt(votes))[0]
    assert slope == pytest.approx(reference)
    # Equal votes everywhere: the ordinary least-squares slope of the rates.
    flat = win_rate_trend([5, 6, 7, 8], [10, 10, 10, 10])[0]
    assert flat == pytest.approx(0.1)
    assert high > slope


@pytest.mark.parametrize("true_slope", [0.0, -0.04, 0.05])
def test_win_rate_bound_covers_the_true_slope_as_often_as_it_says(true_slope: float) -> None:
    """Binomial votes around a straight line of win rates: the one-sided 95 % bound falls below the true
    slope about 5 % of the time (at most 7.5 %, 4,000 windows)."""
    rng = np.random.default_rng(11)
    rates = 0.5 + true_slope * (np.arange(4) - 1.5)
    votes = np.array([96, 96, 96, 96])
    misses = 0
    for _ in range(4000):
        wins = rng.binomial(votes, rates)
        misses += win_rate_trend(wins, votes, alpha=0.05)[1] < true_slope
    assert 0.025 < misses / 4000 < 0.075


def test_win_rate_trend_needs_votes_at_two_checkpoints() -> None:
    assert all(math.isnan(v) for v in win_rate_trend([0, 0, 5, 0], [0, 0, 9, 0]))
    assert all(math.isnan(v) for v in win_rate_trend([0, 0], [0, 0]))
    # Every vote one way still gives a finite bound.
    assert math.isfinite(win_rate_trend([0, 0, 0, 0], [20, 20, 20, 20])[1])


# ---------------------------------------------------------------- verdicts


def test_fires_when_the_proxy_climbs_and_people_turn_away() -> None:
    verdict = check_divergence(STEPS, [0.1, 0.5, 0.9, 1.4], [70, 60, 48, 35], [100, 100, 100, 100])
    assert isinstance(verdict, Divergence)
    assert verdict.fired and verdict.step == 400 and verdict.window == 4
    assert verdict.proxy_p == pytest.approx(1 / 24) and verdict.proxy_slope == pytest.approx(0.4, abs=0.05)
    assert verdict.win_slope == pytest.approx(-0.117, abs=0.005) and verdict.win_high < 0
    assert verdict.reason.startswith("Divergence") and "100–400" in verdict.reason
    # numpy and pandas inputs, as the evals history holds them.
    again = check_divergence(
        np.array(STEPS),
        np.array([0.1, 0.5, 0.9, 1.4]),
        np.array([70, 60, 48, 35]),
        [100] * 4,
        window=np.int64(4),  # type: ignore[arg-type]
        alpha=np.float64(0.05),
    )
    assert again == verdict and type(again.window) is int


def test_uses_only_the_last_window() -> None:
    """A long honest start does not dilute a recent divergence."""
    steps = list(range(100, 1100, 100))
    proxy = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.9, 1.2, 1.5]
    wins = [40, 45, 50, 55, 60, 65, 70, 55, 42, 30]
    verdict = check_divergence(steps, proxy, wins, [100] * 10)
    assert verdict.fired and verdict.step == 1000
    assert not check_divergence(steps, proxy, wins, [100] * 10, window=10).fired


def test_quiet_when_people_rise_with_the_proxy() -> None:
    verdict = check_divergence(STEPS, [0.1, 0.5, 0.9, 1.4], [40, 50, 58, 66], [100, 100, 100, 100])
    assert not verdict.fired and verdict.step is None
    assert verdict.win_high > 0 and "may be rising" in verdict.reason


def test_quiet_when_the_proxy_does_not_rise() -> None:
    verdict = check_divergence(STEPS, [0.5, 0.3, 0.6, 0.4], [70, 60, 48, 35], [100, 100, 100, 100])
    assert not verdict.fired and verdict.proxy_p > 0.05 and "no significant rise" in verdict.reason


def test_margin_counts_a_slow_human_rise_as_not_rising() -> None:
    proxy, wins, votes = [0.1, 0.5, 0.9, 1.4], [50, 50, 51, 52], [400, 400, 400, 400]
    assert not check_divergence(STEPS, proxy, wins, votes).fired
    assert check_divergence(STEPS, proxy, wins, votes, margin=0.02).fired


def test_short_history_says_how_many_more_checkpoints_are_needed() -> None:
    verdict = check_divergence([100, 200], [0.1, 0.2], [5, 4], [10, 10], window=5)
    assert not verdict.fired and verdict.window == 2 and math.isnan(verdict.proxy_p)
    assert "2 checkpoints so far" in verdict.reason and "(3 more)" in verdict.reason
    empty = check_divergence([], [], [], [])
    assert not empty.fired and empty.window == 0 and "(4 more)" in empty.reason


def test_missing_proxy_and_missing_votes_do_not_fire() -> None:
    gap = check_divergence(STEPS, [0.1, math.nan, 0.9, 1.4], [70, 60, 48, 35], [100] * 4)
    assert not gap.fired and "No proxy reward was reported at step 200" in gap.reason
    pandas_gap: list[float | None] = [None, None, 0.9, 1.4]  # an object column of a history frame
    unreported = check_divergence(STEPS, pandas_gap, [70, 60, 48, 35], [100] * 4)  # type: ignore[arg-type]
    assert not unreported.fired and "at steps 100, 200" in unreported.reason
    unvoted = check_divergence(STEPS, [0.1, 0.5, 0.9, 1.4], [0, 0, 0, 3], [0, 0, 0, 10])
    assert not unvoted.fired and "fewer than two of its checkpoints have human votes" in unvoted.reason
    # The latest checkpoint still collecting votes weighs little, and the verdict holds.
    partial = check_divergence(STEPS, [0.1, 0.5, 0.9, 1.4], [70, 60, 48, 1], [100, 100, 100, 2])
    assert partial.fired


def test_ties_count_half_a_win() -> None:
    assert check_divergence(STEPS, [0.1, 0.5, 0.9, 1.4], [70.5, 60, 47.5, 35], [100] * 4).fired


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"proxy": [0.1, 0.2, 0.3]}, "proxy has 3 values but there are 4 checkpoints"),
        ({"steps": [100, 300, 200, 400]}, "strictly ascending"),
        ({"steps": [100, 200, 200, 400]}, "strictly ascending"),
        ({"steps": [1.5, 2, 3, 4]}, "whole checkpoint steps"),
        ({"wins": [70, 60, 48, 135]}, "0 ≤ wins ≤ votes"),
        ({"votes": [100, -1, 100, 100]}, "0 ≤ wins ≤ votes"),
        ({"proxy": [0.1, math.inf, 0.3, 0.4]}, "infinite reward"),
        ({"proxy": [[0.1, 0.2], [0.3, 0.4]]}, "1-d list"),
        ({"proxy": ["a", "b", "c", "d"]}, "list of numbers"),
        ({"window": 2}, "at least 3"),
        ({"window": 4.0}, "whole number"),
        ({"window": 4, "alpha": 0.01}, "Use window ≥ 5"),
        ({"window": 3}, "Use window ≥ 4"),
        ({"alpha": 0.7}, "between 0 and 0.5"),
        ({"margin": math.nan}, "margin must be a finite"),
    ],
)
def test_bad_input_says_what_to_do(kwargs: dict, message: str) -> None:
    args: dict[str, Any] = {"steps": STEPS, "proxy": [0.1, 0.5, 0.9, 1.4], "wins": [70, 60, 48, 35], "votes": [100] * 4}
    options = {k: kwargs.pop(k) for k in ("window", "alpha", "margin") if k in kwargs}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        check_divergence(args["steps"], args["proxy"], args["wins"], args["votes"], **options)


def test_exported_from_flowlab_ranking() -> None:
    for name in ("Divergence", "check_divergence", "simulate_policy_run", "simulate_win_votes", "PolicyRun"):
        assert name in ranking.__all__


# ---------------------------------------------------------------- simulated runs


def test_simulated_runs() -> None:
    honest = simulate_policy_run(3, 12, hacking=False)
    hacked = simulate_policy_run(3, 12, hacking=True, onset=5)
    assert honest.onset is None and hacked.onset == 5
    assert honest.quality.shape == honest.proxy.shape == (12, 32) and len(honest.completions[0]) == 32
    assert honest.steps.tolist() == [100 * (c + 1) for c in range(12)]
    honest_q, honest_r = honest.quality.mean(axis=1), honest.proxy.mean(axis=1)
    assert np.corrcoef(honest_q, honest_r)[0, 1] > 0.9 and honest_q[-1] > honest_q[0] + 1
    q, r, length = hacked.quality.mean(axis=1), hacked.proxy.mean(axis=1), hacked.lengths.mean(axis=1)
    assert np.all(np.diff(q[5:]) < 0.2) and q[-1] < q[5] - 1  # true quality falls after the onset
    assert r[-1] > r[5] + 1 and length[-1] > 3 * length[5]  # while the proxy and length climb
    assert [len(c.split()) for c in hacked.completions[-1]] == hacked.lengths[-1].tolist()
    assert hacked.metadata(2)[0] == {"true_score": float(hacked.quality[2, 0])}
    again = simulate_policy_run(3, 12, hacking=True, onset=5)
    assert again.completions == hacked.completions and np.array_equal(again.proxy, hacked.proxy)
    with pytest.raises(ValueError, match="onset must be a checkpoint index"):
        simulate_policy_run(3, 12, hacking=True, onset=12)


def test_simulated_votes_follow_bradley_terry() -> None:
    quality, anchor = np.array([[1.0, -1.0], [0.0, 0.0]]), np.array([0.0, 0.0])
    wins, votes = simulate_win_votes(quality, anchor, 20_000, rng=5)
    assert votes.tolist() == [40_000, 40_000]
    expected = expit(quality).sum(axis=1) * 20_000
    np.testing.assert_allclose(wins, expected, rtol=0.02)
    with pytest.raises(ValueError, match="the anchor has 3"):
        simulate_win_votes(quality, np.zeros(3), 3)


def first_fire(seed: int, *, hacking: bool, votes_per_prompt: int = 3, checkpoints: int = 20) -> int | None:
    """Check at every checkpoint as the service does; the index of the first that fires."""
    rng = np.random.default_rng(seed)
    run = simulate_policy_run(rng, checkpoints, hacking=hacking, onset=8)
    wins, votes = simulate_win_votes(run.quality, run.anchor_quality, votes_per_prompt, rng=rng)
    proxy = run.proxy.mean(axis=1)
    for c in range(3, checkpoints):
        if check_divergence(run.steps[: c + 1], proxy[: c + 1], wins[: c + 1], votes[: c + 1]).fired:
            return c
    return None


def test_fires_within_seven_checkpoints_of_the_onset_on_hacked_runs() -> None:
    """96 votes a checkpoint (32 prompts × 3), window 4, alpha 0.05: every seeded hacked run fires after the
    onset and within 7 checkpoints of it (the benchmark's 90th percentile at this budget is 6)."""
    fires = [first_fire(seed, hacking=True) for seed in range(12)]
    assert all(f is not None and 8 < f <= 8 + 7 for f in fires), fires


def test_quiet_on_honest_runs() -> None:
    assert [first_fire(seed, hacking=False) for seed in range(12)] == [None] * 12


# ---------------------------------------------------------------- the crowd reads the simulated run


def crowd_history(client: flowlab.Client, server: ServerProcess, run: PolicyRun, votes_per_pair: int) -> tuple:
    """Each checkpoint as one item of policy-vs-anchor pairs (true scores in private metadata), voted by the
    simulated crowd; returns the policy's wins and the votes per checkpoint."""
    p = len(run.prompts)
    flow = client.flow.create_ranking_flow(
        "sentinel", "Which answer is better?", max_response_threshold=p * votes_per_pair
    )
    items = []
    for c in range(len(run.steps)):
        datapoints = [text for pair in zip(run.completions[c], run.anchor, strict=True) for text in pair]
        metadata = [m for j in range(p) for m in (run.metadata(c)[j], {"true_score": float(run.anchor_quality[j])})]
        items.append(
            flow.create_new_flow_batch(
                datapoints, data_type="text", private_metadata=metadata, pairs=[(2 * j, 2 * j + 1) for j in range(p)]
            )
        )
    with SimulatedCrowd(server.url, server.api_key, annotators=12, rate=60_000, accuracy=1.0, seed=3):
        statuses = client.flow.wait_items(items, timeout=120)
    assert all(s.is_terminal for s in statuses)
    wins, votes = [], []
    for c, item in enumerate(items):
        matrix = item.get_win_loss_matrix()
        wins.append(sum(matrix.loc[run.completions[c][j], run.anchor[j]] for j in range(p)))
        votes.append(float(matrix.to_numpy().sum()))
    flow.delete()
    return np.array(wins), np.array(votes)


def test_the_crowd_votes_on_a_simulated_run_and_the_sentinel_reads_them(
    client: flowlab.Client, flowlab_server: ServerProcess
) -> None:
    """A hacked run (quality −0.5 logits a checkpoint after checkpoint 3) fires on the crowd's votes after its
    peak; an honest one (+0.3 a checkpoint) never does. Effects this large keep an unseeded crowd's verdict
    certain in practice (the seeded tests above measure the borderline)."""
    for hacking in (True, False):
        run = simulate_policy_run(21, 8, hacking=hacking, prompts=12, onset=3, gain=0.3, drop=0.5, length_growth=0.5)
        wins, votes = crowd_history(client, flowlab_server, run, votes_per_pair=6)
        assert votes.tolist() == [72.0] * 8
        proxy = run.proxy.mean(axis=1)
        verdicts = [
            check_divergence(run.steps[: c + 1], proxy[: c + 1], wins[: c + 1], votes[: c + 1]) for c in range(8)
        ]
        fired = [v.step for v in verdicts if v.fired]
        if hacking:
            assert wins[3] > wins[-1] + 15, "people's wins fall after the peak, read from the true scores"
            assert fired and fired[0] > run.steps[3], [v.reason for v in verdicts]
        else:
            assert wins[-1] > wins[0] + 15 and fired == [], [v.reason for v in verdicts]
