"""Windowed aggregates of one variant from Prometheus.

``window_stats`` gives, over one window (1 minute to 7 days), the request count
and rate, latency mean / p50 / p95 / p99, error rate, cost per request and
quality, and the spread (standard deviation over time) of quality and p95
latency; ``metric_series`` the per-step series a baseline comparison
(analysis.baselines) tests.

Every query is bounded by the source's timeout; a metric without data is left
out rather than guessed.
"""

from __future__ import annotations

import math
from datetime import datetime

import numpy as np

from .prometheus import (
    BUILTIN,
    SELECTOR,
    MetricSource,
    MetricsUnavailable,
    chosen_evaluators,
    render,
)

Weights = tuple[tuple[str, float], ...]  # the evaluators that make quality_score; () all

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
    evaluators: Weights = (),
) -> dict[str, float]:
    """The aggregates of one variant over the last ``window_seconds`` (quality made of
    ``evaluators`` when chosen)."""
    if not MIN_WINDOW <= window_seconds <= MAX_WINDOW:
        raise ValueError(f"window {window_seconds:g}s outside 1m..7d")

    def q(template: str, window: str) -> str:
        return render(
            chosen_evaluators(template, evaluators),
            llm_config=llm_config,
            variant=variant,
            namespace=namespace,
            window=window,
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
    evaluators: Weights = (),
) -> list[float]:
    """Per-step values of a built-in metric over ``seconds`` ending at ``end`` (now);
    quality made of ``evaluators`` when chosen."""
    step = step_for(seconds)
    query = render(
        chosen_evaluators(BUILTIN[metric][0], evaluators),
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
