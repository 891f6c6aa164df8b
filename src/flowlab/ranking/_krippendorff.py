"""Krippendorff's alpha: chance-corrected agreement for any number of raters, with missing ratings."""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["krippendorff_alpha"]

_LEVELS = ("nominal", "ordinal", "interval")


def _unit_index(units: np.ndarray) -> tuple[np.ndarray, int]:
    """Map unit ids to indices ``0..n_units-1`` (ids need not be contiguous; unused indices are harmless)."""
    lo, hi = int(units.min()), int(units.max())
    if hi - lo < 4 * len(units) + 1024:  # compact ids: offset them, no sort needed
        return (units - lo).astype(np.intp), hi - lo + 1
    uniq, inverse = np.unique(units, return_inverse=True)
    return inverse.astype(np.intp), len(uniq)


def _value_codes(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Codes ``0..n_values-1`` of ``x`` in ascending value order, and how often each value occurs."""
    lo, hi = float(x.min()), float(x.max())
    if hi - lo < 4 * len(x) + 1024 and lo > -(2.0**53) and hi < 2.0**53:
        ints = x.astype(np.int64)
        if np.array_equal(ints, x):  # integer-valued ratings in a compact range: count them, no sort
            offset = (ints - int(lo)).astype(np.intp)
            counts = np.bincount(offset)
            seen = counts > 0
            return (np.cumsum(seen) - 1)[offset], counts[seen].astype(float)
    _, code, counts = np.unique(x, return_inverse=True, return_counts=True)
    return code.ravel(), counts.astype(float)


def _interval_alpha(unit: np.ndarray, x: np.ndarray, n_units: int) -> float | None:
    """Interval alpha of pairable values ``x`` in units ``unit``, through within-unit sums of squares."""
    n = len(x)
    if x.min() == x.max():
        return None
    m = np.bincount(unit, minlength=n_units).astype(float)
    sums = np.bincount(unit, weights=x, minlength=n_units)
    m_i = m[unit]
    dev = x - sums[unit] / m_i
    # Σ over ordered pairs i ≠ j in a unit of (x_i − x_j)² is 2·m_u·SS_u; the coincidence weight is 1/(m_u − 1).
    observed = float(np.dot(2.0 * m_i / (m_i - 1.0), dev * dev))  # n · D_o
    centred = x - x.mean()
    ss_total = float(np.dot(centred, centred))
    d_o = observed / n
    d_e = 2.0 * ss_total / (n - 1.0)  # 2·n·SS_total / (n(n − 1))
    if d_e <= 0.0:
        return None
    return 1.0 - d_o / d_e


def krippendorff_alpha(
    units: ArrayLike,
    values: ArrayLike,
    *,
    level: Literal["nominal", "ordinal", "interval"] = "interval",
) -> float | None:
    """Krippendorff's alpha reliability of ratings given in long form, one entry per rating.

    ``alpha = 1 − D_o / D_e``: the disagreement observed between values given to the same unit, over
    the disagreement expected if all pairable values were paired at random. 1 is perfect agreement, 0
    is chance, and negative values are systematic disagreement. Any number of raters may rate a unit
    and ratings may be missing; units with fewer than two values cannot be paired and are dropped.
    Rater identity is not needed.

    Parameters
    ----------
    units : array_like of int, shape (m,)
        The unit (item) each rating is about. Any integer ids; they need not be ``0..n-1``.
    values : array_like of float, shape (m,)
        The rating. NaN means missing or not applicable and is ignored.
    level : {"nominal", "ordinal", "interval"}, default "interval"
        The difference function: nominal (0 if equal, else 1), ordinal (Krippendorff's rank metric,
        built from the margins of the coincidence matrix) or interval (squared difference).

    Returns
    -------
    float or None
        Alpha, or None when it is undefined: no unit has two or more values, or every pairable value
        is the same (no expected disagreement).

    References
    ----------
    K. Krippendorff, "Computing Krippendorff's Alpha-Reliability", University of Pennsylvania, 2011.
    """
    if level not in _LEVELS:
        raise ValueError(f"level must be 'nominal', 'ordinal' or 'interval'; got {level!r}.")
    unit_arr = np.asarray(units)
    x = np.asarray(values, dtype=float)
    if unit_arr.ndim != 1 or x.ndim != 1:
        raise ValueError(
            f"units and values must be 1-D, one entry per rating; got shapes {unit_arr.shape} and {x.shape}."
        )
    if len(unit_arr) != len(x):
        raise ValueError(f"units and values need one entry per rating; got {len(unit_arr)} units and {len(x)} values.")
    whole_floats = unit_arr.dtype.kind == "f" and bool(np.all(np.isfinite(unit_arr) & (unit_arr == np.round(unit_arr))))
    if unit_arr.dtype.kind not in "iub" and not whole_floats:
        raise ValueError("units must be integer ids, one per rating.")
    unit_arr = unit_arr.astype(np.int64)
    if np.any(np.isinf(x)):
        raise ValueError("values must be finite; use NaN for a missing rating.")

    if len(x) < 2:
        return None
    present = ~np.isnan(x)
    unit, n_units = _unit_index(unit_arr)
    m = np.bincount(unit, weights=present, minlength=n_units)  # non-missing values per unit
    pairable = present & (m[unit] >= 2)
    unit, x = unit[pairable], x[pairable]
    n = len(x)
    if n < 2:
        return None

    if level == "interval":
        return _interval_alpha(unit, x, n_units)

    code, n_c = _value_codes(x)  # n_c: margins of the coincidence matrix, in value order
    if len(n_c) < 2:
        return None

    if level == "ordinal":
        # Krippendorff's ordinal δ²(c, k) = (Σ_{g=c..k} n_g − (n_c + n_k)/2)² equals (t_k − t_c)² with the
        # mid-rank t_c = Σ_{g<c} n_g + n_c/2, so ordinal alpha is interval alpha on the mid-ranks.
        mid_rank = np.cumsum(n_c) - n_c / 2.0
        return _interval_alpha(unit, mid_rank[code], n_units)

    # Nominal: δ = 1 off the diagonal, so n·D_o = n − Σ_c o_cc and n(n − 1)·D_e = n² − Σ_c n_c².
    # The diagonal o_cc = Σ_u n_uc(n_uc − 1)/(m_u − 1), summed rating by rating as (n_uc − 1)/(m_u − 1).
    n_cat = len(n_c)
    key = unit.astype(np.int64) * n_cat + code
    if n_units * n_cat <= 8 * n + 4096:
        n_uc = np.bincount(key)[key]
    else:
        _, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
        n_uc = counts[inverse.ravel()]
    diagonal = float(np.sum((n_uc - 1.0) / (m[unit] - 1.0)))
    d_o = (n - diagonal) / n
    d_e = (n * n - float(np.dot(n_c, n_c))) / (n * (n - 1.0))
    return 1.0 - d_o / d_e
