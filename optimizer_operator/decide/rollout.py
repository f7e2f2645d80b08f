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
from dataclasses import dataclass, field
from datetime import datetime

from ..analysis.bandit import ArmReward, allocate, chance_best
from ..analysis.canary import Direction, MetricResult
from ..analysis.measurement import ABOutcome, Measurement, TriggerResult
from ..api.common import parse_decimal, parse_duration
from ..api.llmconfig import ModelConfig
from ..api.rollout import (
    ABTest,
    Bandit,
    BlueGreen,
    BoundStatus,
    MetricResultStatus,
    RolloutSpec,
    RolloutStatus,
    StepResult,
)
from ..api.timestamps import format_ts as _ts
from ..api.timestamps import parse_optional as _parse
from ..observe.prometheus import MetricsUnavailable

TERMINAL = {"Promoted", "RolledBack", "Aborted", "Failed"}


@dataclass(frozen=True)
class SetWeight:
    """Give the candidate ``weight`` percent of traffic (and copies of ``mirror`` percent
    of requests, answered by stable)."""

    weight: int
    mirror: int = 0


@dataclass(frozen=True)
class Promote:
    """Make the candidate (or, for a bandit, the winning arm) the LLMConfig's stable
    version."""

    config: ModelConfig | None = None


@dataclass(frozen=True)
class SetArms:
    """bandit: percent of traffic per arm (variant id; stable's id included)."""

    weights: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class RestoreStable:
    """All traffic back to stable at once; ``quarantine`` when evidence condemned the
    candidate (so it is not retried automatically)."""

    reason: str
    quarantine: bool = False


Action = SetWeight | Promote | RestoreStable | SetArms


@dataclass(frozen=True)
class Weight:
    weight: int
    mirror: int = 0


@dataclass(frozen=True)
class Wait:
    duration: str | None  # None: until promoted


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
            out.append(Wait(step.pause.duration))
        else:
            assert step.analysis is not None
            out.append(Measure(step.analysis.measurements))
    return out


@dataclass
class Tick:
    status: RolloutStatus
    actions: list[Action] = field(default_factory=list)
    events: list[tuple[str, str, str]] = field(default_factory=list)  # type, reason, message
    reason: str = ""  # CamelCase reason of the current phase, for conditions


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


