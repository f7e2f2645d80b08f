"""The rollout state machine: a pure function of spec, status, the clock and metrics.

``progress`` walks the steps (setWeight, pause, analysis) as far as it can in
one tick and returns the new status, the actions for ``act`` to carry out, and
the Events to post. Missing metrics never promote or roll back: the rollout
holds (weight frozen) and aborts to stable only after ``holdDeadline``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ..analysis.canary import MetricResult
from ..analysis.measurement import Measurement
from ..api.common import parse_duration
from ..api.rollout import MetricResultStatus, RolloutSpec, RolloutStatus
from ..observe.prometheus import MetricsUnavailable

TERMINAL = {"Promoted", "RolledBack", "Aborted", "Failed"}


@dataclass(frozen=True)
class SetWeight:
    """Give the candidate ``weight`` percent of traffic."""

    weight: int


@dataclass(frozen=True)
class Promote:
    """Make the candidate the LLMConfig's stable version."""


@dataclass(frozen=True)
class RestoreStable:
    """All traffic back to stable at once."""

    reason: str


Action = SetWeight | Promote | RestoreStable


@dataclass
class Tick:
    status: RolloutStatus
    actions: list[Action] = field(default_factory=list)
    events: list[tuple[str, str, str]] = field(default_factory=list)  # type, reason, message
    reason: str = ""  # CamelCase reason of the current phase, for conditions


def _ts(now: datetime) -> str:
    return now.strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(ts: str | None) -> datetime | None:
    return None if ts is None else datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def _num(x: float | None) -> str | None:
    return None if x is None else f"{x:.6g}"


def result_status(r: MetricResult) -> MetricResultStatus:
    return MetricResultStatus(
        metric=r.metric,
        canary=_num(r.canary),
        stable=_num(r.stable),
        effect=_num(r.effect),
        p_value=_num(r.p_value),
        classification=r.classification,
        verdict=r.verdict,
        reason=r.reason,
        dry_run=r.dry_run,
    )


def _finish(
    tick: Tick, phase: str, reason: str, message: str, action: Action, event_type: str = "Normal"
) -> Tick:
    tick.status.phase = phase  # type: ignore[assignment]
    tick.status.message = message
    tick.reason = reason
    tick.actions.append(action)
    tick.events.append((event_type, reason, message))
    return tick


