"""Apply a domain Outcome through kopf: status patch, Events, retry."""

from __future__ import annotations

from typing import Any

import kopf

from ..act.outcome import Outcome


def apply_outcome(outcome: Outcome, body: kopf.Body, patch: kopf.Patch) -> None:
    """Write ``outcome.status`` and post its Events; ask kopf to retry if needed."""
    for key, value in outcome.status.items():
        patch.status[key] = value
    for event_type, reason, message in outcome.events:
        kopf.event(body, type=event_type, reason=reason, message=message[:1024])
    if outcome.retry_after is not None:
        # kopf applies the status patch above before it schedules the retry.
        raise kopf.TemporaryError(outcome.status.get("message", "retry"), delay=outcome.retry_after)


def body_dict(body: kopf.Body) -> dict[str, Any]:
    """A plain-dict copy of a kopf body, for domain code that knows nothing of kopf."""
    return {
        "apiVersion": body["apiVersion"],
        "kind": body["kind"],
        "metadata": dict(body["metadata"]),
        "spec": dict(body.get("spec") or {}),
        "status": dict(body.get("status") or {}),
    }
