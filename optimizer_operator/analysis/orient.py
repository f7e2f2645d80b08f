"""Orient: what a metric's recent history says — anomalies, trend, change points, baselines.

Pure numpy (and analysis.significance) over a series of samples (oldest first), as
the policy loop reads them from Prometheus range queries.

* Anomaly: four detectors on the latest point against the history before it —
  z-score, IQR fences, MAD (robust z), and EWMA control limits — combined into
  one verdict whose severity is how many agree (none, low, medium, high).
* Trend: Theil-Sen slope with a Mann-Kendall test of its significance.
* Change point: a two-sided CUSUM on standardized values.
* Baseline comparison: Welch's t-test and Mann-Whitney U between two windows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from .significance import mann_whitney_p, normal_sf, theil_sen_slope, welch_p

Severity = Literal["none", "low", "medium", "high"]


def _clean(values: Sequence[float]) -> np.ndarray:
    return np.asarray([v for v in values if math.isfinite(v)], dtype=float)


@dataclass(frozen=True)
class Anomaly:
    """The latest point against its history."""

    value: float
    detectors: dict[str, bool]
    severity: Severity
    score: float  # robust z of the latest point

    @property
    def anomalous(self) -> bool:
        return self.severity != "none"


def detect_anomaly(
    series: Sequence[float],
    *,
    z: float = 3.0,
    iqr_k: float = 1.5,
    mad_z: float = 3.5,
    ewma_alpha: float = 0.3,
    ewma_l: float = 3.0,
    min_history: int = 10,
) -> Anomaly | None:
    """None below ``min_history`` points before the latest one."""
    x = _clean(series)
    if len(x) < min_history + 1:
        return None
    history, last = x[:-1], float(x[-1])
    mean, sd = float(history.mean()), float(history.std(ddof=1))
    q1, q3 = np.percentile(history, [25, 75])
    spread = q3 - q1
    median = float(np.median(history))
    mad = float(np.median(np.abs(history - median)))
    robust = 0.6745 * (last - median) / mad if mad > 0 else (0.0 if last == median else math.inf)
    # EWMA control chart: limits from the history's sd and the EWMA's asymptotic variance.
    ewma = history[0]
    for v in history[1:]:
        ewma = ewma_alpha * v + (1 - ewma_alpha) * ewma
    ewma_next = ewma_alpha * last + (1 - ewma_alpha) * ewma
    ewma_sd = sd * math.sqrt(ewma_alpha / (2 - ewma_alpha))
    detectors = {
        "zscore": sd > 0 and abs(last - mean) / sd > z,
        "iqr": last < q1 - iqr_k * spread or last > q3 + iqr_k * spread
        if spread > 0
        else last != median,
        "mad": abs(robust) > mad_z,
        "ewma": ewma_sd > 0 and abs(ewma_next - mean) > ewma_l * ewma_sd,
    }
    votes = sum(detectors.values())
    severity: Severity = (
        "none" if votes == 0 else "low" if votes == 1 else ("medium" if votes == 2 else "high")
    )
    return Anomaly(last, detectors, severity, robust)


@dataclass(frozen=True)
class Trend:
    slope: float  # per sample (Theil-Sen)
    p_value: float  # Mann-Kendall, two-sided
    direction: Literal["increasing", "decreasing", "none"]


def trend(series: Sequence[float], alpha: float = 0.05) -> Trend | None:
    """Theil-Sen slope and Mann-Kendall significance; None below 8 points."""
    y = _clean(series)
    n = len(y)
    if n < 8:
        return None
    s = 0.0
    for i in range(n - 1):
        s += float(np.sign(y[i + 1 :] - y[i]).sum())
    _, counts = np.unique(y, return_counts=True)
    var = (n * (n - 1) * (2 * n + 5) - float((counts * (counts - 1) * (2 * counts + 5)).sum())) / 18
    if var <= 0:
        return Trend(0.0, 1.0, "none")
    zstat = (s - math.copysign(1, s)) / math.sqrt(var) if s != 0 else 0.0
    p = min(1.0, 2 * normal_sf(abs(zstat)))
    slope = theil_sen_slope(y, np.arange(n))
    direction: Literal["increasing", "decreasing", "none"] = "none"
    if p < alpha:
        direction = "increasing" if s > 0 else "decreasing"
    return Trend(slope, p, direction)


def change_point(
    series: Sequence[float], *, k: float = 0.5, h: float = 5.0, reference: int = 10
) -> int | None:
    """Index where a two-sided CUSUM (in units of the first ``reference`` points' sd)
    crosses ``h``; None when it never does or the reference is too short or flat."""
    x = _clean(series)
    if len(x) <= reference:
        return None
    ref = x[:reference]
    mu, sd = float(ref.mean()), float(ref.std(ddof=1))
    if sd == 0:
        sd = max(abs(mu) * 1e-3, 1e-12)
    hi = lo = 0.0
    for i, v in enumerate(x):
        zv = (v - mu) / sd
        hi = max(0.0, hi + zv - k)
        lo = max(0.0, lo - zv - k)
        if hi > h or lo > h:
            return i
    return None


@dataclass(frozen=True)
class BaselineComparison:
    mean_change: float  # relative change of the current window's mean vs the baseline's
    welch_p: float
    mann_whitney_p: float

    def significant(self, alpha: float = 0.05) -> bool:
        return self.welch_p < alpha and self.mann_whitney_p < alpha


def compare_to_baseline(
    current: Sequence[float], baseline: Sequence[float]
) -> BaselineComparison | None:
    """Welch's t and Mann-Whitney U between two windows; None below 3 points each."""
    c, b = _clean(current), _clean(baseline)
    if len(c) < 3 or len(b) < 3:
        return None
    bm = float(b.mean())
    change = (float(c.mean()) - bm) / abs(bm) if bm else float(c.mean()) - bm
    if np.all(c == c[0]) and np.all(b == c[0]):
        return BaselineComparison(0.0, 1.0, 1.0)
    welch = welch_p(c, b)
    mw = mann_whitney_p(c, b)
    return BaselineComparison(change, welch if math.isfinite(welch) else 1.0, mw)
