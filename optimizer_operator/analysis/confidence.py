"""Confidence sequences: intervals that stay valid when they are checked at every interval.

A fixed-sample interval checked after every new batch of requests misses the truth far
more often than its level says (ten looks at a 95% interval miss about a fifth of the
time). A confidence sequence covers the true mean at *all* sample sizes at once with
probability at least 1 - alpha, so a decision may be taken the first time the interval
clears a bound.

Each decision is one-sided (roll back when the candidate is confidently below a floor;
pass when it is confidently above), so each end of an interval here is a one-sided
bound: the normal-mixture boundary of Robbins (1970) with half-normal mixing, in the
form of Howard, Ramdas, McAuliffe and Sekhon ("Time-uniform, nonparametric,
nonasymptotic confidence sequences", 2021): a sum of n unit-variance steps stays below
the boundary at every n with probability 1 - alpha. The mixing constant rho makes it
tightest near ``tightest_at`` requests.
With the variance estimated from the data (plugged in, as in Waudby-Smith et al.,
"Time-uniform central limit theory and asymptotic confidence sequences", 2024) the
coverage is asymptotic; ``tests/analysis/test_confidence.py`` measures it by
simulation at the sample sizes the operator decides on.

Pure functions of counts and moments: the callers read those from Prometheus
(``analysis.bounds``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

# Where the boundary is tightest, in requests: about the canary sample of a few
# analysis intervals at a small weight, so clear breaches are decided at the first
# checks and near-bound cases keep tightening afterwards.
TIGHTEST_AT = 400.0
# For per-interval samples (batch means of a custom query): intervals, not requests.
TIGHTEST_AT_INTERVALS = 20.0

Side = Literal["min", "max"]
BoundState = Literal["violated", "holds", "undecided"]


@dataclass(frozen=True)
class Interval:
    low: float
    high: float


def _rho(alpha: float, tightest_at: float) -> float:
    """The mixing precision that makes the boundary tightest near ``tightest_at`` steps
    (Howard et al.'s rule for the normal mixture)."""
    log_inv = 2.0 * math.log(1.0 / alpha)
    return tightest_at / (log_inv + math.log1p(log_inv))


def _log_normal_cdf(x: float) -> float:
    return math.log(0.5 * math.erfc(-x / math.sqrt(2.0)))


def radius(n: float, alpha: float, tightest_at: float = TIGHTEST_AT) -> float:
    """How far a mean of ``n`` unit-variance observations may stray above (or, by
    symmetry, below) the truth at any n, with probability at most ``alpha`` over all n:
    the one-sided normal mixture (half-normal mixing over the drift, Howard et al. 2021,
    eq. 14, solved exactly). Multiply by the standard deviation."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if n <= 0:
        return math.inf
    rho = _rho(alpha, tightest_at)
    v = n + rho
    # The mixture martingale at S = x sqrt(v) is 2 sqrt(rho / v) exp(x^2 / 2) Phi(x),
    # increasing in x >= 0; the boundary is where it reaches 1 / alpha (Ville).
    target = math.log(1.0 / alpha) - math.log(2.0) - 0.5 * math.log(rho / v)

    def excess(x: float) -> float:
        return 0.5 * x * x + _log_normal_cdf(x) - target

    if excess(0.0) >= 0.0:
        return 0.0
    low, high = 0.0, 1.0
    while excess(high) < 0.0:
        low, high = high, 2.0 * high
    for _ in range(60):
        mid = 0.5 * (low + high)
        if excess(mid) < 0.0:
            low = mid
        else:
            high = mid
    return high * math.sqrt(v) / n


def mean_interval(
    mean: float, sd: float, n: float, alpha: float, tightest_at: float = TIGHTEST_AT
) -> Interval:
    """Confidence sequence for a mean from ``n`` observations with standard deviation
    ``sd`` (an estimate or an upper bound). Each end is a one-sided bound at level
    1 - ``alpha`` valid at every n (a decision only ever needs one end)."""
    half = sd * radius(n, alpha, tightest_at)
    return Interval(mean - half, mean + half)


def proportion_interval(
    events: float, n: float, alpha: float, tightest_at: float = TIGHTEST_AT
) -> Interval:
    """Confidence sequence for a rate from ``events`` out of ``n`` trials; each end a
    one-sided bound at level 1 - ``alpha``, valid at every n.

    Inverts |p_hat - p| <= sqrt(p (1 - p)) r(n) for p (the Wilson form), so the variance
    is that of each candidate rate rather than of the estimate: no zero-width interval
    when no event has been seen yet."""
    if n <= 0:
        return Interval(0.0, 1.0)
    p = min(max(events / n, 0.0), 1.0)
    r2 = radius(n, alpha, tightest_at) ** 2
    center = (2.0 * p + r2) / (2.0 * (1.0 + r2))
    spread = math.sqrt(max((2.0 * p + r2) ** 2 - 4.0 * (1.0 + r2) * p * p, 0.0)) / (
        2.0 * (1.0 + r2)
    )
    return Interval(max(0.0, center - spread), min(1.0, center + spread))


def bounded_variance(mean: float, second_moment: float, n: float) -> float:
    """Variance of scores on [0, 1] from their mean and (an estimate of) their second
    moment, shrunk towards the largest variance possible (1/4) by one pseudo-observation,
    so a handful of identical scores does not read as certainty; never above
    mean x (1 - mean), the largest variance a [0, 1] variable with that mean can have."""
    m = min(max(mean, 0.0), 1.0)
    raw = max(second_moment - m * m, 0.0)
    shrunk = (n * raw + 0.25) / (n + 1.0)
    return min(shrunk, max(m * (1.0 - m), 1e-12))


def second_moment(buckets: Sequence[tuple[float, float]], high: float = 1.0) -> float:
    """The mean of x^2 estimated from cumulative histogram buckets ``(upper edge,
    count <= edge)`` of values in [0, ``high``]: each value at its bucket's midpoint
    (+Inf ending at ``high``), which overstates the variance by about width^2 / 12
    (Sheppard), the safe side. Taking every value at its upper edge would be a strict
    bound, but at 0.05-wide buckets it triples the standard deviation of typical scores."""
    total, acc, below, lower = 0.0, 0.0, 0.0, 0.0
    for edge, cumulative in sorted(buckets):
        inside = max(cumulative - below, 0.0)
        top = min(edge, high) if math.isfinite(edge) else high
        bottom = min(lower, top)
        mid = (top + bottom) / 2.0
        acc += inside * mid * mid
        total += inside
        below, lower = max(below, cumulative), top
    return acc / total if total > 0 else high * high


def level_moment(buckets: Sequence[tuple[float, float]]) -> float:
    """The mean of x^2 from cumulative histogram buckets ``(upper edge, count <= edge)``
    of values that only ever take the edges' values (a pairwise pair score and its
    buckets): each value at its bucket's edge, exact. 1 when there is nothing."""
    total, acc, below = 0.0, 0.0, 0.0
    for edge, cumulative in sorted(buckets):
        inside = max(cumulative - below, 0.0)
        if math.isfinite(edge):
            acc += inside * edge * edge
            total += inside
        below = max(below, cumulative)
    return acc / total if total > 0 else 1.0


def decide(
    side: Side,
    bound: float,
    rollback: Interval,
    passing: Interval,
) -> BoundState:
    """Where the evidence puts a candidate against a bound: ``violated`` when the
    ``rollback`` interval (level 1 - false-rollback rate) lies wholly on the wrong side,
    ``holds`` when the ``passing`` interval (level 1 - false-pass rate) lies wholly on the
    right side (touching the bound counts as meeting it), else ``undecided``."""
    if side == "min":
        if rollback.high < bound:
            return "violated"
        return "holds" if passing.low >= bound else "undecided"
    if rollback.low > bound:
        return "violated"
    return "holds" if passing.high <= bound else "undecided"


def shown(side: Side, rollback: Interval, passing: Interval) -> Interval:
    """The interval to show a person: the end that could pass the candidate at the pass
    level, the end that could roll it back at the rollback level, so the bound lies
    outside it exactly when the evidence has decided."""
    if side == "min":
        return Interval(passing.low, rollback.high)
    return Interval(rollback.low, passing.high)