def retry(spec: RolloutSpec, status: RolloutStatus) -> RolloutStatus | None:
    """A fresh status when a person asked for a retry of a finished rollout, else None."""
    if spec.retry <= status.observed_retry:
        return None
    if status.phase not in TERMINAL or status.phase == "Promoted":
        return None  # nothing to retry; act marks the request as seen
    return RolloutStatus(observed_retry=spec.retry, retries=status.retries + 1)


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
    """Advance the rollout as far as ``now`` allows.

    ``observe(seconds_since_traffic)`` returns a measurement, ``watch(seconds_since_traffic)``
    the rollback triggers (None below the minimum sample), ``decide_ab(seconds)`` the A/B decision
    (None before the sample); each raises MetricsUnavailable when a number is missing.
    ``pods_ready(weight)`` says whether a replica-based canary has its pods.
    """
    s = status.model_copy(deep=True)
    tick = Tick(s)
    if s.phase in TERMINAL:
        tick.reason = s.phase
        return tick
    steps = plan(spec)
    if s.phase is None or s.phase == "Pending":
        s.phase, s.started_at, s.step_started_at = "Progressing", _ts(now), _ts(now)
        s.current_step_index, s.canary_weight, s.last_measured_at = 0, 0, _ts(now)
        s.triggers_checked_at = _ts(now)
        tick.events.append(
            ("Normal", "Started", f"{spec.strategy} rollout started with {len(steps)} steps")
        )
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
    # A bandit's triggers are checked per arm (see _bandit): one bad arm drops out.
    if watch is not None and spec.strategy != "bandit" and _triggers(spec, s, now, watch, tick):
        return tick
    if spec.paused:
        if s.phase != "Paused":
            tick.events.append(("Normal", "Paused", "paused by spec.paused"))
        s.phase, s.message, tick.reason = "Paused", "paused by spec.paused", "PausedBySpec"
        return tick
    if spec.strategy == "bandit":
        assert bandit is not None, "a bandit rollout needs its arms"
        return _bandit(spec, s, now, tick, bandit)
    if spec.step_promotions > s.observed_step_promotions:
        s.observed_step_promotions = spec.step_promotions
        i = s.current_step_index or 0
        if i < len(steps) and not isinstance(steps[i], Weight):
            tick.events.append(("Normal", "StepPromoted", f"step {i} skipped by a person"))
            s.phase = "Progressing"
            _next_step(s, now)
    elif s.phase == "Paused" and s.inconclusives > spec.analysis.inconclusive_limit:
        tick.reason = "InconclusiveLimit"  # waits for a person: promote or abort
        return tick

    step_started = _parse(s.step_started_at) or now
    deadline = parse_duration(spec.progress_deadline)
    if (
        (now - step_started).total_seconds() > deadline
        and s.phase != "Holding"
        and s.undecided_since is None  # waiting for a bound's evidence has its own limit
        and not _waiting_for_person(steps, s)
    ):
        return _finish(
            tick,
            "Aborted",
            "ProgressDeadlineExceeded",
            f"step {s.current_step_index} did not complete within "
            f"{spec.progress_deadline}; stable restored",
            RestoreStable("progress deadline exceeded"),
            "Warning",
        )

    while (s.current_step_index or 0) < len(steps):
        i = s.current_step_index or 0
        step = steps[i]
        if isinstance(step, Weight):
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
            _next_step(s, now)
            continue
        if isinstance(step, Wait):
            if step.duration is None:
                s.phase, tick.reason = "Paused", "PauseStep"
                s.message = f"step {i}: paused until promoted (llm-optimizer rollout promote)"
                return tick
            waited = (now - (_parse(s.step_started_at) or now)).total_seconds()
            if waited < parse_duration(step.duration):
                s.phase, tick.reason = "Paused", "PauseStep"
                s.message = f"step {i}: pausing {step.duration}"
                return tick
            s.phase = "Progressing"
            _next_step(s, now)
            continue
        last = _parse(s.last_measured_at)
        interval = parse_duration(spec.analysis.interval)
        if last is not None and (now - last).total_seconds() < interval:
            tick.reason = tick.reason or "Analyzing"
            return tick
        traffic_since = _parse(s.started_at) or now
        try:
            if isinstance(step, Decide):
                assert decide_ab is not None, "abTest needs a decide_ab source"
                outcome = decide_ab((now - traffic_since).total_seconds())
                measurement = None
            else:
                measurement = observe((now - traffic_since).total_seconds())
        except MetricsUnavailable as exc:
            return _hold(spec, s, now, tick, exc)
        if s.holding_since is not None:
            tick.events.append(("Normal", "Resumed", "metrics available again"))
        s.holding_since = None
        s.phase = "Progressing"
        s.last_measured_at = _ts(now)
        if measurement is None:
            assert isinstance(step, Decide)
            return _ab_step(spec, s, now, tick, i, step, outcome)
        assert isinstance(step, Measure)
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
                _record_step(s, i, "Fail", now)
                return _finish(
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
                    "paused for a person (llm-optimizer rollout promote or abort)"
                )
                tick.events.append(("Warning", "InconclusiveLimit", s.message))
                return tick
            s.message = f"step {i}: inconclusive ({why})"
            tick.reason = "Analyzing"
            return tick
        s.measurements += 1
        s.message = (
            f"step {i}: measurement {s.measurements}/{step.measurements} {measurement.verdict}"
        )
        if s.measurements < step.measurements:
            tick.reason = "Analyzing"
            return tick
        if _await_bounds(spec, s, now, tick, i):
            return tick
        tick.events.append(
            ("Normal", "AnalysisPassed", f"step {i}: {s.measurements} measurements passed")
        )
        _record_step(s, i, measurement.verdict, now)
        _next_step(s, now)
    if _await_bounds(spec, s, now, tick, len(steps)):
        return tick
    return _finish(
        tick,
        "Promoted",
        "AllStepsPassed",
        "all steps passed; the candidate is the new stable version"
        + (" (all traffic switched)" if spec.strategy == "blueGreen" else ""),
        Promote(),
    )


def _waiting_for_person(steps: list[PlanStep], s: RolloutStatus) -> bool:
    i = s.current_step_index or 0
    return s.phase == "Paused" and i < len(steps) and isinstance(steps[i], Wait)


