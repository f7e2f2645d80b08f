"""The watch after promotion (``spec.postPromotion``): the promoted candidate is the
stable version and serves all traffic; for ``bake`` its rollback triggers are checked
every interval as during the canary, over its own traffic since promotion. A confident
critical breach reverts to the version it replaced (RolledBack, reason BakeFailed) and
quarantines it; missing or undecided evidence never reverts. When the bake ends the
rollout is Promoted."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from ..analysis.measurement import TriggerResult
from ..api.common import parse_duration
from ..api.rollout import RolloutSpec, RolloutStatus
from ..api.timestamps import format_ts, parse_optional
from ..observe.prometheus import MetricsUnavailable
from .actions import Promote, Revert, Tick, finish
from .guards import bound_statuses


def start_bake(spec: RolloutSpec, tick: Tick, now: datetime) -> Tick:
    """A tick that promoted: with a bake configured, Baking instead of Promoted."""
    s, post = tick.status, spec.post_promotion
    promoted = s.phase == "Promoted" and any(isinstance(a, Promote) for a in tick.actions)
    if post is None or not promoted:
        return tick
    s.phase, s.baking_since, s.triggers_checked_at = "Baking", format_ts(now), format_ts(now)
    s.canary_weight, s.mirror_percent = 0, None
    s.bounds = []
    s.message = f"{s.message}; baking {post.bake} at full traffic, rollback triggers watched"
    tick.reason = "Baking"
    tick.events.append(("Normal", "Baking", s.message))
    return tick


def bake(
    spec: RolloutSpec,
    s: RolloutStatus,
    now: datetime,
    tick: Tick,
    watch: Callable[[float], list[TriggerResult] | None] | None,
) -> Tick:
    """One tick of the bake."""
    post = spec.post_promotion
    assert post is not None
    if spec.abort:
        return finish(
            tick,
            "RolledBack",
            "RevertedBySpec",
            "aborted by spec.abort during the bake; the previous version is stable again",
            Revert("aborted by spec.abort during the bake"),
            "Warning",
        )
    started = parse_optional(s.baking_since) or now
    elapsed = (now - started).total_seconds()
    breached = _check(spec, s, now, elapsed, watch)
    if breached:
        why = "; ".join(f"{r.name}: {r.reason}" for r in breached)
        return finish(
            tick,
            "RolledBack",
            "BakeFailed",
            f"regression after promotion ({why}); reverted to {s.stable_variant}",
            Revert(why),
            "Warning",
        )
    if elapsed >= parse_duration(post.bake):
        s.phase, tick.reason = "Promoted", "BakePassed"
        s.message = f"baked {post.bake} at full traffic without a confident breach; promoted"
        tick.events.append(("Normal", "BakePassed", s.message))
        return tick
    s.phase, tick.reason = "Baking", "Baking"
    left = parse_duration(post.bake) - elapsed
    s.message = f"baking at full traffic: {left:.0f}s left, rollback triggers watched"
    return tick


def _check(
    spec: RolloutSpec,
    s: RolloutStatus,
    now: datetime,
    elapsed: float,
    watch: Callable[[float], list[TriggerResult] | None] | None,
) -> list[TriggerResult]:
    """The critical triggers confidently breached at this interval's check (none when no
    check is due, or the evidence is missing or short)."""
    if watch is None or not spec.analysis.rollback_triggers:
        return []
    last = parse_optional(s.triggers_checked_at)
    if last is not None and (now - last).total_seconds() < parse_duration(spec.analysis.interval):
        return []
    s.triggers_checked_at = format_ts(now)
    try:
        results = watch(max(elapsed, 1.0))
    except MetricsUnavailable:
        return []  # no number, no verdict: the bake goes on
    if results is None:
        return []
    s.bounds = bound_statuses(results)
    return [r for r in results if r.breached and r.severity == "critical"]
