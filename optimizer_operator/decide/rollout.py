"""The rollout state machine: a pure function of spec, status, the clock and metrics.

``progress`` walks the plan as far as it can in one tick and returns the new
status, the actions for ``act`` to carry out, and the Events to post. The plan
comes from the strategy: canary runs ``spec.steps``; blueGreen previews the
candidate (mirrored or a small split), measures, then switches all traffic at
once; abTest holds a fixed split until the sample is reached and lets one
two-sided test pick the winner. Rollback triggers are checked every interval
whatever the step. Missing metrics never promote or roll back: the rollout
holds (weight frozen) and aborts to stable only after ``holdDeadline``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from ..analysis.measurement import ABOutcome, Measurement, TriggerResult
from ..api.common import parse_duration
from ..api.rollout import ABTest, BlueGreen, RolloutSpec, RolloutStatus
from ..api.timestamps import format_ts as _ts
from ..api.timestamps import parse_optional as _parse
from ..observe.prometheus import MetricsUnavailable
from . import quality_signal
from .abtest import ab_step
from .actions import (
    TERMINAL,
    Promote,
    RestoreStable,
    SetWeight,
    Tick,
    finish,
    hold,
    next_step,
    record_step,
    result_status,
)
from .bake import bake, start_bake
from .bandit import BanditArms, run_bandit
from .guards import await_bounds, watch_triggers


@dataclass(frozen=True)
class Weight:
    weight: int
    mirror: int = 0


@dataclass(frozen=True)
class Wait:
    duration: str | None  # None: until promoted
    abort_after: str | None = None  # for an open pause: abort when nobody ends it by then


@dataclass(frozen=True)
class Measure:
    measurements: int


@dataclass(frozen=True)
class Decide:
    """The A/B test's single decision."""

    ab: ABTest


PlanStep = Weight | Wait | Measure | Decide


def plan(spec: RolloutSpec) -> list[PlanStep]:
    """The steps a rollout walks, by strategy."""
    if spec.strategy == "blueGreen":
        bg = spec.blue_green or BlueGreen()
        preview = (
            Weight(0, mirror=bg.mirror_percent)
            if bg.preview == "mirror"
            else Weight(bg.preview_weight)
        )
        steps: list[PlanStep] = [preview, Measure(bg.measurements)]
        return [*steps, Wait(None)] if not bg.auto_promote else steps
    if spec.strategy == "abTest":
        ab = spec.ab_test or ABTest()
        return [Weight(ab.weight), Decide(ab)]
    if spec.strategy == "bandit":
        return []  # no steps: the arms' weights follow the evidence every interval
    out: list[PlanStep] = []
    for step in spec.steps:
        if step.set_weight is not None:
            out.append(Weight(step.set_weight))
        elif step.pause is not None:
            out.append(Wait(step.pause.duration, step.pause.abort_after))
        else:
            assert step.analysis is not None
            out.append(Measure(step.analysis.measurements))
    return out


def retry(spec: RolloutSpec, status: RolloutStatus) -> RolloutStatus | None:
    """A fresh status when a person asked for a retry of a finished rollout, else None."""
    if spec.retry <= status.observed_retry:
        return None
    if status.phase not in TERMINAL or status.phase == "Promoted":
        return None  # nothing to retry; act marks the request as seen
    return RolloutStatus(observed_retry=spec.retry, retries=status.retries + 1)


@dataclass(frozen=True)
class Sources:
    """Where a tick reads evidence; each raises MetricsUnavailable when a number is
    missing. ``observe(seconds_since_traffic)``: a measurement; ``watch(seconds)``: the
    rollback triggers (None below the minimum sample); ``decide_ab(seconds)``: the A/B
    decision (None before the sample); ``pods_ready(weight)``: whether a replica-based
    canary has its pods."""

    observe: Callable[[float], Measurement]
    watch: Callable[[float], list[TriggerResult] | None] | None = None
    decide_ab: Callable[[float], ABOutcome | None] | None = None
    pods_ready: Callable[[int], tuple[bool, str]] | None = None


