"""Whether an automatic Rollout may start: not for a quarantined candidate, not past the
LLMConfig's rollback rate limit. The rate limit holds back delivery Rollouts and rules'
config changes; a safety rollback is never held back, and an optimizer trial is bounded by
its policy's own budgets (maxRolloutsPerDay, cooldown, the circuit breaker), not by this
limit. A Rollout a person creates is never held back."""

from __future__ import annotations

from datetime import datetime

from ..api.common import parse_duration
from ..api.llmconfig import LLMConfigObject
from ..api.timestamps import parse_ts


def admission(
    candidate_hash: str, target: LLMConfigObject, now: datetime, *, rate_limited: bool = True
) -> tuple[str, str, float | None] | None:
    """Why an automatic rollout may not start: (reason, message, retry after seconds or
    None for never), or None when it may. ``rate_limited`` False: a safety rollback or a
    trial, which the rollback rate limit does not delay."""
    for entry in target.status.quarantine:
        if entry.hash == candidate_hash:
            return (
                "Quarantined",
                f"candidate {candidate_hash[:8]} was rolled back by Rollout "
                f"{entry.rollout} ({entry.reason}); not retried automatically "
                "(llm-optimizer rollout retry NAME tries it anyway)",
                None,
            )
    if not rate_limited:
        return None
    delivery = target.spec.delivery
    window = parse_duration(delivery.rollback_window)
    recent = sorted(
        t for t in target.status.rollbacks if (now - parse_ts(t)).total_seconds() < window
    )
    if len(recent) >= delivery.max_rollbacks:
        wait = window - (now - parse_ts(recent[-delivery.max_rollbacks])).total_seconds()
        return (
            "RollbackRateLimited",
            f"{len(recent)} rollbacks on LLMConfig {target.name} within {delivery.rollback_window} "
            f"(spec.delivery.maxRollbacks {delivery.max_rollbacks}); waiting {wait:.0f}s",
            max(wait, 1.0),
        )
    return None
