"""Pure helpers for status.conditions (metav1.Condition semantics)."""

from __future__ import annotations

from typing import Any

from .common import ConditionStatus
from .timestamps import now_rfc3339

__all__ = ["now_rfc3339", "set_condition"]


def set_condition(
    conditions: list[dict[str, Any]] | None,
    *,
    type: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    generation: int | None,
    now: str | None = None,
) -> list[dict[str, Any]]:
    """Return ``conditions`` with one condition set; ``lastTransitionTime`` moves only
    when the status changes, as Kubernetes tools expect."""
    now = now or now_rfc3339()
    result: list[dict[str, Any]] = []
    found = False
    for cond in conditions or []:
        if cond.get("type") != type:
            result.append(dict(cond))
            continue
        found = True
        transition = cond.get("lastTransitionTime") or now
        if cond.get("status") != status:
            transition = now
        result.append(_condition(type, status, reason, message, generation, transition))
    if not found:
        result.append(_condition(type, status, reason, message, generation, now))
    return result


def _condition(
    type: str, status: str, reason: str, message: str, generation: int | None, when: str
) -> dict[str, Any]:
    cond: dict[str, Any] = {
        "type": type,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": when,
    }
    if generation is not None:
        cond["observedGeneration"] = generation
    return cond


def get_condition(conditions: list[dict[str, Any]] | None, type: str) -> dict[str, Any] | None:
    """The condition of ``type``, or None."""
    for cond in conditions or []:
        if cond.get("type") == type:
            return cond
    return None
