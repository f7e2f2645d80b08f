"""LLMConfig reads and the status writes other kinds make on it."""

from __future__ import annotations

from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from ..api.common import GROUP, VERSION
from ..api.kinds import LLMCONFIG
from ..api.llmconfig import LLMConfigObject, ModelConfig, QuarantineEntry
from ..api.timestamps import parse_ts
from .configmap import REQUEST_TIMEOUT

QUARANTINE_LIMIT = 50


def read_llmconfig(
    custom: client.CustomObjectsApi, namespace: str, name: str
) -> dict[str, Any] | None:
    """The LLMConfig ``name``, or None when it does not exist."""
    try:
        obj: dict[str, Any] = custom.get_namespaced_custom_object(
            GROUP, VERSION, namespace, LLMCONFIG.plural, name, _request_timeout=REQUEST_TIMEOUT
        )
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return obj


def patch_status(
    custom: client.CustomObjectsApi, namespace: str, name: str, patch: dict[str, Any]
) -> None:
    """Merge ``patch`` into the LLMConfig's status."""
    custom.patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        namespace,
        LLMCONFIG.plural,
        name,
        {"status": patch},
        _request_timeout=REQUEST_TIMEOUT,
    )


def claim(custom: client.CustomObjectsApi, target: LLMConfigObject, rollout: str) -> None:
    """Make ``rollout`` the LLMConfig's active rollout (``status.activeRollout``)."""
    patch_status(custom, target.namespace, target.name, {"activeRollout": rollout})
    target.status.active_rollout = rollout


def quarantine(
    custom: client.CustomObjectsApi,
    target: LLMConfigObject,
    candidate: ModelConfig,
    rollout: str,
    reason: str,
    now: str,
) -> None:
    """List ``candidate`` in the LLMConfig's quarantine (rolled back on evidence: not
    retried automatically) and count the rollback for the rate limit."""
    candidate_hash = candidate.config_hash()
    entries = [e for e in target.status.quarantine if e.hash != candidate_hash]
    entries.append(
        QuarantineEntry(
            hash=candidate_hash,
            model=candidate.model,
            rollout=rollout,
            reason=reason[:1024],
            at=now,
        )
    )
    stamp = parse_ts(now)
    recent = [t for t in target.status.rollbacks if (stamp - parse_ts(t)).days < 1]
    rollbacks = [*recent[-99:], now]
    kept = entries[-QUARANTINE_LIMIT:]
    patch = {"quarantine": [e.to_wire() for e in kept], "rollbacks": rollbacks}
    patch_status(custom, target.namespace, target.name, patch)
    target.status.quarantine, target.status.rollbacks = kept, rollbacks


def lift_quarantine(
    custom: client.CustomObjectsApi, target: LLMConfigObject, candidate_hash: str
) -> None:
    """Take ``candidate_hash`` off the quarantine (a person asked for a retry)."""
    entries = target.status.quarantine
    kept = [e for e in entries if e.hash != candidate_hash]
    if len(kept) != len(entries):
        wire = [e.to_wire() for e in kept]
        patch_status(custom, target.namespace, target.name, {"quarantine": wire})
        target.status.quarantine = kept


def holds(target: LLMConfigObject, rollout: str) -> bool:
    """Whether ``rollout`` may write the LLMConfig's history (no other claim on it)."""
    return target.status.active_rollout in (None, rollout)


def release(custom: client.CustomObjectsApi, target: LLMConfigObject, rollout: str) -> None:
    """Drop ``rollout``'s claim (``status.activeRollout``), if it holds it."""
    if target.status.active_rollout == rollout:
        patch_status(custom, target.namespace, target.name, {"activeRollout": None})
        target.status.active_rollout = None