def progress(
    spec: RolloutSpec,
    status: RolloutStatus,
    now: datetime,
    observe: Callable[[float], Measurement],
    *,
    watch: Callable[[float], list[TriggerResult] | None] | None = None,
    decide_ab: Callable[[float], ABOutcome | None] | None = None,
    pods_ready: Callable[[int], tuple[bool, str]] | None = None,
    bandit: BanditArms | None = None,
) -> Tick:
    """Advance the rollout as far as ``now`` allows (see ``Sources`` for the callables);
    a promotion with ``postPromotion`` set is baked before it is final (``bake``)."""
    s = status.model_copy(deep=True)
    tick = Tick(s)
    if s.phase in TERMINAL:
        tick.reason = s.phase
        return tick
    if s.phase == "Baking":
        return bake(spec, s, now, tick, watch)
    advanced = _advance(spec, s, now, tick, observe, watch, decide_ab, pods_ready, bandit)
    return start_bake(spec, advanced, now)


def _advance(
    spec: RolloutSpec,
    s: RolloutStatus,
    now: datetime,
    tick: Tick,
    observe: Callable[[float], Measurement],
    watch: Callable[[float], list[TriggerResult] | None] | None,
    decide_ab: Callable[[float], ABOutcome | None] | None,
    pods_ready: Callable[[int], tuple[bool, str]] | None,
    bandit: BanditArms | None,
) -> Tick:
    steps = plan(spec)
    _start(spec, s, now, tick, steps)
    if (manual := _manual(spec, tick)) is not None:
        return manual
    # A bandit's triggers are checked per arm (see bandit.py): one bad arm drops out.
    if (
        watch is not None
        and spec.strategy != "bandit"
        and watch_triggers(spec, s, now, watch, tick)
    ):
        return tick
    if spec.paused:
        return _paused(s, tick)
    if spec.strategy == "bandit":
        assert bandit is not None, "a bandit rollout needs its arms"
        return run_bandit(spec, s, now, tick, bandit)
    if _waits_for_person(spec, s, now, tick, steps):
        return tick
    if (late := _past_deadline(spec, s, now, tick, steps)) is not None:
        return late
    return _walk(spec, s, now, tick, steps, Sources(observe, watch, decide_ab, pods_ready))


def _start(
    spec: RolloutSpec, s: RolloutStatus, now: datetime, tick: Tick, steps: list[PlanStep]
) -> None:
    if s.phase is None or s.phase == "Pending":
        s.phase, s.started_at, s.step_started_at = "Progressing", _ts(now), _ts(now)
        s.current_step_index, s.canary_weight, s.last_measured_at = 0, 0, _ts(now)
        s.triggers_checked_at = _ts(now)
        tick.events.append(
            ("Normal", "Started", f"{spec.strategy} rollout started with {len(steps)} steps")
        )


def _manual(spec: RolloutSpec, tick: Tick) -> Tick | None:
    """A person's abort or full promotion, in the spec."""
    if spec.abort:
        return finish(
            tick,
            "Aborted",
            "AbortedBySpec",
            "aborted by spec.abort; stable restored",
            RestoreStable("aborted by spec.abort"),
            "Warning",
        )
    if spec.promote:
        return finish(
            tick,
            "Promoted",
            "PromotedBySpec",
            "promoted by spec.promote; the candidate is stable",
            Promote(),
        )
    return None


def _paused(s: RolloutStatus, tick: Tick) -> Tick:
    if s.phase != "Paused":
        tick.events.append(("Normal", "Paused", "paused by spec.paused"))
    s.phase, s.message, tick.reason = "Paused", "paused by spec.paused", "PausedBySpec"
    return tick


def _waits_for_person(
    spec: RolloutSpec, s: RolloutStatus, now: datetime, tick: Tick, steps: list[PlanStep]
) -> bool:
    """Apply a person's step promotion; True while the rollout waits for one after too
    many inconclusive measurements."""
    if spec.step_promotions > s.observed_step_promotions:
        s.observed_step_promotions = spec.step_promotions
        i = s.current_step_index or 0
        if i < len(steps) and not isinstance(steps[i], Weight):
            tick.events.append(("Normal", "StepPromoted", f"step {i} skipped by a person"))
            s.phase = "Progressing"
            next_step(s, now)
        return False
    if s.phase == "Paused" and s.inconclusives > spec.analysis.inconclusive_limit:
        tick.reason = "InconclusiveLimit"  # waits for a person: promote or abort
        return True
    return False


