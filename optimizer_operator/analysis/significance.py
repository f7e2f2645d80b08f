"""Significance tests on numpy and the standard library.

The operator needs five things from statistics: the normal tail, Student's t tail
(Welch's test), the Mann-Whitney U test, and the Theil-Sen slope. ``scipy.stats``
has them all, but importing it costs the operator process about 70 MB of memory
(most of its modules load with it), a quarter of its budget at 1,000 Rollouts. These
implementations follow the textbook definitions and the conventions of
``scipy.stats`` (two-sided p-values; Mann-Whitney chooses the exact null distribution
when one sample has at most 8 values and there are no ties, else the normal
approximation with tie and continuity corrections); ``tests/analysis`` checks them
against scipy on random and edge-case samples.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

_SQRT2 = math.sqrt(2.0)


def normal_sf(z: float) -> float:
    """P(Z > z) for a standard normal Z."""
    return 0.5 * math.erfc(z / _SQRT2)


def normal_cdf(z: float) -> float:
    """P(Z <= z) for a standard normal Z."""
    return 0.5 * math.erfc(-z / _SQRT2)


def _beta_fraction(x: float, a: float, b: float) -> float:
    """The continued fraction of the incomplete beta function (modified Lentz)."""
    tiny, eps = 1e-300, 1e-15
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        # Even step.
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        # Odd step.
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < eps:
            break
    return h


def regularized_beta(x: float, a: float, b: float) -> float:
    """I_x(a, b), the regularized incomplete beta function, for a, b > 0."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    front = math.exp(log_front)
    # The fraction converges fast below the mean; above it, use the symmetry.
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_fraction(x, a, b) / a
    return 1.0 - front * _beta_fraction(1.0 - x, b, a) / b


def student_t_sf(t: float, df: float) -> float:
    """P(T > t) for Student's t with ``df`` degrees of freedom (df > 0, may be fractional)."""
    if math.isinf(t):
        return 0.0 if t > 0 else 1.0
    tail = 0.5 * regularized_beta(df / (df + t * t), df / 2.0, 0.5)
    return tail if t > 0 else 1.0 - tail


def _variance(x: np.ndarray) -> float:
    """Sample variance; exactly 0 for a constant sample (floating error in the mean would
    otherwise make a constant sample look barely variable, and any difference
    infinitely significant)."""
    return 0.0 if float(np.min(x)) == float(np.max(x)) else float(np.var(x, ddof=1))


def welch_p(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided p-value of Welch's unequal-variance t test. Both samples constant: 0 when
    they differ (scipy gives NaN, or a tiny p from rounding), NaN when they are equal or
    one has fewer than two values."""
    n1, n2 = len(a), len(b)
    if n1 < 2 or n2 < 2:
        return math.nan
    v1, v2 = _variance(a) / n1, _variance(b) / n2
    se2 = v1 + v2
    if se2 == 0.0:  # both constant: certainly different, or nothing to test
        return 0.0 if float(np.mean(a)) != float(np.mean(b)) else math.nan
    t = (float(np.mean(a)) - float(np.mean(b))) / math.sqrt(se2)
    df = se2 * se2 / (v1 * v1 / (n1 - 1) + v2 * v2 / (n2 - 1))
    return min(1.0, 2.0 * student_t_sf(abs(t), df))


def _average_ranks(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ranks from 1, ties sharing their average rank; and the size of each tie group."""
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    sizes = np.diff(np.r_[starts, len(values)])
    # A group starting at 0-based position s with k members has ranks s+1..s+k: mean s+(k+1)/2.
    group_rank = starts + (sizes + 1) / 2.0
    ranks = np.empty(len(values), dtype=float)
    ranks[order] = np.repeat(group_rank, sizes)
    return ranks, sizes


def _u_lower_tail(u: int, m: int, n: int) -> float:
    """P(U <= u) under the null for samples of sizes m <= n without ties.

    The counts of U over all C(m+n, m) arrangements are the coefficients of the Gaussian
    binomial [m+n choose m]_q = prod_{i=1..m} (1 - q^(n+i)) / (1 - q^i). Each partial
    product is itself a Gaussian binomial (non-negative coefficients); only the
    coefficients up to ``u`` are needed, and below n+1 the multiplication by
    (1 - q^(n+i)) subtracts nothing, so the lower tail is free of cancellation."""
    size = u + 1
    poly = np.zeros(size)
    poly[0] = 1.0
    for i in range(1, m + 1):
        shift = n + i
        if shift < size:
            poly[shift:] -= poly[: size - shift].copy()
        # Divide by (1 - q^i): b[k] = a[k] + b[k-i], a running sum down each residue
        # class mod i (the rows of the reshaped array).
        rows = np.concatenate([poly, np.zeros(-size % i)]).reshape(-1, i)
        poly = np.cumsum(rows, axis=0).reshape(-1)[:size]
    total = math.exp(math.lgamma(m + n + 1) - math.lgamma(m + 1) - math.lgamma(n + 1))
    return float(min(1.0, poly.sum() / total))


def mann_whitney_p(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided p-value of the Mann-Whitney U test (scipy's ``method="auto"``)."""
    n1, n2 = len(a), len(b)
    if n1 == 0 or n2 == 0:
        return math.nan
    ranks, ties = _average_ranks(np.concatenate([a, b]))
    u1 = float(ranks[:n1].sum()) - n1 * (n1 + 1) / 2.0
    u2 = n1 * n2 - u1
    big = max(u1, u2)
    has_ties = bool((ties > 1).any())
    if (n1 <= 8 or n2 <= 8) and not has_ties:
        # P(U >= big) = P(U <= n1*n2 - big) by the symmetry of the null distribution.
        m, n = sorted((n1, n2))
        low = round(n1 * n2 - big)
        return min(1.0, 2.0 * _u_lower_tail(low, m, n))
    n = n1 + n2
    tie_term = float((ties.astype(float) ** 3 - ties).sum())
    sd = math.sqrt(n1 * n2 / 12.0 * ((n + 1) - tie_term / (n * (n - 1))))
    if sd == 0.0:
        return 1.0
    z = (big - n1 * n2 / 2.0 - 0.5) / sd
    return min(1.0, 2.0 * normal_sf(z))


def theil_sen_slope(y: Sequence[float] | np.ndarray, x: Sequence[float] | np.ndarray) -> float:
    """The median of the slopes between every pair of points with distinct x."""
    ya, xa = np.asarray(y, dtype=float), np.asarray(x, dtype=float)
    i, j = np.triu_indices(len(xa), k=1)
    dx = xa[j] - xa[i]
    keep = dx != 0
    if not keep.any():
        return math.nan
    return float(np.median((ya[j] - ya[i])[keep] / dx[keep]))
