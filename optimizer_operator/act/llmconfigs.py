"""LLMConfig reads and the status writes other kinds make on it."""

from __future__ import annotations

from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from ..api.common import GROUP, VERSION
from ..api.kinds import LLMCONFIG
from ..api.llmconfig import ModelConfig, QuarantineEntry
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


def claim(custom: client.CustomObjectsApi, llmc: dict[str, Any], rollout: str) -> None:
    """Make ``rollout`` the LLMConfig's active rollout (``status.activeRollout``)."""
    patch_status(
        custom, llmc["metadata"]["namespace"], llmc["metadata"]["name"], {"activeRollout": rollout}
    )


def quarantine(
    custom: client.CustomObjectsApi,
    llmc: dict[str, Any],
    candidate: ModelConfig,
    rollout: str,
    reason: str,
    now: str,
) -> None:
    """List ``candidate`` in the LLMConfig's quarantine (rolled back on evidence: not
    retried automatically) and count the rollback for the rate limit."""
    llmc_status = llmc.get("status") or {}
    candidate_hash = candidate.config_hash()
    entries = [e for e in llmc_status.get("quarantine") or [] if e.get("hash") != candidate_hash]
    entries.append(
        QuarantineEntry(
            hash=candidate_hash,
            model=candidate.model,
            rollout=rollout,
            reason=reason[:1024],
            at=now,
        ).to_wire()
    )
    stamp = parse_ts(now)
    recent = [t for t in llmc_status.get("rollbacks") or [] if (stamp - parse_ts(t)).days < 1]
    rollbacks = [*recent[-99:], now]
    patch = {"quarantine": entries[-QUARANTINE_LIMIT:], "rollbacks": rollbacks}
    patch_status(custom, llmc["metadata"]["namespace"], llmc["metadata"]["name"], patch)
    llmc.setdefault("status", {}).update(patch)


def lift_quarantine(
    custom: client.CustomObjectsApi, llmc: dict[str, Any], candidate_hash: str
) -> None:
    """Take ``candidate_hash`` off the quarantine (a person asked for a retry)."""
    entries = (llmc.get("status") or {}).get("quarantine") or []
    kept = [e for e in entries if e.get("hash") != candidate_hash]
    if len(kept) != len(entries):
        patch_status(
            custom, llmc["metadata"]["namespace"], llmc["metadata"]["name"], {"quarantine": kept}
        )
        llmc.setdefault("status", {})["quarantine"] = kept


def holds(llmc: dict[str, Any], rollout: str) -> bool:
    """Whether ``rollout`` may write the LLMConfig's history (no other claim on it)."""
    return (llmc.get("status") or {}).get("activeRollout") in (None, rollout)


def release(custom: client.CustomObjectsApi, llmc: dict[str, Any], rollout: str) -> None:
    """Drop ``rollout``'s claim (``status.activeRollout``), if it holds it."""
    if (llmc.get("status") or {}).get("activeRollout") == rollout:
        patch_status(
            custom, llmc["metadata"]["namespace"], llmc["metadata"]["name"], {"activeRollout": None}
        )
