"""One analysis measurement of a rollout: every metric, canary against stable.

Metric queries go through a :class:`MetricSource`; any missing number raises
``MetricsUnavailable`` out of here, so the rollout holds instead of judging.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..api.common import parse_decimal, parse_duration
from ..api.rollout import Analysis, AnalysisMetric
from ..observe.prometheus import BUILTIN, COUNTS, SELECTOR, MetricSource, render
from .canary import (
    Direction,
    MetricResult,
    Verdict,
    combine,
    mann_whitney,
    sequential_mean,
    sequential_rate,
    threshold_check,
)

DEFAULT_METRICS = [
    AnalysisMetric(name="error_rate", comparison="sequential"),
    AnalysisMetric(name="latency_p95_seconds", comparison="mannWhitney"),
    AnalysisMetric(name="quality_score", comparison="mannWhitney", direction="higherIsBetter"),
]
REQUESTS = "sum(increase(llmopt_requests_total{" + SELECTOR + "}[{{window}}]))"


@dataclass(frozen=True)
class Variants:
    llm_config: str
    namespace: str
    stable: str
    canary: str


@dataclass(frozen=True)
class Measurement:
    results: list[MetricResult]
    verdict: Verdict


def _fmt(seconds: float) -> str:
    return f"{max(1, int(seconds))}s"


def _direction(metric: AnalysisMetric) -> Direction:
    if (
        metric.query is None
        and metric.name in BUILTIN
        and "direction" not in metric.model_fields_set
    ):
        return BUILTIN[metric.name][1]  # type: ignore[return-value]
    return metric.direction


def measure(
    analysis: Analysis, source: MetricSource, variants: Variants, since_seconds: float
) -> Measurement:
    """Judge the canary now. ``since_seconds``: how long it has had traffic (for counts)."""
    window = parse_duration(analysis.window)
    since = _fmt(min(since_seconds, 7 * 86400))

    def q(template: str, variant: str, win: str) -> str:
        return render(
            template,
            llm_config=variants.llm_config,
            variant=variant,
            namespace=variants.namespace,
            window=win,
        )

    # A minimum sample before any verdict: requests per variant since traffic began.
    counts = {v: source.value(q(REQUESTS, v, since)) for v in (variants.canary, variants.stable)}
    if min(counts.values()) < analysis.min_sample_size:
        waiting = MetricResult(
            "sample_size",
            counts[variants.canary],
            counts[variants.stable],
            None,
            None,
            "NoData",
            "NoData",
            f"{counts[variants.canary]:.0f} canary / {counts[variants.stable]:.0f} stable "
            f"requests, need {analysis.min_sample_size} each",
        )
        return Measurement([waiting], "Inconclusive")

    results: list[MetricResult] = []
    for metric in analysis.metrics or DEFAULT_METRICS:
        template = metric.query or BUILTIN.get(metric.name, ("", ""))[0]
        if not template:
            raise ValueError(f"metric {metric.name} has no query and is not built in")
        direction = _direction(metric)
        if metric.comparison == "sequential" and metric.name in COUNTS and metric.query is None:
            events_t, total_t = COUNTS[metric.name]
            margin = (
                float(parse_decimal(metric.relative.max_increase))
                if metric.relative and metric.relative.max_increase
                else 0.0
            )
            maximum = (
                float(parse_decimal(metric.threshold.max))
                if metric.threshold and metric.threshold.max
                else None
            )
            results.append(
                sequential_rate(
                    metric.name,
                    source.value(q(events_t, variants.canary, since)),
                    source.value(q(total_t, variants.canary, since)),
                    source.value(q(events_t, variants.stable, since)),
                    source.value(q(total_t, variants.stable, since)),
                    margin=margin,
                    max_rate=maximum,
                    min_total=analysis.min_sample_size,
                    dry_run=metric.dry_run,
                )
            )
        elif metric.comparison in ("mannWhitney", "sequential"):
            step = max(window / 10.0, 2.0)
            # Each sample is the metric over its own step (rate over two steps for stability).
            # The sequential test sees every interval since traffic began (that is what
            # keeps it valid under repeated checks); Mann-Whitney sees the last window.
            span = min(since_seconds, 7 * 86400) if metric.comparison == "sequential" else window
            canary = source.series(q(template, variants.canary, _fmt(2 * step)), span, step)
            stable = source.series(q(template, variants.stable, _fmt(2 * step)), span, step)
            compare = sequential_mean if metric.comparison == "sequential" else mann_whitney
            results.append(
                compare(
                    metric.name,
                    canary,
                    stable,
                    direction=direction,
                    tolerance=_tolerance(metric, direction),
                    dry_run=metric.dry_run,
                )
            )
        if metric.threshold is not None and metric.comparison != "sequential":
            value = source.value(q(template, variants.canary, _fmt(window)))
            results.append(
                threshold_check(
                    f"{metric.name}_threshold",
                    value,
                    minimum=float(parse_decimal(metric.threshold.min))
                    if metric.threshold.min
                    else None,
                    maximum=float(parse_decimal(metric.threshold.max))
                    if metric.threshold.max
                    else None,
                    dry_run=metric.dry_run,
                )
            )
    return Measurement(results, combine(results))


def _tolerance(metric: AnalysisMetric, direction: Direction) -> float:
    bound = metric.relative
    if bound is not None:
        chosen = bound.max_increase if direction == "lowerIsBetter" else bound.max_decrease
        if chosen is not None:
            return float(parse_decimal(chosen))
    return 0.1
