"""Canary statistics: compare a candidate with stable, metric by metric.

Two tests, for two kinds of evidence:

* **Mann-Whitney U with an effect-size gate** on per-interval samples of a
  metric (latency percentiles, cost, quality), classified as Kayenta does:
  ``High`` or ``Low`` when the difference is significant *and* larger than the
  gate, ``Pass`` otherwise, ``NoData`` below the minimum sample.
* **An anytime-valid sequential test** (the normal-mixture mSPRT of Johari et
  al., "Always Valid Inference", 2017) on cumulative event counts for
  guardrails such as the error rate. Its likelihood ratio is a martingale
  under the null, so checking it at every interval does not inflate false
  rollbacks (a fixed-sample test checked repeatedly would).

Verdicts: ``Pass``, ``Marginal`` (worse, but within tolerance or not
significant), ``Fail``, and ``NoData`` per metric; a measurement's verdict is
``Fail`` if any acting metric fails, ``Inconclusive`` if any lacks data, else
``Marginal`` or ``Pass``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from .significance import mann_whitney_p

Direction = Literal["lowerIsBetter", "higherIsBetter"]
Classification = Literal["High", "Low", "Pass", "NoData"]
MetricVerdict = Literal["Pass", "Marginal", "Fail", "NoData"]
Verdict = Literal["Pass", "Marginal", "Fail", "Inconclusive"]


@dataclass(frozen=True)
class MetricResult:
    """One metric's comparison, as written into a Rollout's status."""

    metric: str
    canary: float | None
    stable: float | None
    effect: float | None  # relative change of canary vs stable (0.1 = +10%)
    p_value: float | None
    classification: Classification
    verdict: MetricVerdict
    reason: str
    dry_run: bool = False


def relative_effect(canary: float, stable: float) -> float:
    """(canary - stable) / |stable|; the absolute difference when stable is 0."""
    if stable == 0:
        return canary - stable
    return (canary - stable) / abs(stable)


def _bad(direction: Direction, effect: float) -> bool:
    return effect > 0 if direction == "lowerIsBetter" else effect < 0


def mann_whitney(
    metric: str,
    canary: Sequence[float],
    stable: Sequence[float],
    *,
    direction: Direction = "lowerIsBetter",
    tolerance: float = 0.1,
    alpha: float = 0.01,
    min_samples: int = 5,
    dry_run: bool = False,
) -> MetricResult:
    """Compare per-interval samples; fail when worse by more than ``tolerance`` (relative,
    on medians) with a two-sided Mann-Whitney p-value below ``alpha``."""
    c, s = _finite(canary), _finite(stable)
    if len(c) < min_samples or len(s) < min_samples:
        return _too_few(metric, c, s, min_samples, _median, dry_run)
    c_med, s_med = float(np.median(c)), float(np.median(s))
    effect = relative_effect(c_med, s_med)
    p = _mw_p(c, s)
    significant = p < alpha
    if significant and effect > tolerance:
        classification: Classification = "High"
    elif significant and effect < -tolerance:
        classification = "Low"
    else:
        classification = "Pass"
    bad = _bad(direction, effect)
    if bad and classification in ("High", "Low"):
        verdict: MetricVerdict = "Fail"
        limit = _pct(tolerance, sign=False)
        reason = f"{_pct(effect)} vs stable (p={p:.2g}), beyond the {limit} tolerance"
    elif bad and (significant or abs(effect) > tolerance):
        verdict = "Marginal"
        reason = f"{_pct(effect)} vs stable (p={p:.2g}): worse, but " + (
            "within tolerance" if significant else "not significant"
        )
    else:
        verdict = "Pass"
        reason = f"{_pct(effect)} vs stable (p={p:.2g})"
    return MetricResult(metric, c_med, s_med, effect, p, classification, verdict, reason, dry_run)


def compare_two_sided(
    metric: str,
    canary: Sequence[float],
    stable: Sequence[float],
    direction: Direction,
    alpha: float,
    min_samples: int = 5,
) -> MetricResult:
    """One two-sided Mann-Whitney test for an A/B decision: Pass when the candidate is
    significantly better, Fail when stable is, Marginal when neither (on means, which
    is what a user pays for and sees in a dashboard)."""
    c, s = _finite(canary), _finite(stable)
    if len(c) < min_samples or len(s) < min_samples:
        return _too_few(metric, c, s, min_samples, _mean, False)
    c_mean, s_mean = float(c.mean()), float(s.mean())
    effect = relative_effect(c_mean, s_mean)
    p = _mw_p(c, s)
    if p >= alpha:
        return MetricResult(
            metric,
            c_mean,
            s_mean,
            effect,
            p,
            "Pass",
            "Marginal",
            f"{_pct(effect)} vs stable, not significant (p={p:.2g} >= {alpha:g})",
        )
    worse = _bad(direction, effect)
    return MetricResult(
        metric,
        c_mean,
        s_mean,
        effect,
        p,
        "High" if effect > 0 else "Low",
        "Fail" if worse else "Pass",
        f"{_pct(effect)} vs stable (p={p:.2g}): "
        + ("stable is better" if worse else "the candidate is better"),
    )


def msprt_log_lambda(diff: float, variance: float, tau: float) -> float:
    """log of the normal-mixture mSPRT statistic for an observed difference ``diff`` (over
    the null value) whose estimator has ``variance``, with mixing scale ``tau``."""
    v, t2 = variance, tau * tau
    return 0.5 * math.log(v / (v + t2)) + (t2 * diff * diff) / (2.0 * v * (v + t2))


def sequential_rate(
    metric: str,
    canary_events: float,
    canary_total: float,
    stable_events: float,
    stable_total: float,
    *,
    margin: float = 0.0,
    alpha: float = 0.01,
    tau: float = 0.02,
    min_total: int = 50,
    max_rate: float | None = None,
    dry_run: bool = False,
) -> MetricResult:
    """Anytime-valid one-sided test that the canary's event rate exceeds stable's by more
    than ``margin`` (absolute), from cumulative counts since the rollout began."""
    if canary_total < min_total or stable_total < min_total:
        return MetricResult(
            metric,
            None,
            None,
            None,
            None,
            "NoData",
            "NoData",
            f"{canary_total:.0f} canary / {stable_total:.0f} stable requests, need {min_total}",
            dry_run,
        )
    pc, ps = canary_events / canary_total, stable_events / stable_total
    pooled = (canary_events + stable_events) / (canary_total + stable_total)
    # Keep the variance away from 0 when no events were seen yet (one pseudo-event).
    pooled = min(max(pooled, 1.0 / (canary_total + stable_total)), 1 - 1e-9)
    variance = pooled * (1 - pooled) * (1 / canary_total + 1 / stable_total)
    diff = pc - ps - margin
    log_lambda = msprt_log_lambda(diff, variance, tau) if diff > 0 else float("-inf")
    p_value = min(1.0, math.exp(-log_lambda)) if diff > 0 else 1.0
    effect = pc - ps
    if max_rate is not None and pc > max_rate and p_value < alpha:
        verdict: MetricVerdict = "Fail"
        reason = f"canary rate {pc:.2%} above the {max_rate:.2%} limit and stable's {ps:.2%}"
    elif p_value < alpha:
        verdict = "Fail"
        reason = (
            f"canary rate {pc:.2%} vs stable {ps:.2%}: higher by more than "
            f"{margin:.2%} (always-valid p={p_value:.2g})"
        )
    elif effect > margin:
        verdict = "Marginal"
        reason = f"canary rate {pc:.2%} vs stable {ps:.2%}: higher, not yet significant"
    else:
        verdict = "Pass"
        reason = f"canary rate {pc:.2%} vs stable {ps:.2%}"
    classification: Classification = "High" if verdict == "Fail" else "Pass"
    return MetricResult(metric, pc, ps, effect, p_value, classification, verdict, reason, dry_run)


def sequential_mean(
    metric: str,
    canary: Sequence[float],
    stable: Sequence[float],
    *,
    direction: Direction = "lowerIsBetter",
    tolerance: float = 0.1,
    alpha: float = 0.01,
    min_samples: int = 3,
    tau_relative: float = 0.05,
    dry_run: bool = False,
) -> MetricResult:
    """Anytime-valid one-sided test on per-interval values (e.g. mean quality per
    interval): fail when the canary is worse than stable by more than ``tolerance``
    (relative). The mSPRT uses the variance seen across intervals, so it may be
    checked at every interval without inflating false failures."""
    c, s = _finite(canary), _finite(stable)
    if len(c) < min_samples or len(s) < min_samples:
        return _too_few(metric, c, s, min_samples, _mean, dry_run)
    c_mean, s_mean = float(c.mean()), float(s.mean())
    effect = relative_effect(c_mean, s_mean)
    variance = float(c.var(ddof=1) / len(c) + s.var(ddof=1) / len(s))
    scale = abs(s_mean) or 1.0
    variance = max(variance, (1e-6 * scale) ** 2)
    sign = 1.0 if direction == "lowerIsBetter" else -1.0
    excess = sign * (c_mean - s_mean) - tolerance * scale  # how far past the tolerance
    if excess > 0:
        log_lambda = msprt_log_lambda(excess, variance, tau_relative * scale)
        p = min(1.0, math.exp(-log_lambda))
    else:
        p = 1.0
    bad = _bad(direction, effect)
    if p < alpha:
        verdict: MetricVerdict = "Fail"
        classification: Classification = "High" if effect > 0 else "Low"
        reason = (
            f"{_pct(effect)} vs stable, beyond the {_pct(tolerance, sign=False)} "
            f"tolerance (always-valid p={p:.2g})"
        )
    elif bad and abs(effect) > tolerance:
        verdict, classification = "Marginal", "Pass"
        reason = f"{_pct(effect)} vs stable: worse, not yet significant"
    else:
        verdict, classification = "Pass", "Pass"
        reason = f"{_pct(effect)} vs stable"
    return MetricResult(metric, c_mean, s_mean, effect, p, classification, verdict, reason, dry_run)


def threshold_check(
    metric: str,
    value: float | None,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    dry_run: bool = False,
) -> MetricResult:
    """An absolute bound on the canary's value."""
    if value is None or not math.isfinite(value):
        return MetricResult(
            metric, None, None, None, None, "NoData", "NoData", "no value for the canary", dry_run
        )
    if maximum is not None and value > maximum:
        return MetricResult(
            metric,
            value,
            None,
            None,
            None,
            "High",
            "Fail",
            f"{value:.4g} above the maximum {maximum:.4g}",
            dry_run,
        )
    if minimum is not None and value < minimum:
        return MetricResult(
            metric,
            value,
            None,
            None,
            None,
            "Low",
            "Fail",
            f"{value:.4g} below the minimum {minimum:.4g}",
            dry_run,
        )
    return MetricResult(
        metric, value, None, None, None, "Pass", "Pass", f"{value:.4g} within bounds", dry_run
    )


