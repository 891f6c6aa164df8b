"""Win-loss counts: dense matrices, sparse pair counts, keys and the streaming counter."""

import numpy as np
import pytest

from flowlab.ranking import WinLossCounter, comparisons_from_keys, pair_counts, win_matrix


def test_win_matrix_counts_each_vote_and_halves_ties():
    comps = np.array([[0, 1, 0], [0, 1, 0], [1, 0, 0], [2, 0, 1]])
    mat = win_matrix(comps)
    expected = np.array([[0, 2, 0.5], [1, 0, 0], [0.5, 0, 0]])
    np.testing.assert_array_equal(mat, expected)
    assert mat.sum() == len(comps)


def test_win_matrix_n_items_pads_and_rejects_too_small():
    assert win_matrix([[0, 1]], n_items=4).shape == (4, 4)
    with pytest.raises(ValueError, match="n_items is 2"):
        win_matrix([[0, 2]], n_items=2)


def test_no_votes_give_an_empty_or_zero_matrix():
    assert win_matrix(np.zeros((0, 2), int)).shape == (0, 0)
    np.testing.assert_array_equal(win_matrix([], n_items=3), np.zeros((3, 3)))


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ([[0, 0]], "same datapoint"),
        ([[-1, 2]], "negative"),
        ([[0.0, np.nan]], "NaN"),
        ([[0.5, 1.0]], "whole-number"),
        ([[0, 1, 2]], "0 or 1"),
        ([[0, 1, 0, 0]], "shape"),
        (np.array([["a", "b"]]), "integer"),
    ],
)
def test_bad_comparisons_raise_clear_errors(bad, message):
    with pytest.raises(ValueError, match=message):
        win_matrix(bad)


def test_pair_counts_match_the_dense_matrix():
    rng = np.random.default_rng(3)
    comps = np.column_stack([rng.integers(0, 6, 200), rng.integers(0, 6, 200), rng.integers(0, 2, 200)])
    comps = comps[comps[:, 0] != comps[:, 1]]
    pc = pair_counts(comps)
    assert np.all(pc.first < pc.second)
    np.testing.assert_allclose(pc.to_matrix(), win_matrix(comps))
    np.testing.assert_allclose(pc.totals.sum(), len(comps))
    assert pc.ties.sum() == comps[:, 2].sum()
    from_matrix = pair_counts(win_matrix(comps))
    np.testing.assert_allclose(from_matrix.to_matrix(), win_matrix(comps))


def test_comparisons_from_keys_maps_keys_to_indices():
    comps = comparisons_from_keys([("b", "a"), ("c", "b", True)], keys=["a", "b", "c"])
    np.testing.assert_array_equal(comps, [[1, 0, 0], [2, 1, 1]])
    with pytest.raises(ValueError, match="not in keys"):
        comparisons_from_keys([("z", "a")], keys=["a", "b"])
    with pytest.raises(ValueError, match="duplicates"):
        comparisons_from_keys([], keys=["a", "a"])


def test_streaming_counter_equals_batch_counts():
    comps = np.array([[0, 1, 0], [2, 1, 1], [1, 0, 0]])
    counter = WinLossCounter(3)
    counter.add(0, 1)
    counter.add_many(comps[1:])
    np.testing.assert_array_equal(counter.matrix, win_matrix(comps, 3))
    assert counter.n_votes == 3
    np.testing.assert_array_equal(counter.wins, [1, 1.5, 0.5])
    np.testing.assert_array_equal(counter.votes, [2, 3, 1])
    with pytest.raises(ValueError, match="two different datapoints"):
        counter.add(1, 1)


def test_a_labelled_integer_3x3_matrix_is_read_as_a_win_matrix() -> None:
    import pandas as pd

    from flowlab.ranking import fit_bradley_terry

    counts = [[0, 2, 1], [1, 0, 0], [0, 1, 0]]
    table = pd.DataFrame(counts, index=list("abc"), columns=list("abc"))
    from_table = fit_bradley_terry(table)
    from_floats = fit_bradley_terry(np.array(counts, dtype=float))
    np.testing.assert_allclose(from_table.scores, from_floats.scores)
    assert from_table.scores[0] > 0.3
