"""Orient: anomaly detectors, trend, change points and baseline comparisons on known data."""

from __future__ import annotations

import numpy as np

from optimizer_operator.analysis.orient import (
    change_point,
    compare_to_baseline,
    detect_anomaly,
    trend,
)


def test_a_spike_is_a_high_severity_anomaly_and_a_normal_point_is_not() -> None:
    rng = np.random.default_rng(1)
    history = list(rng.normal(1.0, 0.05, 60))
    spike = detect_anomaly([*history, 2.0])
    assert spike is not None and spike.severity == "high" and all(spike.detectors.values())
    calm = detect_anomaly([*history, 1.01])
    assert calm is not None and calm.severity == "none"
    assert detect_anomaly(history[:5]) is None  # too little history to judge


def test_false_alarms_are_rare_on_stationary_noise() -> None:
    rng = np.random.default_rng(2)
    alarms = 0
    for _ in range(300):
        found = detect_anomaly(list(rng.normal(0.5, 0.1, 41)))
        assert found is not None
        alarms += found.severity in ("medium", "high")
    assert alarms / 300 < 0.03


def test_trend_detects_a_slow_rise_and_not_noise() -> None:
    rng = np.random.default_rng(3)
    rising = np.linspace(1.0, 1.5, 40) + rng.normal(0, 0.03, 40)
    found = trend(list(rising))
    assert found is not None and found.direction == "increasing" and found.p_value < 0.01
    assert abs(found.slope - 0.5 / 39) < 0.004
    flat = trend(list(rng.normal(1.0, 0.03, 40)))
    assert flat is not None and flat.direction == "none"


def test_cusum_finds_a_level_shift_soon_after_it_happens() -> None:
    rng = np.random.default_rng(4)
    series = list(rng.normal(1.0, 0.05, 30)) + list(rng.normal(1.2, 0.05, 20))
    at = change_point(series)
    assert at is not None and 30 <= at <= 33
    assert change_point(list(rng.normal(1.0, 0.05, 50))) is None


def test_baseline_comparison_is_significant_only_for_a_real_shift() -> None:
    rng = np.random.default_rng(5)
    base = list(rng.normal(0.80, 0.02, 30))
    worse = compare_to_baseline(list(rng.normal(0.75, 0.02, 30)), base)
    assert worse is not None and worse.significant() and worse.mean_change < -0.05
    same = compare_to_baseline(list(rng.normal(0.80, 0.02, 30)), base)
    assert same is not None and not same.significant()
