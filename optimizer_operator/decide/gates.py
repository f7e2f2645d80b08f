"""The policy's gates, in the seed's order: may this cycle propose a trial?

Pure functions of the spec, the policy's status and the clock (no reads): the circuit
breaker, then, once a trigger is due, the cooldown since the last trial's Rollout, the
trial and daily-Rollout budgets, and no Rollout active on the LLMConfig. Each returns
why the cycle stops here, or None to go on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from ..api.common import parse_duration
from ..api.policy import LoopState, OptimizationPolicySpec, OptimizationPolicyStatus
from ..api.timestamps import format_ts, parse_optional


@dataclass(frozen=True)
class Stop:
    """The cycle stops at a gate: the loop state and message to show, and a Decision
    Event to post when the gate just closed."""

    state: LoopState
    message: str
    decision: str | None = None  # the reason of a Decision Event


def breaker(
    spec: OptimizationPolicySpec, status: OptimizationPolicyStatus, now: datetime
) -> Stop | None:
    """The circuit breaker: open until ``breakerOpenUntil``; opened (for ``coolOff``)
    by ``maxConsecutiveFailures`` failed trials in a row. Updates the status's breaker
    fields."""
    until = parse_optional(status.breaker_open_until)
    if until is not None and now < until:
        return Stop("Idle", f"circuit breaker open until {status.breaker_open_until}")
    budgets = spec.budgets
    if status.consecutive_failures >= budgets.max_consecutive_failures:
        status.breaker_open_until = format_ts(
            now + timedelta(seconds=parse_duration(budgets.cool_off))
        )
        status.consecutive_failures = 0
        return Stop(
            "Idle",
            f"{budgets.max_consecutive_failures} failed trials in a row: no proposals "
            f"until {status.breaker_open_until}",
            decision="CircuitBreakerOpen",
        )
    status.breaker_open_until = None
    return None


# Trials that cost no traffic and taught nothing new: not counted against maxTrials (a
# sampler asking again for a measured config; a trial whose Rollout was never created).
FREE_OUTCOMES = ("Duplicate", "NotStarted")
EXHAUSTED_AFTER = 3  # duplicates in a row that stop the search


def budgets(
    spec: OptimizationPolicySpec,
    status: OptimizationPolicyStatus,
    now: datetime,
    active_rollout: str | None,
) -> Stop | None:
    """Once a trigger is due: the cooldown since the last trial's Rollout ended,
    ``maxTrials``, ``maxRolloutsPerDay`` (mode auto) and no Rollout active."""
    records = status.trial_records
    ends = [parse_optional(r.finished_at) for r in records if r.rollout and r.finished_at]
    last_end = max((e for e in ends if e is not None), default=None)
    cooldown = parse_duration(spec.schedule.cooldown)
    if last_end is not None and (now - last_end).total_seconds() < cooldown:
        return Stop("Idle", f"cooldown {spec.schedule.cooldown} since the last trial's rollout")
    limit = spec.budgets.max_trials
    spent = [r for r in records if r.outcome not in FREE_OUTCOMES]
    if limit is not None and len(spent) >= limit:
        return Stop("Idle", f"budget spent: {len(spent)} of {limit} trials")
    tail = records[-EXHAUSTED_AFTER:]
    if len(tail) == EXHAUSTED_AFTER and all(r.outcome == "Duplicate" for r in tail):
        return Stop(
            "Idle",
            f"the sampler proposed only measured configurations {EXHAUSTED_AFTER} times in "
            "a row: the search space looks exhausted (best in status.best)",
        )
    today = [
        r for r in records if r.rollout and (now - (parse_optional(r.started_at) or now)).days < 1
    ]
    if spec.mode == "auto" and len(today) >= spec.budgets.max_rollouts_per_day:
        return Stop("Idle", f"{len(today)} rollouts in the last day (budgets.maxRolloutsPerDay)")
    if active_rollout:
        return Stop(
            "Monitoring", f"not stable: Rollout {active_rollout} is active on the LLMConfig"
        )
    return None
