"""A policy judged on quality_score whose stable variant gets no quality scores — the
usual first install against a real provider with no evaluator configured. Without this
its baseline trial would wait in Collecting forever and nothing would say why.

The baseline's collection has a deadline (the trial analysis's qualitySignalTimeout,
default two windows): at it, the baseline ends Failed (``NoQualityData``), the
QualitySignal condition turns False with an Event naming what to configure, and no
trial runs — none could be judged — until scores arrive; then a new baseline starts.
Nothing is promoted on missing quality."""

from __future__ import annotations

from ..api.common import parse_duration
from ..api.policy import TrialRecord
from ..api.steps import QualitySignalStatus
from ..api.timestamps import parse_optional
from ..api.variants import stable_variant_id
from ..decide import trials
from ..decide.quality_signal import HOW_TO_FIX, QUALITY, timeout_seconds
from ..observe.prometheus import MetricsUnavailable
from .cycle_state import CycleState

NO_QUALITY = "NoQualityData"


def _bound(c: CycleState) -> float:
    return timeout_seconds(trials.trial_analysis(c.spec))


def _window(c: CycleState) -> float:
    return parse_duration(c.spec.rollout_template.analysis.window)


def _message(c: CycleState, waited: float) -> str:
    custom = any(m.name == QUALITY and m.query for m in c.spec.metrics)
    fix = "check the quality_score query in spec.metrics" if custom else HOW_TO_FIX
    return (
        f"no quality scores for stable v{c.stable.version} in {int(waited)} s, and "
        f"quality_score is an objective or constraint: {fix}; no trial runs until they "
        "arrive"
    )


def baseline_stalled(c: CycleState, record: TrialRecord) -> bool:
    """After the baseline could not be judged: True when it has ended for want of
    quality scores (the deadline passed), False while it may still collect."""
    if not (c.metrics.configured and c.metrics.needs_quality()):
        return False
    variant = stable_variant_id(c.stable.version)
    try:
        scores = c.metrics.quality_scores(variant, _window(c))
    except MetricsUnavailable:
        return False  # Prometheus itself is the trouble: said elsewhere, wait
    if scores > 0:
        return False  # quality is there: something else is missing
    started = parse_optional(record.started_at) or c.now
    waited = (c.now - started).total_seconds()
    if waited < _bound(c):
        c.status.quality_signal = QualitySignalStatus(
            status="Unknown",
            since=record.started_at,
            message=f"no quality scores for stable yet; QualitySignal turns False after "
            f"{int(_bound(c))} s without them",
        )
        return False
    message = _message(c, waited)
    c.finish(record, "Failed", NO_QUALITY, message)
    _signal_false(c, message, record.started_at)
    return True


def _signal_false(c: CycleState, message: str, since: str | None) -> None:
    previous = c.status.quality_signal
    if previous is None or previous.status != "False":
        c.events.append(("Warning", NO_QUALITY, message))
    c.status.quality_signal = QualitySignalStatus(status="False", since=since, message=message)


def quality_arrived(c: CycleState) -> bool | None:
    """Before a trial is proposed: None when quality is not needed or was never missing;
    True when scores are present again (the signal turns True, a new baseline is due);
    False while they are still missing (the cycle waits, saying why)."""
    signal = c.status.quality_signal
    if signal is None or signal.status != "False" or not c.metrics.needs_quality():
        return None
    variant = stable_variant_id(c.stable.version)
    try:
        scores = c.metrics.quality_scores(variant, _window(c))
    except MetricsUnavailable:
        scores = 0.0
    if scores > 0:
        c.events.append(("Normal", "QualityData", "quality scores for stable arrive"))
        c.status.quality_signal = QualitySignalStatus(
            status="True", message="quality scores present"
        )
        return True
    since = parse_optional(signal.since) or c.now
    signal.message = _message(c, (c.now - since).total_seconds())
    c.say("Idle", signal.message)
    return False


def measured(c: CycleState) -> None:
    """The baseline was judged: quality (if needed) is there."""
    if c.metrics.needs_quality():
        c.status.quality_signal = QualitySignalStatus(
            status="True", message="quality scores present", since=None
        )


def needs_rebaseline(c: CycleState) -> bool:
    """The baseline ended for want of quality scores and none was judged since."""
    records = c.status.trial_records
    failed = [r.number for r in records if r.outcome == NO_QUALITY]
    judged = [r.number for r in records if r.outcome == "Baseline"]
    return bool(failed) and (not judged or max(judged) < max(failed))
