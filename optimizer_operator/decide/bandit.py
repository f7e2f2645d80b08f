"""bandit: several candidates at once, traffic following each arm's chance of being best;
an arm that breaks a critical trigger drops out."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from ..analysis.bandit import ArmReward, allocate, chance_best
from ..analysis.canary import Direction
from ..analysis.measurement import TriggerResult
from ..api.common import parse_decimal, parse_duration
from ..api.llmconfig import ModelConfig
from ..api.rollout import Bandit, RolloutSpec, RolloutStatus
from ..api.timestamps import format_ts as _ts
from ..api.timestamps import parse_optional as _parse
from ..observe.prometheus import MetricsUnavailable
from .actions import Promote, RestoreStable, SetArms, Tick, finish, hold


@dataclass
class BanditArms:
    """The arms (variant id -> config; None for stable) and how to read their rewards."""

    configs: dict[str, ModelConfig | None]
    rewards: Callable[[], dict[str, ArmReward]]
    direction: Direction
    # Critical rollback triggers checked per arm (variant id); None while the arm has
    # fewer than minSampleSize requests. A breaking arm is dropped, not the whole rollout.
    guard: Callable[[str, float], list[TriggerResult] | None] | None = None


def run_bandit(
    spec: RolloutSpec, s: RolloutStatus, now: datetime, tick: Tick, arms: BanditArms
) -> Tick:
    """Re-balance every interval by each arm's chance of being best; stop when one arm's
    chance reaches ``confidence`` (promote it, or keep stable if stable won)."""
    ids = sorted(arms.configs)
    if not s.arm_weights:
        equal = allocate({i: 1.0 / len(ids) for i in ids}, 0)
        tick.actions.append(SetArms(tuple(sorted(equal.items()))))
        tick.events.append(("Normal", "ArmsSet", f"bandit: {len(ids)} arms at equal shares"))
        s.arm_weights = equal
    s.canary_weight = 100 - sum(w for i, w in s.arm_weights.items() if arms.configs[i] is None)
    last = _parse(s.last_measured_at)
    if last is not None and (now - last).total_seconds() < parse_duration(spec.analysis.interval):
        tick.reason = tick.reason or "Analyzing"
        return tick
    try:
        rewards = arms.rewards()
    except MetricsUnavailable as exc:
        return hold(spec, s, now, tick, exc)
    if s.holding_since is not None:
        tick.events.append(("Normal", "Resumed", "metrics available again"))
    s.holding_since, s.phase, s.last_measured_at = None, "Progressing", _ts(now)
    s.measurements += 1
    if arms.guard is not None:
        _drop_broken_arms(s, now, tick, arms, ids)
    rewards = {i: r for i, r in rewards.items() if i not in s.excluded_arms}
    if not any(arms.configs[i] is not None for i in rewards):
        return finish(
            tick,
            "RolledBack",
            "RollbackTrigger",
            "bandit: every candidate arm broke a critical rollback trigger; stable restored",
            RestoreStable("every arm broke a guardrail", quarantine=True),
            "Warning",
        )
    return _allocate(spec, s, now, tick, arms, rewards)


def _drop_broken_arms(
    s: RolloutStatus, now: datetime, tick: Tick, arms: BanditArms, ids: list[str]
) -> None:
    """Exclude every arm confidently breaking a critical trigger; the others share its
    traffic in proportion. Stable is not guarded; an arm without data is not judged."""
    assert arms.guard is not None
    since = (now - (_parse(s.started_at) or now)).total_seconds()
    before = len(s.excluded_arms)
    for arm in ids:
        if arms.configs[arm] is None or arm in s.excluded_arms:
            continue
        try:
            results = arms.guard(arm, since)
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


def _allocate(
    spec: RolloutSpec,
    s: RolloutStatus,
    now: datetime,
    tick: Tick,
    arms: BanditArms,
    rewards: dict[str, ArmReward],
) -> Tick:
    """Each arm's chance of being best: a winner ends the rollout, else traffic follows."""
    settings = spec.bandit or Bandit()
    chances = chance_best(rewards, arms.direction, seed=s.measurements)
    s.arm_rewards = {
        i: f"{r.mean:.4g} ± {r.se:.2g} over {r.requests:.0f} requests, P(best) {chances[i]:.2f}"
        for i, r in rewards.items()
    }
    too_few = [i for i, r in rewards.items() if r.requests < settings.min_samples]
    best = max(chances, key=lambda i: (chances[i], i))
    if not too_few and chances[best] >= float(parse_decimal(settings.confidence)):
        return _won(s, tick, arms, best, chances[best])
    started = _parse(s.started_at) or now
    if (now - started).total_seconds() > parse_duration(settings.max_duration):
        return finish(
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


def _won(s: RolloutStatus, tick: Tick, arms: BanditArms, best: str, chance: float) -> Tick:
    config = arms.configs[best]
    s.verdict = "Pass"
    if config is None:
        return finish(
            tick,
            "Aborted",
            "StableIsBest",
            f"bandit: stable is best (P {chance:.2f}); stable kept",
            RestoreStable("stable is best"),
        )
    return finish(
        tick,
        "Promoted",
        "ArmWins",
        f"bandit: {best} ({config.model}) is best (P {chance:.2f}); promoted",
        Promote(config),
    )
