"""Absolute bounds decided on evidence: is the candidate confidently within a min or max?

Each built-in metric is read as the per-request data the gateway exports, cumulative
since the candidate's traffic began, and turned into two confidence sequences
(``analysis.confidence``): one at the false-rollback level, one at the false-pass level.

* ``quality_score``: the scores' sum and count, and their histogram buckets for the
  variance (scores are on [0, 1]; ``confidence.second_moment``). When several evaluators score the
  same requests their scores are not independent, so the sample counts as the total
  divided by the number of evaluators (never more than the distinct requests scored).
* ``error_rate``: errors out of requests, a proportion.
* ``win_rate``: the mean of the candidate's pair scores against stable (pairwise
  judging), with their variance from their histogram, exact: each bucket is one value a
  score can take. Ties and graded verdicts make it smaller than a proportion's.
* ``latency_p95_seconds``: p95 <= L exactly when at most 5% of successful requests take
  longer than L; that share comes from the duration histogram, counted at the bucket
  edges either side of L (the side that cannot overstate the evidence for each decision).
* anything else (``cost_per_request_usd``, any query): batch means, the metric's value
  per analysis step since traffic began, each step one observation.

Missing numbers raise ``MetricsUnavailable``: no evidence, no decision.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from ..observe.prometheus import (
    BUILTIN,
    COUNTS,
    LATENCY_BUCKETS,
    PAIR_SCORE_BUCKETS,
    PAIR_SCORE_COUNT,
    PAIR_SCORE_SUM,
    QUALITY_BUCKETS,
    QUALITY_COUNTS,
    QUALITY_SUM,
    MetricSource,
    MetricsUnavailable,
)
from .confidence import (
    TIGHTEST_AT_INTERVALS,
    BoundState,
    Interval,
    Side,
    bounded_variance,
    decide,
    level_moment,
    mean_interval,
    proportion_interval,
    second_moment,
    shown,
)

P95_TAIL = 0.05
MIN_BATCHES = 5

Query = Callable[[str], str]  # a template -> the query for the candidate since traffic began


@dataclass(frozen=True)
class BoundEvidence:
    """One bound at one check: the estimate, the interval shown, the sample, the state."""

    metric: str
    side: Side
    bound: float
    estimate: float
    interval: Interval
    n: float
    state: BoundState
    unit: str = "requests"
    # latency: the estimate and interval are the share of requests slower than the bound.
    tail_share: bool = False

    def describe(self) -> str:
        """e.g. ``quality_score 0.812 [0.796, 0.829] vs min 0.8: not yet decided, 1,140
        requests``."""
        verdict = {
            "violated": "confidently breaks it",
            "holds": "confidently meets it",
            "undecided": "not yet decided",
        }[self.state]
        count = f"{self.n:,.0f} {self.unit}"
        if self.tail_share:
            return (
                f"{self.metric}: {self.estimate:.1%} of requests over {self.bound:g}s "
                f"[{self.interval.low:.1%}, {self.interval.high:.1%}] vs at most "
                f"{P95_TAIL:.0%}: {verdict}, {count}"
            )
        return (
            f"{self.metric} {self.estimate:.4g} [{_g(self.interval.low)}, "
            f"{_g(self.interval.high)}] vs {self.side} {self.bound:g}: {verdict}, {count}"
        )


def _g(x: float) -> str:
    return f"{x:.4g}"


def _one(query: Query, source: MetricSource, template: str) -> float:
    return source.value(query(template))


def _buckets(query: Query, source: MetricSource, template: str) -> list[tuple[float, float]]:
    out = []
    for labels, value in source.vector(query(template)):
        try:
            edge = float(labels.get("le", "nan"))
        except ValueError:
            continue
        if not math.isnan(edge):
            out.append((edge, value))
    return sorted(out)


def _scores(
    name: str, side: Side, bound: float, alphas: tuple[float, float], mean: float,
    moment: float, n: float, unit: str = "requests",
) -> BoundEvidence:  # fmt: skip
    """A bound on the mean of ``n`` scores on [0, 1] with second moment ``moment``."""
    mean = min(max(mean, 0.0), 1.0)
    sd = math.sqrt(bounded_variance(mean, moment, n))
    rollback, passing = (mean_interval(mean, sd, n, a) for a in alphas)
    return BoundEvidence(
        name, side, bound, mean, shown(side, rollback, passing), n,
        decide(side, bound, rollback, passing), unit,
    )  # fmt: skip


def _quality(
    side: Side, bound: float, alphas: tuple[float, float], query: Query, source: MetricSource
) -> BoundEvidence:
    counts = [v for _, v in source.vector(query(QUALITY_COUNTS)) if v > 0]
    total = sum(counts)
    if total <= 0:
        raise MetricsUnavailable("no quality scores for the candidate yet")
    mean = _one(query, source, QUALITY_SUM) / total
    moment = second_moment(_buckets(query, source, QUALITY_BUCKETS))
    return _scores("quality_score", side, bound, alphas, mean, moment, total / len(counts))


def _win_rate(
    side: Side, bound: float, alphas: tuple[float, float], query: Query, source: MetricSource
) -> BoundEvidence:
    # No series yet is no pair judged yet, not a failure.
    n = sum(v for _, v in source.vector(query(PAIR_SCORE_COUNT)))
    if n <= 0:
        raise MetricsUnavailable(
            "no judged pairs for the candidate yet (win_rate: from the gateway's pairwise "
            "evaluator; check that it is configured and under its spend cap)"
        )
    mean = _one(query, source, PAIR_SCORE_SUM) / n
    moment = level_moment(_buckets(query, source, PAIR_SCORE_BUCKETS))
    return _scores("win_rate", side, bound, alphas, mean, moment, n, "judged pairs")


def _rate(
    name: str,
    side: Side,
    bound: float,
    alphas: tuple[float, float],
    query: Query,
    source: MetricSource,
) -> BoundEvidence:
    events_t, total_t = COUNTS[name]
    total = _one(query, source, total_t)
    if total <= 0:
        raise MetricsUnavailable(f"no requests for the candidate yet ({name})")
    events = _one(query, source, events_t)
    rollback, passing = (proportion_interval(events, total, a) for a in alphas)
    return BoundEvidence(
        name,
        side,
        bound,
        events / total,
        shown(side, rollback, passing),
        total,
        decide(side, bound, rollback, passing),
    )


def _latency_p95(
    bound: float, alphas: tuple[float, float], query: Query, source: MetricSource
) -> BoundEvidence:
    buckets = _buckets(query, source, LATENCY_BUCKETS)
    total = max((c for e, c in buckets if math.isinf(e)), default=0.0)
    if total <= 0:
        raise MetricsUnavailable("no successful requests for the candidate yet")
    # Slower than the bound: at least those above the first edge at or over it, at most
    # those above the last edge at or under it.
    at_or_above = [c for e, c in buckets if e >= bound]
    at_or_below = [c for e, c in buckets if e <= bound]
    surely = total - (at_or_above[0] if at_or_above else total)
    maybe = total - (at_or_below[-1] if at_or_below else 0.0)
    a_rollback, a_pass = alphas
    rollback = proportion_interval(surely, total, a_rollback)
    passing = proportion_interval(maybe, total, a_pass)
    state = decide("max", P95_TAIL, rollback, passing)
    return BoundEvidence(
        "latency_p95_seconds",
        "max",
        bound,
        (surely + maybe) / 2.0 / total,
        Interval(rollback.low, passing.high),
        total,
        state,
        tail_share=True,
    )


def _batches(
    name: str,
    side: Side,
    bound: float,
    alphas: tuple[float, float],
    samples: list[float],
) -> BoundEvidence:
    n = len(samples)
    if n < MIN_BATCHES:
        raise MetricsUnavailable(f"{name}: {n} of {MIN_BATCHES} per-step samples so far")
    mean = sum(samples) / n
    var = sum((x - mean) ** 2 for x in samples) / (n - 1)
    # A constant series (a fixed price per request) still leaves room for what the next
    # steps bring: the variance never falls below a 1e-3 relative spread.
    sd = max(math.sqrt(var), 1e-3 * abs(mean), 1e-12)
    rollback, passing = (mean_interval(mean, sd, n, a, TIGHTEST_AT_INTERVALS) for a in alphas)
    return BoundEvidence(
        name,
        side,
        bound,
        mean,
        shown(side, rollback, passing),
        n,
        decide(side, bound, rollback, passing),
        unit="steps",
    )


def bound_evidence(
    name: str,
    custom_query: str | None,
    side: Side,
    bound: float,
    alphas: tuple[float, float],
    query: Query,
    source: MetricSource,
    steps: Callable[[str], list[float]],
) -> BoundEvidence:
    """The evidence on one bound. ``query`` renders a template for the candidate over its
    whole traffic; ``steps(template)`` returns the per-step values of a rate-style
    template since traffic began (for batch means)."""
    if custom_query is None and name == "quality_score":
        return _quality(side, bound, alphas, query, source)
    if custom_query is None and name == "win_rate":
        return _win_rate(side, bound, alphas, query, source)
    if custom_query is None and name in COUNTS:
        return _rate(name, side, bound, alphas, query, source)
    if custom_query is None and name == "latency_p95_seconds" and side == "max":
        return _latency_p95(bound, alphas, query, source)
    template = custom_query or BUILTIN.get(name, ("", ""))[0]
    if not template:
        raise ValueError(f"trigger {name} has no query and is not built in")
    return _batches(name, side, bound, alphas, steps(template))
