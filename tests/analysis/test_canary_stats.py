"""Canary statistics on streams with known truth."""

from __future__ import annotations

import numpy as np
import pytest

from optimizer_operator.analysis.canary import (
    MetricResult,
    combine,
    mann_whitney,
    sequential_mean,
    sequential_rate,
    threshold_check,
)


def _latency(rng: np.random.Generator, n: int, scale: float = 1.0) -> list[float]:
    return list(rng.lognormal(np.log(0.8 * scale), 0.1, n))


def test_mann_whitney_flags_a_30pct_latency_regression() -> None:
    rng = np.random.default_rng(1)
    r = mann_whitney(
        "latency_p95_seconds", _latency(rng, 20, 1.3), _latency(rng, 20), tolerance=0.1
    )
    assert r.classification == "High" and r.verdict == "Fail"
    assert r.effect == pytest.approx(0.3, abs=0.08) and r.p_value is not None
    assert "+" in r.reason and "tolerance" in r.reason


def test_mann_whitney_passes_equal_streams_and_improvements() -> None:
    rng = np.random.default_rng(2)
    assert mann_whitney("l", _latency(rng, 20), _latency(rng, 20)).verdict == "Pass"
    better = mann_whitney("l", _latency(rng, 20, 0.7), _latency(rng, 20))
    assert better.classification == "Low" and better.verdict == "Pass"


def test_quality_drop_fails_when_higher_is_better() -> None:
    rng = np.random.default_rng(3)
    canary = list(rng.normal(0.72, 0.02, 20))
    stable = list(rng.normal(0.82, 0.02, 20))
    r = mann_whitney("quality_score", canary, stable, direction="higherIsBetter", tolerance=0.05)
    assert r.classification == "Low" and r.verdict == "Fail"


def test_small_significant_regression_is_marginal() -> None:
    rng = np.random.default_rng(4)
    r = mann_whitney("l", _latency(rng, 40, 1.05), _latency(rng, 40), tolerance=0.1, alpha=0.05)
    assert r.verdict in ("Marginal", "Pass") and r.classification == "Pass"


def test_too_few_samples_is_nodata() -> None:
    r = mann_whitney("l", [1.0, 1.1], [1.0] * 10, min_samples=5)
    assert r.verdict == "NoData" and "need 5" in r.reason


def test_sequential_rate_detects_three_points_more_errors() -> None:
    r = sequential_rate("error_rate", 40, 1000, 10, 1000, margin=0.0)
    assert r.verdict == "Fail" and r.p_value is not None and r.p_value < 0.01
    assert r.effect == pytest.approx(0.03)


def test_sequential_rate_needs_a_minimum_sample() -> None:
    r = sequential_rate("error_rate", 3, 20, 0, 20, min_total=50)
    assert r.verdict == "NoData"


def test_sequential_rate_aa_false_failures_stay_below_alpha_under_continuous_checks() -> None:
    """A/A: both variants at 1% errors, checked after every one of 60 intervals."""
    rng = np.random.default_rng(5)
    runs, false_fail = 400, 0
    for _ in range(runs):
        ce = se = ct = st = 0
        for _ in range(60):
            ct += 100
            st += 100
            ce += rng.binomial(100, 0.01)
            se += rng.binomial(100, 0.01)
            if sequential_rate("e", ce, ct, se, st, alpha=0.01).verdict == "Fail":
                false_fail += 1
                break
    assert false_fail / runs <= 0.02  # alpha 0.01, with sampling slack for 400 runs


def test_threshold_and_combine() -> None:
    assert threshold_check("e", 0.05, maximum=0.02).verdict == "Fail"
    assert threshold_check("q", 0.9, minimum=0.8).verdict == "Pass"
    assert threshold_check("q", None, minimum=0.8).verdict == "NoData"

    def res(v: str, dry: bool = False) -> MetricResult:
        return MetricResult("m", 1, 1, 0, 1, "Pass", v, "", dry)  # type: ignore[arg-type]

    assert combine([res("Pass"), res("Pass")]) == "Pass"
    assert combine([res("Pass"), res("Marginal")]) == "Marginal"
    assert combine([res("Pass"), res("NoData")]) == "Inconclusive"
    assert combine([res("Marginal"), res("Fail")]) == "Fail"
    assert combine([res("Pass"), res("Fail", dry=True)]) == "Pass"  # dry run never decides
    assert combine([]) == "Inconclusive"


def test_sequential_mean_detects_a_quality_drop_within_a_few_intervals() -> None:
    rng = np.random.default_rng(8)
    canary = list(rng.normal(0.75, 0.006, 4))
    stable = list(rng.normal(0.80, 0.003, 4))
    r = sequential_mean("quality_score", canary, stable, direction="higherIsBetter", tolerance=0.03)
    assert r.verdict == "Fail" and r.classification == "Low"
    assert "always-valid" in r.reason
    assert sequential_mean("q", canary[:2], stable[:2]).verdict == "NoData"


def test_sequential_mean_aa_false_failures_stay_low_under_continuous_checks() -> None:
    rng = np.random.default_rng(9)
    runs, false_fail = 400, 0
    for _ in range(runs):
        c = rng.normal(0.80, 0.006, 60)
        s = rng.normal(0.80, 0.003, 60)
        for t in range(3, 61):
            if (
                sequential_mean(
                    "q", c[:t], s[:t], direction="higherIsBetter", tolerance=0.03
                ).verdict
                == "Fail"
            ):
                false_fail += 1
                break
    assert false_fail / runs <= 0.02