def _past_deadline(
    spec: RolloutSpec, s: RolloutStatus, now: datetime, tick: Tick, steps: list[PlanStep]
) -> Tick | None:
    step_started = _parse(s.step_started_at) or now
    if (
        (now - step_started).total_seconds() > parse_duration(spec.progress_deadline)
        and s.phase != "Holding"
        and s.undecided_since is None  # waiting for a bound's evidence has its own limit
        and not _waiting_for_person(steps, s)
    ):
        return finish(
            tick,
            "Aborted",
            "ProgressDeadlineExceeded",
            f"step {s.current_step_index} did not complete within "
            f"{spec.progress_deadline}; stable restored",
            RestoreStable("progress deadline exceeded"),
            "Warning",
        )
    return None


def _walk(
    spec: RolloutSpec,
    s: RolloutStatus,
    now: datetime,
    tick: Tick,
    steps: list[PlanStep],
    sources: Sources,
) -> Tick:
    """Walk the plan from the current step; each step returns the tick to stop at, or
    None when it is done and the next may start."""
    while (s.current_step_index or 0) < len(steps):
        i = s.current_step_index or 0
        step = steps[i]
        if isinstance(step, Weight):
            stop = _weight_step(s, now, tick, i, step, sources.pods_ready)
        elif isinstance(step, Wait):
            stop = _wait_step(s, now, tick, i, step)
        else:
            stop = _analysis_step(spec, s, now, tick, i, step, sources)
        if stop is not None:
            return stop
    if await_bounds(spec, s, now, tick, len(steps)):
        return tick
    return finish(
        tick,
        "Promoted",
        "AllStepsPassed",
        "all steps passed; the candidate is the new stable version"
        + (" (all traffic switched)" if spec.strategy == "blueGreen" else ""),
        Promote(),
    )


def _weight_step(
    s: RolloutStatus,
    now: datetime,
    tick: Tick,
    i: int,
    step: Weight,
    pods_ready: Callable[[int], tuple[bool, str]] | None,
) -> Tick | None:
    if s.canary_weight != step.weight or (s.mirror_percent or 0) != step.mirror:
        tick.actions.append(SetWeight(step.weight, step.mirror))
        what = f"candidate weight {step.weight}%" + (
            f", {step.mirror}% of requests mirrored to it" if step.mirror else ""
        )
        tick.events.append(("Normal", "WeightSet", f"step {i}: {what}"))
        s.canary_weight, s.mirror_percent = step.weight, step.mirror or None
    if pods_ready is not None and step.weight > 0:
        ready, why = pods_ready(step.weight)
        if not ready:
            s.phase, tick.reason = "Progressing", "WaitingForCanaryPods"
            s.message = f"step {i}: {why}"
            return tick
    next_step(s, now)
    return None


def _wait_step(s: RolloutStatus, now: datetime, tick: Tick, i: int, step: Wait) -> Tick | None:
    waited = (now - (_parse(s.step_started_at) or now)).total_seconds()
    if step.duration is None:
        if step.abort_after is not None and waited >= parse_duration(step.abort_after):
            why = f"step {i}: nobody promoted or aborted within {step.abort_after}"
            return finish(
                tick,
                "Aborted",
                "PauseDeadline",
                f"{why}; stable restored",
                RestoreStable(why),
                "Warning",
            )
        s.phase, tick.reason = "Paused", "PauseStep"
        s.message = f"step {i}: paused until promoted (llm-optimizer rollout promote)" + (
            f", aborted after {step.abort_after}" if step.abort_after else ""
        )
        return tick
    if waited < parse_duration(step.duration):
        s.phase, tick.reason = "Paused", "PauseStep"
        s.message = f"step {i}: pausing {step.duration}"
        return tick
    s.phase = "Progressing"
    next_step(s, now)
    return None


