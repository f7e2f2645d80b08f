"""Rollout handler: a timer per Rollout that runs one tick of its state machine."""

from __future__ import annotations

import functools
import os
from datetime import UTC, datetime
from typing import Any

import kopf
from pydantic import ValidationError

from ..act import notify
from ..act.outcome import Outcome
from ..api import GROUP, ROLLOUT, VERSION
from ..api.routing import GatewayAPIRouting
from ..api.timestamps import format_ts
from ..decide.actions import TERMINAL
from ..reconcile.llmconfig import rollout_deleted
from ..reconcile.rollout import reconcile_rollout
from . import audit, clients, telemetry
from .status import body_dict, write_outcome_now

TICK_SECONDS = float(os.environ.get("LLMOPT_ROLLOUT_TICK", "10"))


def _active(spec: kopf.Spec, status: kopf.Status, **_: Any) -> bool:
    """Tick unfinished rollouts, and finished ones a person asked to retry."""
    retry_asked = int(spec.get("retry") or 0) > int(status.get("observedRetry") or 0)
    return status.get("phase") not in TERMINAL or retry_asked


@kopf.timer(
    GROUP, VERSION, ROLLOUT.plural, interval=TICK_SECONDS, when=_active, backoff=TICK_SECONDS
)
@telemetry.timed("Rollout")
@clients.retry_soon
def tick(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
    """Validate, claim the LLMConfig, advance the steps, act; status says where it is."""
    outcome = reconcile_rollout(
        body_dict(body),
        core=clients.core(),
        apps=clients.apps(),
        custom=clients.custom(),
        source=clients.metric_source(),
    )
    outcome.retry_after = None  # the timer is the retry
    phase = outcome.status.get("phase")
    if phase in TERMINAL and (body.get("status") or {}).get("phase") != phase:
        telemetry.record_rollout_end(str(phase))
    audit.record("Rollout", body_dict(body), outcome)
    now = format_ts(datetime.now(UTC))
    told = notify.rollout_notice(body.get("status") or {}, outcome.status, body, now)
    if told is not None:
        key, notice = told
        notifier().notify(key, notice, namespace_webhooks()(notice.namespace))
    write_outcome_now(outcome, body, ROLLOUT.plural)


@functools.cache
def namespace_webhooks() -> notify.NamespaceWebhooks:
    """Each namespace's own receivers (its ConfigMap llm-optimizer-notifications)."""
    return notify.NamespaceWebhooks(notify.read_namespace_webhooks(clients.core()))


@functools.cache
def notifier() -> notify.Notifier:
    """The webhooks of LLMOPT_NOTIFY_WEBHOOKS, one delivery thread for the process."""
    return notify.from_env(lambda outcome: telemetry.NOTIFICATIONS.labels(outcome).inc())


def _routing(spec: dict[str, Any]) -> GatewayAPIRouting | None:
    """The deleted Rollout's HTTPRoute, if it routed through one (and says so validly)."""
    if spec.get("trafficRouting") != "gatewayAPI":
        return None
    try:
        return GatewayAPIRouting.model_validate(spec.get("gatewayAPI") or {})
    except ValidationError:
        return None


@kopf.on.delete(GROUP, VERSION, ROLLOUT.plural, optional=True)
@clients.retry_soon
def deleted(body: kopf.Body, **_: Any) -> None:
    """A Rollout deleted mid-canary gives its LLMConfig back at once: claim released,
    stable on all traffic (optional: no finalizer holds the deletion; should the operator
    miss it, the LLMConfig's drift repair finds the claim's holder gone and does the
    same)."""
    target = ((body.get("spec") or {}).get("targetRef") or {}).get("name")
    if not target:
        return
    meta = body["metadata"]
    done = rollout_deleted(
        clients.core(),
        clients.custom(),
        meta["namespace"],
        str(target),
        meta["name"],
        _routing(body.get("spec") or {}),
    )
    if done:
        # The LLMConfig's own event stream, where its user looks.
        kopf.warn(done[0], reason="RolloutDeleted", message=done[1])  # type: ignore[arg-type]
        audit.record("LLMConfig", done[0], Outcome({}, [("Warning", "RolloutDeleted", done[1])]))
