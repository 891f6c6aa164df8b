"""Krippendorff's alpha against the 2011 worked example, a slow pairwise definition, and edge cases."""

import itertools

import numpy as np
import pytest

from flowlab.ranking import krippendorff_alpha

LEVELS = ("nominal", "ordinal", "interval")

nan = np.nan
# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability": 4 observers × 12 units, values 1–5.
EXAMPLE = np.array(
    [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, nan, nan, nan],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, nan, 3],
        [nan, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, nan],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, nan],
    ]
)
PUBLISHED = {"nominal": 0.743, "ordinal": 0.815, "interval": 0.849}


def long_form(matrix):
    """(observers × units) reliability matrix → one (unit, value) entry per cell, NaN cells included."""
    n_obs, n_units = matrix.shape
    return np.tile(np.arange(n_units), n_obs), matrix.ravel()


def reference_alpha(units, values, level):
    """Straight from the definition: pairwise disagreements within units versus across all pairable values."""
    by_unit = {}
    for u, v in zip(units.tolist(), values.tolist(), strict=True):
        if not np.isnan(v):
            by_unit.setdefault(u, []).append(v)
    pairable = [vs for vs in by_unit.values() if len(vs) >= 2]
    pooled = [v for vs in pairable for v in vs]
    n = len(pooled)
    if n < 2:
        return None
    freq = {c: pooled.count(c) for c in set(pooled)}

    def delta(a, b):
        if level == "nominal":
            return float(a != b)
        if level == "interval":
            return (a - b) ** 2
        lo, hi = min(a, b), max(a, b)
        between = sum(count for c, count in freq.items() if lo <= c <= hi)
        return (between - (freq[a] + freq[b]) / 2) ** 2

    observed = 0.0
    for vs in pairable:
        m = len(vs)
        for i, j in itertools.permutations(range(m), 2):
            observed += delta(vs[i], vs[j]) / (m - 1)
    expected = 0.0
    for i, j in itertools.permutations(range(n), 2):
        expected += delta(pooled[i], pooled[j])
    d_o = observed / n
    d_e = expected / (n * (n - 1))
    if d_e == 0:
        return None
    return 1.0 - d_o / d_e


def random_case(rng):
    """Long-form ratings with missing values, ragged raters per unit and arbitrary unit ids."""
    n_units = int(rng.integers(1, 12))
    n_raters = int(rng.integers(1, 6))
    kind = rng.integers(3)
    if kind == 0:
        values = rng.integers(1, int(rng.integers(2, 7)), size=(n_units, n_raters)).astype(float)
    elif kind == 1:
        values = rng.normal(size=(n_units, n_raters)).round(1)
    else:  # integers far apart: past the compact-range fast path
        values = rng.integers(0, 4, size=(n_units, n_raters)) * 10.0**7
    values[rng.random(values.shape) < rng.uniform(0.0, 0.5)] = nan
    ids = rng.choice(10**6, size=n_units, replace=False) * int(rng.choice([1, 10**9])) - 500_000
    units = np.repeat(ids, n_raters)
    order = rng.permutation(len(units))
    return units[order], values.ravel()[order]


@pytest.mark.parametrize("level", LEVELS)
def test_reproduces_krippendorff_2011_example(level):
    units, values = long_form(EXAMPLE)
    alpha = krippendorff_alpha(units, values, level=level)
    assert alpha is not None
    assert round(alpha, 3) == PUBLISHED[level]
    assert np.isclose(alpha, reference_alpha(units, values, level))


def test_example_exact_values():
    units, values = long_form(EXAMPLE)
    # n = 40 pairable values (unit 12 has one); nominal: 1 − 39·(40 − 32)/(40² − (9² + 13² + 10² + 5² + 3²)).
    assert krippendorff_alpha(units, values, level="nominal") == pytest.approx(113 / 152, rel=1e-12)
    # interval: Σ_u 2·m_u·SS_u/(m_u − 1) = 52/3 and Σ over pairs of pooled values (x_i − x_j)² = 4480.
    assert krippendorff_alpha(units, values, level="interval") == pytest.approx(1 - 39 * (52 / 3) / 4480, rel=1e-12)


@pytest.mark.parametrize("level", LEVELS)
def test_matches_slow_definition_on_random_data(level):
    rng = np.random.default_rng(20110101 + LEVELS.index(level))
    defined = 0
    for _ in range(30):
        units, values = random_case(rng)
        expected = reference_alpha(units, values, level)
        got = krippendorff_alpha(units, values, level=level)
        if expected is None:
            assert got is None
        else:
            defined += 1
            assert got is not None
            assert np.isclose(got, expected, rtol=1e-9, atol=1e-12)
    assert defined >= 15  # the comparison is not vacuous


