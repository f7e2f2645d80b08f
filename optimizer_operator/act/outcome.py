"""What a reconcile decided: the status fields to write and the Events to post."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kubernetes import client

from ..api.common import GROUP, VERSION

# (connect, read) seconds for one write.
TIMEOUT = (5, 15)


@dataclass
class Outcome:
    """What a reconcile decided: the status fields to write and the Events to post."""

    status: dict[str, Any]
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (type, reason, message)
    retry_after: float | None = None  # seconds, when the world must change first


def post_events(core: client.CoreV1Api, obj: dict[str, Any], outcome: Outcome) -> None:
    """One Kubernetes Event per outcome event, on ``obj``."""
    meta = obj["metadata"]
    now = datetime.now(UTC)
    for event_type, reason, message in outcome.events:
        core.create_namespaced_event(
            meta["namespace"],
            {
                "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
                "involvedObject": {
                    "apiVersion": obj["apiVersion"],
                    "kind": obj["kind"],
                    "name": meta["name"],
                    "namespace": meta["namespace"],
                    "uid": meta["uid"],
                },
                "type": event_type,
                "reason": reason,
                "message": message[:1024],
                "firstTimestamp": now.isoformat(),
                "lastTimestamp": now.isoformat(),
                "count": 1,
                "source": {"component": "llm-optimizer-cycle"},
            },
            _request_timeout=TIMEOUT,
        )


def write_outcome(
    custom: client.CustomObjectsApi,
    core: client.CoreV1Api,
    obj: dict[str, Any],
    plural: str,
    outcome: Outcome,
) -> None:
    """The outcome's status and Events, written straight to the API (the handlers write
    theirs through kopf; ``llm-optimizer cycle`` runs without it)."""
    meta = obj["metadata"]
    custom.patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        meta["namespace"],
        plural,
        meta["name"],
        {"status": outcome.status},
        _request_timeout=TIMEOUT,
    )
    post_events(core, obj, outcome)
