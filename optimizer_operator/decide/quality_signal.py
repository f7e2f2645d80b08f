"""Whether a Rollout's analysis gets the quality scores it judges. Quality comes from
the gateway's evaluators (or a query of the app's own); with none configured — the
usual first install against a real provider — every measurement is inconclusive, and
the rollout would wait without saying why. This tracks how long a side has had no
scores and, within a bound, turns the QualitySignal condition False with an Event that
names what to configure. It never promotes or rolls back anything: a measurement
without quality stays inconclusive."""

from __future__ import annotations

from datetime import datetime

from ..analysis.canary import MetricResult
from ..api.common import parse_duration
from ..api.rollout import Analysis, RolloutSpec, RolloutStatus
from ..api.steps import QualitySignalStatus
from ..api.timestamps import format_ts as _ts
from ..api.timestamps import parse_optional as _parse
from .actions import Tick

QUALITY = "quality_score"
HOW_TO_FIX = (
    "configure a quality evaluator in the gateway (--evaluators, chart value "
    "gateway.deployment.evaluators: llm_judge or pairwise), send users' feedback to its "
    "POST /v1/feedback, or give analysis.metrics a quality_score query of the app's own"
)


def timeout_seconds(analysis: Analysis) -> float:
    """The bound: analysis.qualitySignalTimeout, else two windows."""
    if analysis.quality_signal_timeout:
        return parse_duration(analysis.quality_signal_timeout)
    return 2 * parse_duration(analysis.window)


def missing_sides(results: list[MetricResult]) -> list[str] | None:
    """The variants without quality scores in this measurement ([] when both have
    them); None when quality was not judged this time (not asked for, or too few
    requests yet for any metric)."""
    quality = next((r for r in results if r.metric == QUALITY), None)
    if quality is None:
        return None
    if quality.verdict != "NoData":
        return []
    return [side for side, v in (("canary", quality.canary), ("stable", quality.stable))
            if v is None]  # fmt: skip


def observe(
    spec: RolloutSpec,
    s: RolloutStatus,
    now: datetime,
    tick: Tick,
    results: list[MetricResult],
    *,
    pausing: bool = False,
) -> None:
    """Update ``s.quality_signal`` from a measurement's results. ``pausing``: the
    rollout is about to wait for a person on inconclusive measurements, so a missing
    signal is told now rather than at the bound."""
    missing = missing_sides(results)
    if missing is None:
        return
    previous = s.quality_signal
    if not missing:
        if previous is not None and previous.status == "False":
            tick.events.append(("Normal", "QualityData", "quality scores arrive again"))
        s.quality_signal = QualitySignalStatus(status="True", message="quality scores present")
        return
    since = _parse(previous.since if previous else None) or now
    waited = (now - since).total_seconds()
    bound = timeout_seconds(spec.analysis)
    custom = any(m.name == QUALITY and m.query for m in spec.analysis.metrics)
    what = (
        "the quality_score query in analysis.metrics returned no data"
        if custom
        else "no quality scores"
    )
    message = (
        f"{what} for the {' and '.join(missing)} for {int(waited)} s: "
        + ("check that query" if custom else HOW_TO_FIX)
        + "; nothing is promoted without them"
    )
    if waited >= bound or pausing:
        if previous is None or previous.status != "False":
            tick.events.append(("Warning", "NoQualityData", message))
        s.quality_signal = QualitySignalStatus(status="False", since=_ts(since), message=message)
    else:
        s.quality_signal = QualitySignalStatus(
            status="Unknown",
            since=_ts(since),
            message=f"{what} for the {' and '.join(missing)} yet; QualitySignal turns False "
            f"after {int(bound)} s without them",
        )