def _hold(
    spec: RolloutSpec, s: RolloutStatus, now: datetime, tick: Tick, exc: MetricsUnavailable
) -> Tick:
    held = _parse(s.holding_since)
    if held is None:
        s.holding_since = _ts(now)
        held = now
        tick.events.append(("Warning", "Holding", f"metrics unavailable, weight frozen: {exc}"))
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


def _triggers(
    spec: RolloutSpec,
    s: RolloutStatus,
    now: datetime,
    watch: Callable[[float], list[TriggerResult] | None],
    tick: Tick,
) -> bool:
    """Check rollback triggers once per interval while the candidate sees traffic;
    True when a critical one rolled the rollout back (only on confident evidence)."""
    if not spec.analysis.rollback_triggers:
        return False
    if not (s.canary_weight or s.mirror_percent):
        return False
    last = _parse(s.triggers_checked_at)
    if last is not None and (now - last).total_seconds() < parse_duration(spec.analysis.interval):
        return False
    s.triggers_checked_at = _ts(now)
    since = (now - (_parse(s.started_at) or now)).total_seconds()
    try:
        results = watch(since)
    except MetricsUnavailable as exc:
        # No number, no verdict: analysis steps hold, triggers wait, bounds stay open.
        _bounds_open(spec, s, f"no evidence: {exc}")
        return False
    if results is None:
        _bounds_open(
            spec, s, f"fewer than {spec.analysis.min_sample_size} candidate requests so far"
        )
        return False
    s.bounds = [
        BoundStatus(
            trigger=r.name,
            severity=r.severity,
            state="violated" if r.breached else "holds" if r.decided else "undecided",
            message=r.reason,
        )
        for r in results
        if r.bounded
    ]
    critical = [r for r in results if r.breached and r.severity == "critical"]
    if critical:
        why = "; ".join(f"{r.name}: {r.reason}" for r in critical)
        _finish(
            tick,
            "RolledBack",
            "RollbackTrigger",
            f"critical rollback trigger at step {s.current_step_index} ({why}); stable restored",
            RestoreStable(why, quarantine=True),
            "Warning",
        )
        return True
    warned = [r for r in results if r.breached]
    for r in warned:
        if r.name not in s.breached_triggers:
            tick.events.append(("Warning", "TriggerWarning", f"{r.name}: {r.reason}"))
    s.breached_triggers = [r.name for r in warned]
    return False


def _gating(spec: RolloutSpec) -> list[str]:
    """Critical triggers with an absolute bound: a step passes only when each holds."""
    return [
        t.name
        for t in spec.analysis.rollback_triggers
        if t.severity == "critical" and (t.min is not None or t.max is not None)
    ]


def _bounds_open(spec: RolloutSpec, s: RolloutStatus, why: str) -> None:
    """The last check gave no evidence: every bound is open again (a pass needs fresh
    evidence, never an old reading)."""
    by_name = {t.name: t for t in spec.analysis.rollback_triggers}
    s.bounds = [
        BoundStatus(
            trigger=name,
            severity=by_name[name].severity,
            state="undecided",
            message=why,
        )
        for name in dict.fromkeys(t.name for t in spec.analysis.rollback_triggers)
        if by_name[name].min is not None or by_name[name].max is not None
    ]


def _await_bounds(spec: RolloutSpec, s: RolloutStatus, now: datetime, tick: Tick, i: int) -> bool:
    """Before a step passes (or the candidate is promoted): True while a critical bound
    is still undecided, so the candidate keeps its current share and collects; ends the
    rollout Aborted/BoundInconclusive after ``analysis.bounds.maxUndecided``."""
    states = {b.trigger: b for b in s.bounds}
    waiting = [
        states[name].message if name in states else f"{name}: not checked yet"
        for name in _gating(spec)
        if name not in states or states[name].state != "holds"
    ]
    if not waiting:
        s.undecided_since = None
        return False
    why = "; ".join(dict.fromkeys(waiting))
    since = _parse(s.undecided_since)
    if since is None:
        s.undecided_since, since = _ts(now), now
        tick.events.append(("Normal", "BoundUndecided", f"step {i}: collecting evidence ({why})"))
    limit = spec.analysis.bounds.max_undecided
    if (now - since).total_seconds() > parse_duration(limit):
        _finish(
            tick,
            "Aborted",
            "BoundInconclusive",
            f"step {i}: a critical bound stayed undecided for {limit} ({why}); stable restored",
            RestoreStable(f"bound inconclusive: {why}"),
            "Warning",
        )
        return True
    s.phase, tick.reason = "Progressing", "BoundUndecided"
    s.message = f"step {i}: at {s.canary_weight or 0}%, collecting evidence ({why})"
    return True