def progress(
    spec: RolloutSpec, status: RolloutStatus, now: datetime, observe: Callable[[float], Measurement]
) -> Tick:
    """Advance the rollout as far as ``now`` allows. ``observe(seconds_since_traffic)``
    returns a measurement or raises MetricsUnavailable."""
    s = status.model_copy(deep=True)
    tick = Tick(s)
    if s.phase in TERMINAL:
        tick.reason = {
            "Promoted": "Promoted",
            "RolledBack": "RolledBack",
            "Aborted": "Aborted",
            "Failed": "Failed",
        }[s.phase]
        return tick
    if s.phase is None or s.phase == "Pending":
        s.phase, s.started_at, s.step_started_at = "Progressing", _ts(now), _ts(now)
        s.current_step_index, s.canary_weight, s.last_measured_at = 0, 0, _ts(now)
        tick.events.append(("Normal", "Started", f"rollout started with {len(spec.steps)} steps"))
    if spec.abort:
        return _finish(
            tick,
            "Aborted",
            "AbortedBySpec",
            "aborted by spec.abort; stable restored",
            RestoreStable("aborted by spec.abort"),
            "Warning",
        )
    if spec.promote:
        return _finish(
            tick,
            "Promoted",
            "PromotedBySpec",
            "promoted by spec.promote; the candidate is stable",
            Promote(),
        )
    if spec.paused:
        if s.phase != "Paused":
            tick.events.append(("Normal", "Paused", "paused by spec.paused"))
        s.phase, s.message, tick.reason = "Paused", "paused by spec.paused", "PausedBySpec"
        return tick
    if s.phase == "Paused" and s.inconclusives > spec.analysis.inconclusive_limit:
        tick.reason = "InconclusiveLimit"  # waits for a person: spec.promote or spec.abort
        return tick

    step_started = _parse(s.step_started_at) or now
    deadline = parse_duration(spec.progress_deadline)
    if (now - step_started).total_seconds() > deadline and s.phase != "Holding":
        return _finish(
            tick,
            "Aborted",
            "ProgressDeadlineExceeded",
            f"step {s.current_step_index} did not complete within "
            f"{spec.progress_deadline}; stable restored",
            RestoreStable("progress deadline exceeded"),
            "Warning",
        )

    while (s.current_step_index or 0) < len(spec.steps):
        i = s.current_step_index or 0
        step = spec.steps[i]
        if step.set_weight is not None:
            if s.canary_weight != step.set_weight:
                tick.actions.append(SetWeight(step.set_weight))
                tick.events.append(
                    ("Normal", "WeightSet", f"step {i}: candidate weight {step.set_weight}%")
                )
                s.canary_weight = step.set_weight
            _next_step(s, now)
            continue
        if step.pause is not None:
            if step.pause.duration is None:
                s.phase, tick.reason = "Paused", "PauseStep"
                s.message = f"step {i}: paused until promoted (set spec.promote)"
                return tick
            waited = (now - (_parse(s.step_started_at) or now)).total_seconds()
            if waited < parse_duration(step.pause.duration):
                s.phase, tick.reason = "Paused", "PauseStep"
                s.message = f"step {i}: pausing {step.pause.duration}"
                return tick
            s.phase = "Progressing"
            _next_step(s, now)
            continue
        assert step.analysis is not None
        last = _parse(s.last_measured_at)
        interval = parse_duration(spec.analysis.interval)
        if last is not None and (now - last).total_seconds() < interval:
            tick.reason = tick.reason or "Analyzing"
            return tick
        traffic_since = _parse(s.started_at) or now
        try:
            measurement = observe((now - traffic_since).total_seconds())
        except MetricsUnavailable as exc:
            held = _parse(s.holding_since)
            if held is None:
                s.holding_since = _ts(now)
                held = now
                tick.events.append(
                    ("Warning", "Holding", f"metrics unavailable, weight frozen: {exc}")
                )
            if (now - held).total_seconds() > parse_duration(spec.hold_deadline):
                return _finish(
                    tick,
                    "Aborted",
                    "HoldDeadlineExceeded",
                    f"metrics unavailable for over {spec.hold_deadline}; stable restored: {exc}",
                    RestoreStable("hold deadline exceeded"),
                    "Warning",
                )
            s.phase, tick.reason = "Holding", "MetricsUnavailable"
            s.message = f"holding at {s.canary_weight}%: metrics unavailable ({exc})"
            return tick
        if s.holding_since is not None:
            tick.events.append(("Normal", "Resumed", "metrics available again"))
        s.holding_since = None
        s.phase = "Progressing"
        s.last_measured_at = _ts(now)
        s.results = [result_status(r) for r in measurement.results]
        s.verdict = measurement.verdict
        if measurement.verdict == "Fail":
            s.failures += 1
            failing = "; ".join(
                f"{r.metric}: {r.reason}"
                for r in measurement.results
                if r.verdict == "Fail" and not r.dry_run
            )
            if s.failures > spec.analysis.failure_limit:
                return _finish(
                    tick,
                    "RolledBack",
                    "AnalysisFailed",
                    f"step {i}: analysis failed ({failing}); stable restored",
                    RestoreStable(failing),
                    "Warning",
                )
            tick.events.append(
                (
                    "Warning",
                    "AnalysisFailed",
                    f"step {i}: failure {s.failures} of "
                    f"{spec.analysis.failure_limit} tolerated: {failing}",
                )
            )
            s.message = f"step {i}: measurement failed ({failing})"
            tick.reason = "Analyzing"
            return tick
        if measurement.verdict == "Inconclusive":
            s.inconclusives += 1
            why = "; ".join(r.reason for r in measurement.results if r.verdict == "NoData")
            if s.inconclusives > spec.analysis.inconclusive_limit:
                s.phase, tick.reason = "Paused", "InconclusiveLimit"
                s.message = (
                    f"step {i}: {s.inconclusives} inconclusive measurements ({why}); "
                    "paused for a person (spec.promote or spec.abort)"
                )
                tick.events.append(("Warning", "InconclusiveLimit", s.message))
                return tick
            s.message = f"step {i}: inconclusive ({why})"
            tick.reason = "Analyzing"
            return tick
        s.measurements += 1
        s.message = (
            f"step {i}: measurement {s.measurements}/{step.analysis.measurements} "
            f"{measurement.verdict}"
        )
        if s.measurements < step.analysis.measurements:
            tick.reason = "Analyzing"
            return tick
        tick.events.append(
            ("Normal", "AnalysisPassed", f"step {i}: {s.measurements} measurements passed")
        )
        _next_step(s, now)
    return _finish(
        tick,
        "Promoted",
        "AllStepsPassed",
        "all steps passed; the candidate is the new stable version",
        Promote(),
    )


def _next_step(s: RolloutStatus, now: datetime) -> None:
    s.current_step_index = (s.current_step_index or 0) + 1
    s.step_started_at = _ts(now)
    s.measurements = 0
    s.inconclusives = 0
    # The first measurement of a step comes one interval after it begins, so the window
    # holds traffic at the new weight, not the old one.
    s.last_measured_at = _ts(now)
