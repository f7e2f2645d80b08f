"""Rollback triggers, checked every interval whatever the step, and the gate of absolute
bounds: a step passes only when every critical bound confidently holds."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from ..analysis.measurement import TriggerResult
from ..api.common import parse_duration
from ..api.rollout import BoundStatus, RolloutSpec, RolloutStatus
from ..api.timestamps import format_ts as _ts
from ..api.timestamps import parse_optional as _parse
from ..observe.prometheus import MetricsUnavailable
from .actions import RestoreStable, Tick, finish


def watch_triggers(
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
    s.bounds = bound_statuses(results)
    critical = [r for r in results if r.breached and r.severity == "critical"]
    if critical:
        why = "; ".join(f"{r.name}: {r.reason}" for r in critical)
        finish(
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


def bound_statuses(results: list[TriggerResult]) -> list[BoundStatus]:
    """The bounded triggers' evidence, as status shows it."""
    return [
        BoundStatus(
            trigger=r.name,
            severity=r.severity,
            state="violated" if r.breached else "holds" if r.decided else "undecided",
            message=r.reason,
        )
        for r in results
        if r.bounded
    ]


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


def await_bounds(spec: RolloutSpec, s: RolloutStatus, now: datetime, tick: Tick, i: int) -> bool:
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
        finish(
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
