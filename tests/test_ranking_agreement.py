"""Inter-annotator agreement on repeated pairs, and transitivity violations against brute force."""

import itertools

import numpy as np

from flowlab.ranking import (
    repeated_pair_agreement,
    simulate_comparisons,
    simulate_scores,
    transitivity_violations,
    win_matrix,
)


def brute_force_triads(wins):
    n = len(wins)
    cycles = triads = 0
    for a, b, c in itertools.combinations(range(n), 3):
        edges = [(a, b), (b, c), (a, c)]
        if any(wins[i, j] == wins[j, i] for i, j in edges):
            continue
        triads += 1
        beats = {(i, j) if wins[i, j] > wins[j, i] else (j, i) for i, j in edges}
        out_degree = [sum(1 for i, _ in beats if i == x) for x in (a, b, c)]
        cycles += out_degree == [1, 1, 1]
    return cycles, triads


def test_transitivity_matches_brute_force():
    rng = np.random.default_rng(0)
    wins = rng.integers(0, 4, (9, 9)).astype(float)
    np.fill_diagonal(wins, 0)
    result = transitivity_violations(wins)
    assert (result.n_cycles, result.n_triads) == brute_force_triads(wins)
    assert result.share == result.n_cycles / result.n_triads


def test_a_single_cycle_and_a_consistent_order():
    cycle = np.zeros((3, 3))
    cycle[0, 1] = cycle[1, 2] = cycle[2, 0] = 1
    assert transitivity_violations(cycle).n_cycles == 1
    order = np.triu(np.ones((4, 4)), 1)
    result = transitivity_violations(order)
    assert (result.n_cycles, result.n_triads, result.share) == (0, 4, 0.0)
    assert transitivity_violations(np.zeros((3, 3))).share == 0.0


def test_fleiss_kappa_hand_example():
    # Pair {0,1}: 0 wins, 0 wins, 1 wins. Pair {1,2}: tie, tie. Pair {0,2}: one vote only (ignored).
    comps = np.array([[0, 1, 0], [0, 1, 0], [1, 0, 0], [1, 2, 1], [2, 1, 1], [0, 2, 0]])
    result = repeated_pair_agreement(comps)
    observed = (2 * 1 + 0 + 2 * 1) / (3 * 2 + 2 * 1)  # agreeing ordered vote pairs / all ordered pairs
    share = np.array([2, 1, 2]) / 5
    expected = (share**2).sum()
    assert result.observed == observed
    assert np.isclose(result.expected, expected)
    assert np.isclose(result.kappa, (observed - expected) / (1 - expected))
    assert (result.n_pairs, result.n_votes) == (2, 5)


def test_agreement_is_perfect_for_unanimous_votes_and_undefined_without_repeats():
    unanimous = repeated_pair_agreement(np.array([[0, 1], [0, 1], [2, 1], [2, 1]]))
    assert unanimous.observed == 1.0 and unanimous.kappa == 1.0
    none = repeated_pair_agreement(np.array([[0, 1], [1, 2]]))
    assert none.n_pairs == 0 and np.isnan(none.kappa)


def test_noisy_simulated_votes_have_moderate_agreement():
    theta = simulate_scores(5, spread=2.0, rng=0)
    result = repeated_pair_agreement(simulate_comparisons(theta, 2000, rng=1))
    assert 0.1 < result.kappa < 0.9
    assert transitivity_violations(win_matrix(simulate_comparisons(theta, 2000, rng=1))).share < 0.2