def _ab_step(
    spec: RolloutSpec,
    s: RolloutStatus,
    now: datetime,
    tick: Tick,
    i: int,
    step: Decide,
    outcome: ABOutcome | None,
) -> Tick:
    ab = step.ab
    elapsed = (now - (_parse(s.step_started_at) or now)).total_seconds()
    if outcome is None or elapsed < parse_duration(ab.min_duration):
        if elapsed > parse_duration(ab.max_duration):
            _record_step(s, i, "Inconclusive", now)
            return _finish(
                tick,
                "Aborted",
                "SampleNotReached",
                f"abTest: {ab.min_samples} requests per variant not reached within "
                f"{ab.max_duration}; stable kept",
                RestoreStable("abTest sample not reached"),
                "Warning",
            )
        s.verdict, tick.reason = "Inconclusive", "Analyzing"
        s.message = (
            f"abTest at {s.canary_weight}%: collecting (need {ab.min_samples} requests per "
            f"variant and {ab.min_duration})"
        )
        return tick
    s.results = [result_status(outcome.result)]
    s.verdict = outcome.result.verdict if outcome.result.verdict != "NoData" else "Inconclusive"
    _record_step(s, i, s.verdict, now)
    if outcome.winner == "canary":
        return _finish(
            tick,
            "Promoted",
            "CandidateWins",
            f"abTest: the candidate wins on {ab.metric} ({outcome.result.reason})",
            Promote(),
        )
    if outcome.winner == "stable":
        return _finish(
            tick,
            "RolledBack",
            "StableWins",
            f"abTest: stable wins on {ab.metric} ({outcome.result.reason}); stable restored",
            RestoreStable(outcome.result.reason, quarantine=True),
            "Warning",
        )
    return _finish(
        tick,
        "Aborted",
        "NoSignificantDifference",
        f"abTest: no significant difference on {ab.metric} ({outcome.result.reason}); stable kept",
        RestoreStable("no significant difference"),
    )


@dataclass
class BanditArms:
    """The arms (variant id -> config; None for stable) and how to read their rewards."""

    configs: dict[str, ModelConfig | None]
    rewards: Callable[[], dict[str, ArmReward]]
    direction: Direction
    # Critical rollback triggers checked per arm (variant id); None while the arm has
    # fewer than minSampleSize requests. A breaking arm is dropped, not the whole rollout.
    guard: Callable[[str, float], list[TriggerResult] | None] | None = None