def _analysis_step(
    spec: RolloutSpec,
    s: RolloutStatus,
    now: datetime,
    tick: Tick,
    i: int,
    step: Measure | Decide,
    sources: Sources,
) -> Tick | None:
    """One measurement per interval (or the A/B decision); a pass moves on only once
    the step's measurements are done and every critical bound holds."""
    last = _parse(s.last_measured_at)
    if last is not None and (now - last).total_seconds() < parse_duration(spec.analysis.interval):
        tick.reason = tick.reason or "Analyzing"
        return tick
    since = (now - (_parse(s.started_at) or now)).total_seconds()
    try:
        if isinstance(step, Decide):
            assert sources.decide_ab is not None, "abTest needs a decide_ab source"
            outcome, measurement = sources.decide_ab(since), None
        else:
            outcome, measurement = None, sources.observe(since)
    except MetricsUnavailable as exc:
        return hold(spec, s, now, tick, exc)
    if s.holding_since is not None:
        tick.events.append(("Normal", "Resumed", "metrics available again"))
    s.holding_since, s.phase, s.last_measured_at = None, "Progressing", _ts(now)
    if measurement is None:
        assert isinstance(step, Decide)
        return ab_step(spec, s, now, tick, i, step.ab, outcome)
    assert isinstance(step, Measure)
    s.results = [result_status(r) for r in measurement.results]
    s.verdict = measurement.verdict
    pausing = (
        measurement.verdict == "Inconclusive"
        and s.inconclusives + 1 > spec.analysis.inconclusive_limit
    )
    quality_signal.observe(spec, s, now, tick, measurement.results, pausing=pausing)
    if measurement.verdict == "Fail":
        return _failed(spec, s, now, tick, i, measurement)
    if measurement.verdict == "Inconclusive":
        return _inconclusive(spec, s, tick, i, measurement)
    s.measurements += 1
    s.message = f"step {i}: measurement {s.measurements}/{step.measurements} {measurement.verdict}"
    if s.measurements < step.measurements:
        tick.reason = "Analyzing"
        return tick
    if await_bounds(spec, s, now, tick, i):
        return tick
    tick.events.append(
        ("Normal", "AnalysisPassed", f"step {i}: {s.measurements} measurements passed")
    )
    record_step(s, i, measurement.verdict, now)
    next_step(s, now)
    return None


def _failed(
    spec: RolloutSpec,
    s: RolloutStatus,
    now: datetime,
    tick: Tick,
    i: int,
    measurement: Measurement,
) -> Tick:
    s.failures += 1
    failing = "; ".join(
        f"{r.metric}: {r.reason}"
        for r in measurement.results
        if r.verdict == "Fail" and not r.dry_run
    )
    if s.failures > spec.analysis.failure_limit:
        record_step(s, i, "Fail", now)
        return finish(
            tick,
            "RolledBack",
            "AnalysisFailed",
            f"step {i}: analysis failed ({failing}); stable restored",
            RestoreStable(failing, quarantine=True),
            "Warning",
        )
    tick.events.append(
        (
            "Warning",
            "AnalysisFailed",
            f"step {i}: failure {s.failures} of {spec.analysis.failure_limit} tolerated: {failing}",
        )
    )
    s.message = f"step {i}: measurement failed ({failing})"
    tick.reason = "Analyzing"
    return tick


def _inconclusive(
    spec: RolloutSpec, s: RolloutStatus, tick: Tick, i: int, measurement: Measurement
) -> Tick:
    s.inconclusives += 1
    why = "; ".join(r.reason for r in measurement.results if r.verdict == "NoData")
    if s.quality_signal is not None and s.quality_signal.status == "False":
        why = f"{why}; {s.quality_signal.message}"
    if s.inconclusives > spec.analysis.inconclusive_limit:
        s.phase, tick.reason = "Paused", "InconclusiveLimit"
        s.message = (
            f"step {i}: {s.inconclusives} inconclusive measurements ({why}); "
            "paused for a person (llm-optimizer rollout promote or abort)"
        )
        tick.events.append(("Warning", "InconclusiveLimit", s.message))
        return tick
    s.message = f"step {i}: inconclusive ({why})"
    tick.reason = "Analyzing"
    return tick


def _waiting_for_person(steps: list[PlanStep], s: RolloutStatus) -> bool:
    i = s.current_step_index or 0
    return s.phase == "Paused" and i < len(steps) and isinstance(steps[i], Wait)
