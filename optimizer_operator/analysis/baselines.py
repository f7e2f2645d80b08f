"""The stable version observed: its aggregates over the policy's windows, its SLA
headroom, and its comparison with each baseline (initial, best, golden, rolling,
pre-change; Welch's t and Mann-Whitney U, in analysis.orient)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from ..api.common import parse_decimal, parse_duration
from ..api.llmconfig import VersionRecord
from ..api.policy import (
    BaselineResult,
    Observation,
    OptimizationPolicySpec,
    OptimizationPolicyStatus,
    WindowStats,
    request_bounds,
)
from ..api.timestamps import format_ts
from ..api.variants import stable_variant_id
from ..observe.aggregates import metric_series, relative_change, window_stats
from ..observe.policy_metrics import PolicyMetrics
from ..observe.prometheus import MetricSource, MetricsUnavailable
from .orient import compare_to_baseline, detect_anomaly

COMPARED = ("quality_score", "cost_per_request_usd", "latency_p95_seconds", "error_rate")


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def observe_stable(
    source: MetricSource,
    spec: OptimizationPolicySpec,
    status: OptimizationPolicyStatus,
    *,
    namespace: str,
    history: list[VersionRecord],
    now: datetime,
    price_of: Callable[[str], float | None],
) -> tuple[Observation, list[BaselineResult]]:
    """Aggregates of the stable version over the policy's windows, its SLA headroom, and
    the comparison with each baseline: initial (trial 0), best (the chosen trial), golden
    (a pinned trial), rolling (this window against the one before, with tests) and
    pre-change (the previous version before the last change against now, with tests)."""
    current = history[-1]
    llm_config = spec.target_ref.name
    variant = stable_variant_id(current.version)
    model = f"{current.provider}/{current.model}"
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
            evaluators=spec.quality_weights(),
        )
        stats.append(WindowStats(window=w, values={k: f"{v:.6g}" for k, v in values.items()}))
    now_values = {k: float(v) for k, v in (stats[0].values if stats else {}).items()}
    sla: dict[str, str] = {}
    for c, bound in request_bounds(spec.constraints):
        key, metric, upper = c.key, c.metric, c.upper
        if metric not in now_values:
            continue
        b, v = float(parse_decimal(bound)), now_values[metric]
        room = (b - v) / abs(b) if upper else (v - b) / abs(b) if b else 0.0
        sla[key] = f"{v:.4g} vs {'max' if upper else 'min'} {b:g} (headroom {room:+.0%})"
    observation = Observation(
        observed_at=format_ts(now),
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
    history: list[VersionRecord],
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
    current = stable_variant_id(history[-1].version)

    def series(metric: str, variant: str, seconds: float, end: datetime | None) -> list[float]:
        return metric_series(
            source, metric, namespace=namespace, llm_config=llm_config, variant=variant,
            seconds=seconds, end=end, evaluators=spec.quality_weights(),
        )  # fmt: skip

    def rolling(metric: str) -> tuple[list[float], list[float]]:
        both = series(metric, current, 2 * window, None)
        half = len(both) // 2
        return both[half:], both[:half]

    out.append(_tested("rolling", f"{current}, the {int(window)}s before the last", rolling))
    if len(history) >= 2:
        before, changed = history[-2], history[-1].applied_at
        if changed:
            at = _ts(changed)
            previous = stable_variant_id(before.version)

            def pre_change(metric: str) -> tuple[list[float], list[float]]:
                return (
                    series(metric, current, window, None),
                    series(metric, previous, window, at),
                )

            out.append(
                _tested(
                    "preChange",
                    f"{previous} in the {int(window)}s before {changed}",
                    pre_change,
                )
            )
    return out


def stable_anomaly(metrics: PolicyMetrics, variant: str) -> str | None:
    """A high-severity anomaly on the stable variant's error rate or p95 latency over the
    last 10 minutes (no data: nothing to say)."""
    for metric in ("error_rate", "latency_p95_seconds"):
        try:
            series = metrics.series(metric, variant, span=600, step=30, window="1m", builtin=True)
        except MetricsUnavailable:
            continue
        found = detect_anomaly(series)
        if found is not None and found.severity == "high":
            return f"{metric} anomaly ({found.value:.4g}, robust z {found.score:.1f})"
    return None