@pytest.mark.parametrize("level", LEVELS)
def test_perfect_agreement_is_one(level):
    units = np.array([0, 0, 0, 1, 1, 2, 2, 2, 3])
    values = np.array([1.0, 1.0, nan, 2.0, 2.0, 5.0, 5.0, 5.0, 4.0])  # unit 3 is not pairable
    assert krippendorff_alpha(units, values, level=level) == pytest.approx(1.0)


@pytest.mark.parametrize("level", LEVELS)
def test_undefined_without_pairable_units(level):
    assert krippendorff_alpha([0, 1, 2, 3], [1.0, 2.0, 3.0, 4.0], level=level) is None
    assert krippendorff_alpha([0, 0, 1, 1], [1.0, nan, nan, 2.0], level=level) is None
    assert krippendorff_alpha([], [], level=level) is None
    assert krippendorff_alpha([7], [3.0], level=level) is None


@pytest.mark.parametrize("level", LEVELS)
def test_undefined_without_variation(level):
    units = [0, 0, 1, 1, 1, 2]
    values = [3.0, 3.0, 3.0, 3.0, 3.0, 1.0]  # the only other value sits in the unpairable unit 2
    assert krippendorff_alpha(units, values, level=level) is None
    assert krippendorff_alpha([0, 0, 1, 1], [0.1, 0.1, 0.1, 0.1], level=level) is None


@pytest.mark.parametrize("level", LEVELS)
def test_unit_ids_are_arbitrary_integers(level):
    units, values = long_form(EXAMPLE)
    expected = krippendorff_alpha(units, values, level=level)
    for ids in (np.arange(12) * 1000 - 4000, np.array([2**62, -(2**62), 5, 9, -1, 0, 3, 77, 8, 6, 10**15, 4])):
        assert krippendorff_alpha(ids[units], values, level=level) == pytest.approx(expected)
        order = np.random.default_rng(1).permutation(len(units))
        assert krippendorff_alpha(ids[units][order], values[order], level=level) == pytest.approx(expected)
    assert krippendorff_alpha(units.astype(float), values, level=level) == pytest.approx(expected)


def test_ordinal_and_nominal_ignore_value_spacing():
    units, values = long_form(EXAMPLE)
    stretched = np.where(np.isnan(values), nan, values**3 + 0.5)  # same order, other spacing
    for level in ("nominal", "ordinal"):
        assert krippendorff_alpha(units, stretched, level=level) == pytest.approx(
            krippendorff_alpha(units, values, level=level)
        )


def test_large_input_matches_slow_definition_on_a_subset():
    rng = np.random.default_rng(7)
    units = rng.integers(0, 25_000, 100_000)
    values = rng.integers(1, 6, 100_000).astype(float)
    values[rng.random(100_000) < 0.1] = nan
    for level in LEVELS:
        alpha = krippendorff_alpha(units, values, level=level)
        assert alpha is not None and -0.1 < alpha < 0.1  # random ratings: chance agreement
    keep = units < 40
    for level in LEVELS:
        assert np.isclose(
            krippendorff_alpha(units[keep], values[keep], level=level),
            reference_alpha(units[keep], values[keep], level),
        )


def test_nominal_with_many_categories_matches_slow_definition():
    rng = np.random.default_rng(11)
    units = np.repeat(rng.choice(10**6, size=150, replace=False), 2)
    values = rng.normal(size=300).round(2)  # many distinct values: sparse per-unit counts
    values[::3] = values[1::3][: len(values[::3])]
    assert np.isclose(krippendorff_alpha(units, values, level="nominal"), reference_alpha(units, values, "nominal"))


def test_rejects_bad_input():
    with pytest.raises(ValueError, match="one entry per rating"):
        krippendorff_alpha([0, 0, 1], [1.0, 2.0])
    with pytest.raises(ValueError, match="level"):
        krippendorff_alpha([0, 0], [1.0, 2.0], level="ratio")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="integer ids"):
        krippendorff_alpha([0.5, 0.5], [1.0, 2.0])
    with pytest.raises(ValueError, match="finite"):
        krippendorff_alpha([0, 0], [1.0, np.inf])
    with pytest.raises(ValueError, match="1-D"):
        krippendorff_alpha([[0, 0]], [[1.0, 2.0]])
