"""One analysis measurement of a rollout: every metric, canary against stable.

Metric queries go through a :class:`MetricSource`; any missing number raises
``MetricsUnavailable`` out of here, so the rollout holds instead of judging.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ..api.common import parse_decimal, parse_duration
from ..api.rollout import ABTest, Analysis, AnalysisMetric, RollbackTrigger
from ..observe.prometheus import (
    BUILTIN,
    COUNTS,
    REQUESTS,
    MetricSource,
    MetricsUnavailable,
    by_variant,
    chosen_evaluators,
    render,
)
from .bandit import ArmReward
from .bounds import BoundEvidence, bound_evidence
from .canary import (
    Classification,
    Direction,
    MetricResult,
    MetricVerdict,
    Verdict,
    combine,
    compare_two_sided,
    mann_whitney,
    relative_effect,
    sequential_mean,
    sequential_rate,
)
from .confidence import Side

DEFAULT_METRICS = [
    AnalysisMetric(name="error_rate", comparison="sequential"),
    AnalysisMetric(name="latency_p95_seconds", comparison="mannWhitney"),
    AnalysisMetric(name="quality_score", comparison="mannWhitney", direction="higherIsBetter"),
]


@dataclass(frozen=True)
class Variants:
    llm_config: str
    namespace: str
    stable: str
    canary: str
    # The evaluators that make quality_score, with weights (empty: all of them).
    evaluators: tuple[tuple[str, float], ...] = ()
    # Per variant id: {{model}} and {{backend}} for templates over backends' own series.
    models: Mapping[str, str] = field(default_factory=dict)
    backends: Mapping[str, str] = field(default_factory=dict)
    # The template counting a variant's requests (analysis.requestsQuery).
    requests: str = REQUESTS

    def query(self, template: str, variant: str, window: str) -> str:
        """``template`` rendered for one of these variants over ``window``."""
        return (
            render(
                chosen_evaluators(template, self.evaluators),
                llm_config=self.llm_config,
                variant=variant,
                namespace=self.namespace,
                window=window,
            )
            .replace("{{model}}", self.models.get(variant, ""))
            .replace("{{backend}}", self.backends.get(variant, variant))
        )


    def paired(self, template: str, window: str) -> tuple[str, bool] | None:
        """``template`` for the canary and stable in one query (``by_variant``), rendered;
        None when it is asked variant by variant."""
        form = by_variant(chosen_evaluators(template, self.evaluators), (self.canary, self.stable))
        if form is None:
            return None
        query, zero = form
        return self.query(query, "", window), zero


def pair_values(
    source: MetricSource, variants: Variants, template: str, window: str
) -> dict[str, float]:
    """``template``'s value for the canary and for stable: one query when it can be, two
    otherwise; a missing value raises MetricsUnavailable either way."""
    pair = (variants.canary, variants.stable)
    form = variants.paired(template, window)
    if form is None:
        return {v: source.value(variants.query(template, v, window)) for v in pair}
    query, zero = form
    found = {labels.get("variant", ""): value for labels, value in source.vector(query)}
    out: dict[str, float] = {}
    for v in pair:
        if v in found:
            out[v] = found[v]
        elif zero:
            out[v] = 0.0
        else:
            raise MetricsUnavailable(f"no data for variant {v} in {query}")
    return out


def pair_series(
    source: MetricSource, variants: Variants, template: str, window: str, span: float, step: float
) -> tuple[list[float], list[float]]:
    """``template`` over ``span`` every ``step`` for the canary and for stable (one range
    query when it can be: not for a template whose absent series count zero, zeros a
    range query by variant would lose); a variant with no series gets an empty list."""
    form = variants.paired(template, window)
    if form is None or form[1]:
        return (
            source.series(variants.query(template, variants.canary, window), span, step),
            source.series(variants.query(template, variants.stable, window), span, step),
        )
    found = source.series_by(form[0], span, step, "variant")
    return found.get(variants.canary, []), found.get(variants.stable, [])


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

    # A minimum sample before any verdict: requests per variant since traffic began (one
    # query for both when it can be, as for each metric below).
    counts = pair_values(source, variants, variants.requests, since)
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
            events = pair_values(source, variants, events_t, since)
            totals = pair_values(source, variants, total_t, since)
            results.append(
                sequential_rate(
                    metric.name,
                    events[variants.canary],
                    totals[variants.canary],
                    events[variants.stable],
                    totals[variants.stable],
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
            canary, stable = pair_series(source, variants, template, _fmt(2 * step), span, step)
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
            results.append(_threshold(metric, analysis, source, variants, since_seconds))
    return Measurement(results, combine(results))


def _threshold(
    metric: AnalysisMetric,
    analysis: Analysis,
    source: MetricSource,
    variants: Variants,
    since_seconds: float,
) -> MetricResult:
    """An analysis metric's absolute bounds, decided as rollback triggers' are: Fail when
    the candidate confidently breaks one, Pass when it confidently meets all, NoData (the
    measurement is inconclusive, so the step keeps collecting) in between."""
    assert metric.threshold is not None
    whole, steps = _evidence_queries(analysis, source, variants, since_seconds)
    evidence = [
        bound_evidence(
            metric.name, metric.query, side, value, analysis.bounds.alphas(), whole, source, steps
        )
        for side, value in _sides(metric.threshold.min, metric.threshold.max)
    ]
    states = {e.state for e in evidence}
    verdict: MetricVerdict = (
        "Fail" if "violated" in states else "NoData" if "undecided" in states else "Pass"
    )
    classification: Classification = "NoData" if verdict == "NoData" else "Pass"
    if verdict == "Fail":
        classification = (
            "Low" if any(e.state == "violated" and e.side == "min" for e in evidence) else "High"
        )
    return MetricResult(
        f"{metric.name}_threshold",
        evidence[0].estimate if evidence else None,
        None,
        None,
        None,
        classification,
        verdict,
        "; ".join(e.describe() for e in evidence),
        metric.dry_run,
    )


def _tolerance(metric: AnalysisMetric, direction: Direction) -> float:
    bound = metric.relative
    if bound is not None:
        chosen = bound.max_increase if direction == "lowerIsBetter" else bound.max_decrease
        if chosen is not None:
            return float(parse_decimal(chosen))
    return 0.1


@dataclass(frozen=True)
class TriggerResult:
    """One rollback trigger at one check. ``breached``: confidently on the wrong side of an
    absolute bound, or past a relative one; ``decided`` is False while the evidence on an
    absolute bound leaves it open (neither breached nor confidently within)."""

    name: str
    severity: str
    breached: bool
    canary: float
    stable: float | None
    reason: str
    decided: bool = True
    evidence: tuple[BoundEvidence, ...] = ()

    @property
    def bounded(self) -> bool:
        """True when the trigger has an absolute bound (min or max)."""
        return bool(self.evidence)


def _bound(value: str | None) -> float | None:
    return None if value is None else float(parse_decimal(value))


def _sides(minimum: str | None, maximum: str | None) -> list[tuple[Side, float]]:
    """The absolute bounds given, as (side, value)."""
    out: list[tuple[Side, float]] = []
    if minimum is not None:
        out.append(("min", float(parse_decimal(minimum))))
    if maximum is not None:
        out.append(("max", float(parse_decimal(maximum))))
    return out


def check_triggers(
    triggers: list[RollbackTrigger],
    analysis: Analysis,
    source: MetricSource,
    variants: Variants,
    since_seconds: float,
) -> list[TriggerResult] | None:
    """Evaluate rollback triggers; None while the canary has fewer than minSampleSize
    requests since its traffic began. ``min``/``max`` are decided on confidence sequences
    over every request since then (``analysis.bounds``); ``maxIncrease``/``maxDecrease``
    compare the last window's values with stable's. Missing numbers raise
    MetricsUnavailable."""
    win = _fmt(parse_duration(analysis.window))

    def q(template: str, variant: str) -> str:
        return variants.query(template, variant, win)

    whole, steps = _evidence_queries(analysis, source, variants, since_seconds)
    alphas = analysis.bounds.alphas()
    if source.value(whole(variants.requests)) < analysis.min_sample_size:
        return None
    out: list[TriggerResult] = []
    for t in triggers:
        template = t.query or BUILTIN.get(t.name, ("", ""))[0]
        if not template:
            raise ValueError(f"trigger {t.name} has no query and is not built in")
        evidence = tuple(
            bound_evidence(t.name, t.query, side, value, alphas, whole, source, steps)
            for side, value in _sides(t.min, t.max)
        )
        why = [e.describe() for e in evidence if e.state == "violated"]
        open_ = [e.describe() for e in evidence if e.state == "undecided"]
        relative = t.max_increase is not None or t.max_decrease is not None
        canary = evidence[0].estimate if evidence else source.value(q(template, variants.canary))
        stable = None
        if relative:
            both = pair_values(source, variants, template, win)
            recent, stable = both[variants.canary], both[variants.stable]
            inc, dec = _bound(t.max_increase), _bound(t.max_decrease)
            effect = relative_effect(recent, stable)
            if inc is not None and effect > inc:
                why.append(f"{effect:+.1%} vs stable > +{inc:.0%}")
            if dec is not None and effect < -dec:
                why.append(f"{effect:+.1%} vs stable < -{dec:.0%}")
            canary = canary if evidence else recent
        decided = bool(why) or not open_
        reason = "; ".join(why or open_) or "; ".join(e.describe() for e in evidence)
        out.append(
            TriggerResult(
                t.name,
                t.severity,
                bool(why),
                canary,
                stable,
                reason or "within bounds",
                decided,
                evidence,
            )
        )
    return out


def _evidence_queries(
    analysis: Analysis, source: MetricSource, variants: Variants, since_seconds: float
) -> tuple[Callable[[str], str], Callable[[str], list[float]]]:
    """How bound evidence reads the candidate: a template over all its traffic so far, and
    a rate-style template per step (a tenth of the window) since its traffic began."""
    span = min(since_seconds, 7 * 86400)
    step = max(parse_duration(analysis.window) / 10.0, 2.0)

    def whole(template: str) -> str:
        return variants.query(template, variants.canary, _fmt(span))

    def steps(template: str) -> list[float]:
        return source.series(variants.query(template, variants.canary, _fmt(step)), span, step)

    return whole, steps


@dataclass(frozen=True)
class ABOutcome:
    """The A/B test's one decision: ``winner`` is canary, stable, or none (no significant
    difference)."""

    winner: str
    result: MetricResult


def ab_decide(
    ab: ABTest, source: MetricSource, variants: Variants, since_seconds: float
) -> ABOutcome | None:
    """None until both variants have ``minSamples`` requests; then one two-sided
    Mann-Whitney test on per-interval samples of the metric since the split began
    (a single test at a fixed horizon, so its error rate is the stated alpha)."""
    since = _fmt(min(since_seconds, 7 * 86400))

    counts = pair_values(source, variants, variants.requests, since).values()
    if min(counts) < ab.min_samples:
        return None
    template = ab.query or BUILTIN.get(ab.metric, ("", ""))[0]
    if not template:
        raise ValueError(f"abTest metric {ab.metric} has no query and is not built in")
    builtin = BUILTIN[ab.metric][1] if ab.metric in BUILTIN else "lowerIsBetter"
    direction: Direction = ab.direction or (
        "higherIsBetter" if builtin == "higherIsBetter" else "lowerIsBetter"
    )
    span = min(since_seconds, 7 * 86400)
    step = max(span / 30.0, 2.0)
    canary, stable = pair_series(source, variants, template, _fmt(step), span, step)
    alpha = float(parse_decimal(ab.alpha))
    result = compare_two_sided(ab.metric, canary, stable, direction, alpha)
    if result.p_value is None or result.effect is None or result.p_value >= alpha:
        return ABOutcome("none", result)
    better = result.effect < 0 if direction == "lowerIsBetter" else result.effect > 0
    return ABOutcome("canary" if better else "stable", result)


def arm_rewards(
    metric_template: str,
    source: MetricSource,
    llm_config: str,
    namespace: str,
    arms: list[str],
    window_seconds: float,
) -> dict[str, ArmReward]:
    """Each arm's reward over the last window: the mean of its per-interval samples, their
    standard error, and its request count. Missing numbers raise MetricsUnavailable."""
    step = max(window_seconds / 10.0, 2.0)
    out: dict[str, ArmReward] = {}
    for arm in arms:
        v = Variants(llm_config, namespace, stable=arm, canary=arm)
        requests = source.value(v.query(REQUESTS, arm, _fmt(window_seconds)))
        samples = source.series(v.query(metric_template, arm, _fmt(2 * step)), window_seconds, step)
        if len(samples) < 2:
            raise MetricsUnavailable(f"{arm}: {len(samples)} reward samples in the window")
        mean = sum(samples) / len(samples)
        sd = (sum((x - mean) ** 2 for x in samples) / (len(samples) - 1)) ** 0.5
        out[arm] = ArmReward(mean, sd / len(samples) ** 0.5, requests)
    return out
