"""Apply a domain Outcome through kopf: status patch, Events, retry."""

from __future__ import annotations

from typing import Any

import kopf

from ..act.outcome import TIMEOUT, Outcome
from ..api.common import GROUP, VERSION


def apply_outcome(outcome: Outcome, body: kopf.Body, patch: kopf.Patch) -> None:
    """Write ``outcome.status`` and post its Events; ask kopf to retry if needed."""
    for key, value in outcome.status.items():
        patch.status[key] = value
    for event_type, reason, message in outcome.events:
        kopf.event(body, type=event_type, reason=reason, message=message[:1024])
    if outcome.retry_after is not None:
        # kopf applies the status patch above before it schedules the retry.
        raise kopf.TemporaryError(outcome.status.get("message", "retry"), delay=outcome.retry_after)


def write_outcome_now(outcome: Outcome, body: kopf.Body, plural: str) -> None:
    """Write ``outcome.status`` with the operator's own client (its timeouts; an error
    raises in the handler, so kopf retries the handler) and post its Events. For timers:
    kopf applies a handler's patch itself after the handler, and a patch cut in flight
    there (a connection reset mid-answer) ends the object's timer for good, so an
    object's ticks would stop until the operator restarts."""
    from kubernetes.client.exceptions import ApiException

    from . import clients

    meta = body["metadata"]
    try:
        clients.custom().patch_namespaced_custom_object_status(
            GROUP, VERSION, meta["namespace"], plural, meta["name"],
            {"status": outcome.status}, _request_timeout=TIMEOUT,
        )  # fmt: skip
    except ApiException as exc:
        if exc.status != 404:  # gone meanwhile: nothing left to write to
            raise
    for event_type, reason, message in outcome.events:
        kopf.event(body, type=event_type, reason=reason, message=message[:1024])


def body_dict(body: kopf.Body) -> dict[str, Any]:
    """A plain-dict copy of a kopf body, for domain code that knows nothing of kopf."""
    return {
        "apiVersion": body["apiVersion"],
        "kind": body["kind"],
        "metadata": dict(body["metadata"]),
        "spec": dict(body.get("spec") or {}),
        "status": dict(body.get("status") or {}),
    }
