"""The audit log of every change the operator makes or sees (PostgreSQL, when
configured): each handler's Events that change what runs or who holds what, with the
acting identity as far as the API tells it.

Who acted: the operator for its own decisions; for a change a person asked for (a
Rollout's manual promote/abort/retry, an LLMConfig edit, a Rollout a person created) the
``optimizer.llmops.dev/requested-by`` annotation the CLI writes (the kubeconfig user),
else the field manager of the newest write to the object's spec (``managedFields``:
the client, e.g. ``kubectl-edit``; Kubernetes records no user name there)."""

from __future__ import annotations

import logging
from typing import Any

from ..act.outcome import Outcome
from ..api.common import GROUP
from ..store import StoreUnavailable
from . import clients

log = logging.getLogger(__name__)

OPERATOR = "llm-optimizer operator"
REQUESTED_BY = f"{GROUP}/requested-by"
# Events that are no change (waiting, evidence, warnings about data).
NOT_CHANGES = frozenset(
    {"Holding", "Resumed", "TriggerWarning", "AnotherRolloutActive", "BoundUndecided"}
)
# Changes a person asked for through the object's spec (or by creating it).
BY_A_PERSON = frozenset(
    {
        "AbortedBySpec", "PromotedBySpec", "RevertedBySpec", "Retried", "StepPromoted",
        "Paused", "NewVersion", "DeliveringByRollout",
    }
)  # fmt: skip


def spec_manager(meta: dict[str, Any]) -> str | None:
    """The field manager of the newest write that touched the spec, if the API says."""
    entries = [
        e
        for e in meta.get("managedFields") or []
        if "f:spec" in (e.get("fieldsV1") or {}) and e.get("manager")
    ]
    if not entries:
        return None
    newest = max(entries, key=lambda e: str(e.get("time") or ""))
    return str(newest["manager"])


def actor(body: dict[str, Any], reason: str, kind: str) -> str:
    """Who made the change an Event of ``reason`` on ``body`` reports."""
    meta = body.get("metadata") or {}
    owners = meta.get("ownerReferences") or []
    created_by_us = any(o.get("kind") in ("LLMConfig", "OptimizationPolicy") for o in owners)
    personal = reason in BY_A_PERSON or (
        kind == "Rollout" and reason == "Started" and not created_by_us
    )
    if not personal:
        return OPERATOR
    who = (meta.get("annotations") or {}).get(REQUESTED_BY)
    manager = spec_manager(meta)
    if who and manager:
        return f"{who} via {manager}"
    return who or manager or "unknown"


def record(kind: str, body: dict[str, Any], outcome: Outcome) -> None:
    """Audit the changes among ``outcome``'s Events (nothing without a database)."""
    store = clients.history_store()
    if store is None:
        return
    meta = body.get("metadata") or {}
    rows = [
        (str(meta.get("namespace")), f"{kind}/{meta.get('name')}", reason, message[:2000],
         actor(body, reason, kind))
        for _, reason, message in outcome.events
        if reason not in NOT_CHANGES
    ]  # fmt: skip
    if not rows:
        return
    try:
        store.audit(rows)
    except StoreUnavailable as exc:  # kept in memory; written with the next save
        log.warning("audit: history store unavailable, %d rows kept: %s", len(rows), exc)