def combine(results: Sequence[MetricResult]) -> Verdict:
    """One measurement's verdict; dry-run metrics are reported but never decide."""
    acting = [r for r in results if not r.dry_run]
    if any(r.verdict == "Fail" for r in acting):
        return "Fail"
    if not acting or any(r.verdict == "NoData" for r in acting):
        return "Inconclusive"
    if any(r.verdict == "Marginal" for r in acting):
        return "Marginal"
    return "Pass"


def _mw_p(c: np.ndarray, s: np.ndarray) -> float:
    """Two-sided Mann-Whitney p-value; 1 for identical constant samples."""
    if np.all(c == c[0]) and np.all(s == c[0]):
        return 1.0
    return mann_whitney_p(c, s)


def _finite(values: Sequence[float]) -> np.ndarray:
    return np.asarray([x for x in values if math.isfinite(x)], dtype=float)


def _too_few(
    metric: str,
    c: np.ndarray,
    s: np.ndarray,
    min_samples: int,
    center: Callable[[np.ndarray], float | None],
    dry_run: bool,
) -> MetricResult:
    return MetricResult(
        metric,
        center(c),
        center(s),
        None,
        None,
        "NoData",
        "NoData",
        f"{len(c)} canary / {len(s)} stable samples, need {min_samples}",
        dry_run,
    )


def _mean(x: np.ndarray) -> float | None:
    return float(x.mean()) if len(x) else None


def _median(x: np.ndarray) -> float | None:
    return float(np.median(x)) if len(x) else None


def _pct(x: float, sign: bool = True) -> str:
    return f"{x:+.1%}" if sign else f"{x:.1%}"
