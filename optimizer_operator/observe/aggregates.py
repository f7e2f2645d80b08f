"""Windowed aggregates of one variant from Prometheus, and baselines to compare with.

``window_stats`` gives, over one window (1 minute to 7 days), the request count
and rate, latency mean / p50 / p95 / p99, error rate, cost per request and
quality, and the spread (standard deviation over time) of quality and p95
latency. ``compare_series`` splits per-step series into the two sides of a
baseline comparison (Welch's t and Mann-Whitney U, in analysis.orient).

Every query is bounded by the source's timeout; a metric without data is left
out rather than guessed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime

import numpy as np

from ..analysis.orient import compare_to_baseline
from ..api.common import parse_decimal, parse_duration
from ..api.policy import (
    BaselineResult,
    Observation,
    OptimizationPolicySpec,
    OptimizationPolicyStatus,
    WindowStats,
)
from .prometheus import BUILTIN, SELECTOR, MetricSource, MetricsUnavailable, render

_OK = SELECTOR + ',error_type=""'
WINDOW_QUERIES: dict[str, str] = {
    "requests": "sum(increase(llmopt_requests_total{" + SELECTOR + "}[{{window}}]))",
    "rate_per_second": "sum(rate(llmopt_requests_total{" + SELECTOR + "}[{{window}}]))",
    "latency_mean_seconds": (
        "sum(rate(gen_ai_client_operation_duration_seconds_sum{" + _OK + "}[{{window}}])) / "
        "sum(rate(gen_ai_client_operation_duration_seconds_count{" + _OK + "}[{{window}}]))"
    ),
    **{
        f"latency_p{q}_seconds": (
            f"histogram_quantile(0.{q}, sum by (le) (rate("
            "gen_ai_client_operation_duration_seconds_bucket{" + _OK + "}[{{window}}])))"
        )
        for q in ("50", "95", "99")
    },
    "error_rate": BUILTIN["error_rate"][0],
    "cost_per_request_usd": BUILTIN["cost_per_request_usd"][0],
    "quality_score": BUILTIN["quality_score"][0],
}
SPREAD = ("quality_score", "latency_p95_seconds")  # stddev over time within the window
MIN_WINDOW, MAX_WINDOW = 60.0, 7 * 86400.0


def step_for(window_seconds: float, points: int = 30) -> float:
    """A range-query step giving about ``points`` points, at least 15 s."""
    return max(15.0, window_seconds / points)


def window_stats(
    source: MetricSource,
    *,
    namespace: str,
    llm_config: str,
    variant: str,
    window_seconds: float,
) -> dict[str, float]:
    """The aggregates of one variant over the last ``window_seconds``."""
    if not MIN_WINDOW <= window_seconds <= MAX_WINDOW:
        raise ValueError(f"window {window_seconds:g}s outside 1m..7d")

    def q(template: str, window: str) -> str:
        return render(
            template, llm_config=llm_config, variant=variant, namespace=namespace, window=window
        )

    window = f"{int(window_seconds)}s"
    out: dict[str, float] = {}
    for name, template in WINDOW_QUERIES.items():
        try:
            out[name] = source.value(q(template, window))
        except MetricsUnavailable:
            continue
    step = step_for(window_seconds)
    for name in SPREAD:
        try:
            points = source.series(
                q(WINDOW_QUERIES[name], f"{int(2 * step)}s"), window_seconds, step
            )
        except MetricsUnavailable:
            continue
        if len(points) >= 3:
            out[f"{name}_stddev"] = float(np.std(points, ddof=1))
    return out


def metric_series(
    source: MetricSource,
    metric: str,
    *,
    namespace: str,
    llm_config: str,
    variant: str,
    seconds: float,
    end: datetime | None = None,
) -> list[float]:
    """Per-step values of a built-in metric over ``seconds`` ending at ``end`` (now)."""
    step = step_for(seconds)
    query = render(
        BUILTIN[metric][0],
        llm_config=llm_config,
        variant=variant,
        namespace=namespace,
        window=f"{int(2 * step)}s",
    )
    return source.series(query, seconds, step, end=end)


def relative_change(current: float, baseline: float) -> float:
    return (current - baseline) / abs(baseline) if baseline else current - baseline


def finite(values: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in values.items() if math.isfinite(v)}


COMPARED = ("quality_score", "cost_per_request_usd", "latency_p95_seconds", "error_rate")
SLA = (
    ("minQuality", "min_quality", "quality_score", False),
    ("maxLatencyP95Seconds", "max_latency_p95_seconds", "latency_p95_seconds", True),
    ("maxErrorRate", "max_error_rate", "error_rate", True),
    ("maxCostPerRequestUsd", "max_cost_per_request_usd", "cost_per_request_usd", True),
)


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def observe_stable(
    source: MetricSource,
    spec: OptimizationPolicySpec,
    status: OptimizationPolicyStatus,
    *,
    namespace: str,
    history: list[dict[str, object]],
    now: datetime,
    price_of: Callable[[str], float | None],
) -> tuple[Observation, list[BaselineResult]]:
    """Aggregates of the stable version over the policy's windows, its SLA headroom, and
    the comparison with each baseline: initial (trial 0), best (the chosen trial), golden
    (a pinned trial), rolling (this window against the one before, with tests) and
    pre-change (the previous version before the last change against now, with tests)."""
    current = history[-1]
    llm_config = spec.target_ref.name
    variant = f"v{current['version']}"
    model = f"{current['provider']}/{current['model']}"
    price = price_of(model)
    windows = sorted(spec.observe.windows, key=parse_duration)
    stats: list[WindowStats] = []
    for w in windows:
        values = window_stats(
            source,
            namespace=namespace,
            llm_config=llm_config,
            variant=variant,
            window_seconds=parse_duration(w),
        )
        stats.append(WindowStats(window=w, values={k: f"{v:.6g}" for k, v in values.items()}))
    now_values = {k: float(v) for k, v in (stats[0].values if stats else {}).items()}
    sla: dict[str, str] = {}
    for key, attr, metric, upper in SLA:
        bound = getattr(spec.constraints, attr)
        if bound is None or metric not in now_values:
            continue
        b, v = float(parse_decimal(bound)), now_values[metric]
        room = (b - v) / abs(b) if upper else (v - b) / abs(b) if b else 0.0
        sla[key] = f"{v:.4g} vs {'max' if upper else 'min'} {b:g} (headroom {room:+.0%})"
    observation = Observation(
        observed_at=now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        variant=variant,
        model=model,
        list_price_per_mtok=None if price is None else f"{price:g}",
        windows=stats,
        sla=sla,
        message="" if now_values else f"no data for {variant} in the last {windows[0]}",
    )
    return observation, _baselines(
        source, spec, status, namespace, history, now_values, parse_duration(windows[0])
    )


def _point(
    kind: str, source_name: str, metrics: dict[str, str], now_values: dict[str, float]
) -> BaselineResult:
    changes = {
        m: f"{relative_change(now_values[m], float(metrics[m])):+.2%}"
        for m in COMPARED
        if m in metrics and m in now_values
    }
    return BaselineResult(kind=kind, source=source_name, changes=changes)


def _tested(
    kind: str,
    source_name: str,
    fetch: Callable[[str], tuple[list[float], list[float]]],
) -> BaselineResult:
    result = BaselineResult(kind=kind, source=source_name)
    missing: list[str] = []
    for m in COMPARED:
        try:
            now_side, base_side = fetch(m)
        except MetricsUnavailable as exc:
            missing.append(f"{m}: {exc}"[:160])
            continue
        cmp = compare_to_baseline(now_side, base_side)
        if cmp is None:
            missing.append(f"{m}: {len(now_side)} points now, {len(base_side)} in the baseline")
            continue
        result.changes[m] = f"{cmp.mean_change:+.2%}"
        result.p_values[m] = f"welch {cmp.welch_p:.3g}, mw {cmp.mann_whitney_p:.3g}"
        if cmp.significant():
            result.significant.append(m)
    result.message = "; ".join(missing)[:1000]
    return result


def _baselines(
    source: MetricSource,
    spec: OptimizationPolicySpec,
    status: OptimizationPolicyStatus,
    namespace: str,
    history: list[dict[str, object]],
    now_values: dict[str, float],
    window: float,
) -> list[BaselineResult]:
    out: list[BaselineResult] = []
    records = {r.number: r for r in status.trial_records}
    initial = records.get(0)
    if initial is not None and initial.rollout is None and initial.metrics:
        out.append(_point("initial", "trial 0 (the config the policy started from)",
                          initial.metrics, now_values))  # fmt: skip
    if status.best is not None and status.best.metrics:
        out.append(_point("best", f"trial {status.best.number} (best so far)",
                          status.best.metrics, now_values))  # fmt: skip
    golden = records.get(spec.observe.golden) if spec.observe.golden is not None else None
    if golden is not None and golden.metrics:
        out.append(_point("golden", f"trial {golden.number} (spec.observe.golden)",
                          golden.metrics, now_values))  # fmt: skip
    llm_config = spec.target_ref.name
    current = f"v{history[-1]['version']}"

    def series(metric: str, variant: str, seconds: float, end: datetime | None) -> list[float]:
        return metric_series(
            source, metric, namespace=namespace, llm_config=llm_config, variant=variant,
            seconds=seconds, end=end,
        )  # fmt: skip

    def rolling(metric: str) -> tuple[list[float], list[float]]:
        both = series(metric, current, 2 * window, None)
        half = len(both) // 2
        return both[half:], both[:half]

    out.append(_tested("rolling", f"{current}, the {int(window)}s before the last", rolling))
    if len(history) >= 2:
        before, changed = history[-2], str(history[-1].get("appliedAt") or "")
        if changed:
            at = _ts(changed)

            def pre_change(metric: str) -> tuple[list[float], list[float]]:
                return (
                    series(metric, current, window, None),
                    series(metric, f"v{before['version']}", window, at),
                )

            out.append(
                _tested(
                    "preChange",
                    f"v{before['version']} in the {int(window)}s before {changed}",
                    pre_change,
                )
            )
    return out