def _bandit(
    spec: RolloutSpec, s: RolloutStatus, now: datetime, tick: Tick, arms: BanditArms
) -> Tick:
    """Re-balance every interval by each arm's chance of being best; stop when one arm's
    chance reaches ``confidence`` (promote it, or keep stable if stable won)."""
    settings = spec.bandit or Bandit()
    ids = sorted(arms.configs)
    if not s.arm_weights:
        equal = allocate({i: 1.0 / len(ids) for i in ids}, 0)
        tick.actions.append(SetArms(tuple(sorted(equal.items()))))
        tick.events.append(("Normal", "ArmsSet", f"bandit: {len(ids)} arms at equal shares"))
        s.arm_weights = equal
    s.canary_weight = 100 - sum(w for i, w in s.arm_weights.items() if arms.configs[i] is None)
    started = _parse(s.started_at) or now
    last = _parse(s.last_measured_at)
    if last is not None and (now - last).total_seconds() < parse_duration(spec.analysis.interval):
        tick.reason = tick.reason or "Analyzing"
        return tick
    try:
        rewards = arms.rewards()
    except MetricsUnavailable as exc:
        return _hold(spec, s, now, tick, exc)
    if s.holding_since is not None:
        tick.events.append(("Normal", "Resumed", "metrics available again"))
    s.holding_since, s.phase, s.last_measured_at = None, "Progressing", _ts(now)
    s.measurements += 1
    if arms.guard is not None:
        before = len(s.excluded_arms)
        for arm in ids:
            if arms.configs[arm] is None or arm in s.excluded_arms:
                continue
            try:
                results = arms.guard(arm, (now - started).total_seconds())
            except MetricsUnavailable:
                continue  # no number, no verdict
            broken = [r for r in results or [] if r.breached and r.severity == "critical"]
            if broken:
                why = "; ".join(f"{r.name}: {r.reason}" for r in broken)
                s.excluded_arms[arm] = why
                tick.events.append(("Warning", "ArmExcluded", f"bandit: {arm} dropped ({why})"))
        kept = {i: w for i, w in s.arm_weights.items() if i not in s.excluded_arms}
        alive = [i for i in ids if arms.configs[i] is not None and i not in s.excluded_arms]
        if len(s.excluded_arms) > before and alive and sum(kept.values()) > 0:
            total = sum(kept.values())
            s.arm_weights = allocate({i: w / total for i, w in kept.items()}, 0)
            tick.actions.append(SetArms(tuple(sorted(s.arm_weights.items()))))
    rewards = {i: r for i, r in rewards.items() if i not in s.excluded_arms}
    if not any(arms.configs[i] is not None for i in rewards):
        return _finish(
            tick,
            "RolledBack",
            "RollbackTrigger",
            "bandit: every candidate arm broke a critical rollback trigger; stable restored",
            RestoreStable("every arm broke a guardrail", quarantine=True),
            "Warning",
        )
    chances = chance_best(rewards, arms.direction, seed=s.measurements)
    s.arm_rewards = {
        i: f"{r.mean:.4g} ± {r.se:.2g} over {r.requests:.0f} requests, P(best) {chances[i]:.2f}"
        for i, r in rewards.items()
    }
    too_few = [i for i, r in rewards.items() if r.requests < settings.min_samples]
    best = max(chances, key=lambda i: (chances[i], i))
    if not too_few and chances[best] >= float(parse_decimal(settings.confidence)):
        config = arms.configs[best]
        s.verdict = "Pass"
        if config is None:
            return _finish(
                tick,
                "Aborted",
                "StableIsBest",
                f"bandit: stable is best (P {chances[best]:.2f}); stable kept",
                RestoreStable("stable is best"),
            )
        return _finish(
            tick,
            "Promoted",
            "ArmWins",
            f"bandit: {best} ({config.model}) is best (P {chances[best]:.2f}); promoted",
            Promote(config),
        )
    if (now - started).total_seconds() > parse_duration(settings.max_duration):
        return _finish(
            tick,
            "Aborted",
            "NoConvergence",
            f"bandit: no arm reached {settings.confidence} within {settings.max_duration}; "
            "stable kept",
            RestoreStable("bandit did not converge"),
            "Warning",
        )
    s.verdict = "Inconclusive"
    if too_few:
        s.message = f"bandit: collecting ({', '.join(too_few)} below {settings.min_samples})"
        tick.reason = "Analyzing"
        return tick
    weights = allocate(chances, settings.min_weight)
    if weights != s.arm_weights:
        tick.actions.append(SetArms(tuple(sorted(weights.items()))))
        s.arm_weights = weights
        tick.events.append(
            (
                "Normal",
                "ArmsRebalanced",
                "bandit: " + ", ".join(f"{i} {w}%" for i, w in sorted(weights.items())),
            )
        )
    s.canary_weight = 100 - sum(w for i, w in weights.items() if arms.configs[i] is None)
    s.message = f"bandit: leading {best} (P(best) {chances[best]:.2f})"
    tick.reason = "Analyzing"
    return tick


def _record_step(s: RolloutStatus, i: int, verdict: str, now: datetime) -> None:
    s.step_results = [r for r in s.step_results if r.step != i]
    s.step_results.append(
        StepResult(
            step=i,
            verdict=verdict,
            measurements=s.measurements,
            finished_at=_ts(now),
            results=list(s.results),
        )
    )


def _next_step(s: RolloutStatus, now: datetime) -> None:
    s.current_step_index = (s.current_step_index or 0) + 1
    s.step_started_at = _ts(now)
    s.measurements = 0
    s.inconclusives = 0
    # The first measurement of a step comes one interval after it begins, so the window
    # holds traffic at the new weight, not the old one.
    s.last_measured_at = _ts(now)
    s.undecided_since = None
