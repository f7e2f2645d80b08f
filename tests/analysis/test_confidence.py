"""Confidence sequences: known answers, and coverage under repeated looks by simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from optimizer_operator.analysis.confidence import (
    Interval,
    bounded_variance,
    decide,
    level_moment,
    mean_interval,
    proportion_interval,
    radius,
    second_moment,
    shown,
)

LOOKS = np.arange(50, 5001, 50)  # a check after every 50 requests, as a canary is checked


def test_radius_is_where_the_one_sided_normal_mixture_reaches_one_over_alpha() -> None:
    alpha, at, n = 0.05, 400.0, 400.0
    log_inv = 2 * math.log(1 / alpha)
    rho = at / (log_inv + math.log1p(log_inv))
    v = n + rho
    x = radius(n, alpha, at) * n / math.sqrt(v)
    phi = 0.5 * math.erfc(-x / math.sqrt(2))
    martingale = 2 * math.sqrt(rho / v) * math.exp(x * x / 2) * phi
    assert martingale == pytest.approx(1 / alpha, rel=1e-9)
    # Close to Howard et al.'s closed-form approximation of the same boundary.
    approx = math.sqrt(2 * v * math.log(math.sqrt(v / rho) / (2 * alpha) + 1)) / n
    assert radius(n, alpha, at) == pytest.approx(approx, rel=0.03)
    # Scaled by sqrt(n), the boundary is smallest near where it was tuned.
    scaled = {m: radius(m, alpha, at) * math.sqrt(m) for m in (50, 400, 5000)}
    assert scaled[400] < scaled[50] and scaled[400] < scaled[5000]
    # Wider than a one-sided fixed-sample bound (the price of looking at every interval).
    assert radius(n, alpha, at) * math.sqrt(n) > 1.645
    assert radius(0, alpha) == math.inf
    with pytest.raises(ValueError):
        radius(10, 0.0)


def test_proportion_interval_is_the_wilson_inversion() -> None:
    r2 = radius(1000, 0.05) ** 2
    iv = proportion_interval(100, 1000, 0.05)
    for p in (iv.low, iv.high):  # each end solves (p_hat - p)^2 = r^2 p (1 - p)
        assert (0.1 - p) ** 2 == pytest.approx(r2 * p * (1 - p), rel=1e-9)
    none_seen = proportion_interval(0, 1000, 0.05)
    assert none_seen.low == 0.0 and none_seen.high == pytest.approx(r2 / (1 + r2))
    assert proportion_interval(0, 0, 0.05) == Interval(0.0, 1.0)


def test_variance_of_bounded_scores_from_buckets() -> None:
    # Scores in [0, 0.5] and (0.5, 1], half each: taken at the midpoints 0.25 and 0.75.
    buckets = [(0.5, 50.0), (1.0, 100.0), (math.inf, 100.0)]
    assert second_moment(buckets) == pytest.approx((0.25**2 + 0.75**2) / 2)
    # Beta scores in the gateway's 0.05-wide buckets: the true variance, overstated by
    # about width^2 / 12 and never understated.
    rng = np.random.default_rng(3)
    scores = rng.beta(0.83 * 20, 0.17 * 20, 200_000)
    edges = [round(0.05 * i, 2) for i in range(1, 21)]
    cumulative = [(e, float((scores <= e).sum())) for e in edges] + [(math.inf, 200_000.0)]
    var = bounded_variance(float(scores.mean()), second_moment(cumulative), 200_000)
    assert float(scores.var()) < var < float(scores.var()) + 1.5 * 0.05**2 / 12
    small = bounded_variance(0.75, 0.625, 100)
    assert small == pytest.approx((100 * 0.0625 + 0.25) / 101)
    # Identical scores do not read as certainty, and never above mean x (1 - mean).
    assert bounded_variance(0.9, 0.81, 10) > 0
    assert bounded_variance(0.9, 1.0, 10) <= 0.9 * 0.1 + 1e-12
    # Values above the top edge spread up to the end of the scale (1).
    assert second_moment([(0.5, 0.0), (math.inf, 10.0)]) == pytest.approx(0.75**2)


def test_decide_and_the_interval_shown() -> None:
    wide, narrow = Interval(0.78, 0.84), Interval(0.79, 0.83)
    assert decide("min", 0.8, wide, narrow) == "undecided"
    assert decide("min", 0.85, wide, narrow) == "violated"
    assert decide("min", 0.79, wide, narrow) == "holds"  # touching the bound meets it
    assert decide("max", 0.77, wide, narrow) == "violated"
    assert decide("max", 0.83, wide, narrow) == "holds"
    # The bound lies outside the interval shown exactly when the evidence has decided.
    for side in ("min", "max"):
        view = shown(side, wide, narrow)  # type: ignore[arg-type]
        for bound in np.linspace(0.75, 0.87, 49):
            inside = view.low < bound < view.high
            state = decide(side, float(bound), wide, narrow)  # type: ignore[arg-type]
            if not math.isclose(bound, view.low) and not math.isclose(bound, view.high):
                assert inside == (state == "undecided"), (side, bound, state)


def _miss_rates(
    scores: np.ndarray, truth: float, alpha: float, fixed: bool = False
) -> tuple[float, float]:
    """Share of streams whose lower end rose above the truth at any look, and share
    whose upper end fell below it (each end is a one-sided bound at 1 - alpha)."""
    n = LOOKS.astype(float)
    sums = np.cumsum(scores, axis=1)[:, LOOKS - 1]
    squares = np.cumsum(scores**2, axis=1)[:, LOOKS - 1]
    means = sums / n
    var = np.maximum(squares / n - means**2, 0.0)
    var = np.minimum((n * var + 0.25) / (n + 1), np.maximum(means * (1 - means), 1e-12))
    if fixed:
        half = 1.644854 * np.sqrt(var / n)
    else:
        half = np.sqrt(var) * np.array([radius(k, alpha) for k in n])
    low_missed = (means - half > truth).any(axis=1).mean()
    high_missed = (means + half < truth).any(axis=1).mean()
    return float(low_missed), float(high_missed)


@pytest.mark.parametrize("kind", ["beta", "bernoulli"])
def test_coverage_under_a_look_every_50_requests(kind: str) -> None:
    """2,000 streams of 5,000 scores, checked 100 times each: each one-sided 95% bound
    of the sequence crosses the true mean at some look in at most 5% of streams (plus
    Monte Carlo slack), where a fixed-sample 95% bound checked as often crosses far
    more often."""
    rng = np.random.default_rng(20261202)
    truth, streams = 0.82, 2000
    if kind == "beta":
        scores = rng.beta(truth * 20, (1 - truth) * 20, size=(streams, int(LOOKS[-1])))
    else:
        scores = (rng.random((streams, int(LOOKS[-1]))) < truth).astype(float)
    for missed in _miss_rates(scores, truth, 0.05):
        assert missed <= 0.05 + 0.015, missed
    for missed in _miss_rates(scores, truth, 0.05, fixed=True):
        assert missed > 0.2, missed  # the failure the sequence exists to prevent


def test_proportion_coverage_for_rare_events_under_repeated_looks() -> None:
    rng = np.random.default_rng(7)
    truth, streams = 0.01, 2000
    events = (rng.random((streams, int(LOOKS[-1]))) < truth).cumsum(axis=1)[:, LOOKS - 1]
    missed = np.zeros(streams, dtype=bool)
    for j, n in enumerate(LOOKS):
        lows, highs = zip(
            *(
                (iv.low, iv.high)
                for iv in (proportion_interval(float(e), float(n), 0.01) for e in events[:, j])
            ),
            strict=True,
        )
        missed |= (np.array(lows) > truth) | (np.array(highs) < truth)
    assert missed.mean() <= 2 * 0.01 + 0.01, missed.mean()  # two one-sided bounds


def test_a_mean_interval_shrinks_with_the_sample() -> None:
    a = mean_interval(0.8, 0.1, 100, 0.01)
    b = mean_interval(0.8, 0.1, 10_000, 0.01)
    assert a.low < b.low < 0.8 < b.high < a.high


def test_pair_scores_variance_is_exact_and_their_sequence_covers_tighter_than_a_rate() -> None:
    """Pairwise pair scores take only the histogram's edges (multiples of 1/16), so their
    second moment from the buckets is exact; the mean's confidence sequence with that
    variance (win_rate's bound) keeps its coverage under a look every 50 pairs, and is
    narrower than treating the win rate as a proportion when most pairs tie."""
    levels = np.arange(17) / 16
    rng = np.random.default_rng(11)
    # Mostly ties, some graded wins and losses either way: a mean of 0.47.
    p = np.zeros(17)
    p[8], p[6], p[10], p[2], p[14] = 0.6, 0.17, 0.13, 0.06, 0.04
    truth = float((levels * p).sum())
    scores = rng.choice(levels, size=(2000, int(LOOKS[-1])), p=p)
    flat = scores[0]
    cumulative = [(float(e), float((flat <= e).sum())) for e in levels]
    cumulative.append((math.inf, float(flat.size)))
    assert level_moment(cumulative) == pytest.approx(float((flat**2).mean()), rel=1e-12)
    assert level_moment([]) == 1.0
    # Coverage with the variance each stream estimates at each look.
    n = LOOKS.astype(float)
    s1 = np.cumsum(scores, axis=1)[:, LOOKS - 1]
    s2 = np.cumsum(scores**2, axis=1)[:, LOOKS - 1]
    means = s1 / n
    var = np.vectorize(bounded_variance)(means, s2 / n, n)
    half = np.sqrt(var) * np.array([radius(k, 0.05) for k in n])
    assert (means - half > truth).any(axis=1).mean() <= 0.05 + 0.015
    assert (means + half < truth).any(axis=1).mean() <= 0.05 + 0.015
    # Against a proportion's interval on the same evidence: narrower.
    m = float(flat.mean())
    exact = mean_interval(m, math.sqrt(bounded_variance(m, level_moment(cumulative), 5000)),
                          5000, 0.05)  # fmt: skip
    rate = proportion_interval(m * 5000, 5000, 0.05)
    assert exact.high - exact.low < 0.7 * (rate.high - rate.low)
