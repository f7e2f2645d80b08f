"""LLMConfig reads and the status writes other kinds make on it."""

from __future__ import annotations

from collections.abc import Callable
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


CLAIM_ATTEMPTS = 3


def patch_status(
    custom: client.CustomObjectsApi,
    namespace: str,
    name: str,
    patch: dict[str, Any],
    *,
    resource_version: str | None = None,
) -> None:
    """Merge ``patch`` into the LLMConfig's status; with ``resource_version``, only if the
    object is still at that version (else ApiException 409: someone wrote in between)."""
    body: dict[str, Any] = {"status": patch}
    if resource_version is not None:
        body["metadata"] = {"resourceVersion": resource_version}
    custom.patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        namespace,
        LLMCONFIG.plural,
        name,
        body,
        _request_timeout=REQUEST_TIMEOUT,
    )


def claim(custom: client.CustomObjectsApi, target: LLMConfigObject, rollout: str) -> str | None:
    """Make ``rollout`` the LLMConfig's active rollout (``status.activeRollout``) if no
    other holds it: a compare-and-set on the object's resourceVersion, so of two Rollouts
    claiming at once exactly one wins. Returns the holder afterwards (``rollout`` when it
    won; None only when the LLMConfig is gone)."""
    current: LLMConfigObject | None = target
    for _ in range(CLAIM_ATTEMPTS):
        assert current is not None
        holder = current.status.active_rollout
        if holder not in (None, rollout):
            target.status.active_rollout = holder
            return holder
        version = (current.body.get("metadata") or {}).get("resourceVersion")
        try:
            patch_status(
                custom,
                target.namespace,
                target.name,
                {"activeRollout": rollout},
                resource_version=version,
            )
        except ApiException as exc:
            if exc.status != 409:
                raise
            found = read_llmconfig(custom, target.namespace, target.name)
            current = None if found is None else LLMConfigObject.parse(found)
            if current is None:
                return None
            continue  # written in between: look at the holder again
        target.status.active_rollout = rollout
        return rollout
    raise ApiException(status=409, reason=f"LLMConfig {target.name} kept changing; claim retried")


class StableMoved(Exception):
    """The LLMConfig's stable version is no longer the one a write was decided on."""

    def __init__(self, target: LLMConfigObject) -> None:
        stable = target.stable
        super().__init__(
            f"LLMConfig {target.name}: stable is now "
            + (f"v{stable.version} ({stable.source})" if stable else "unset")
        )
        self.target = target


def write_on_stable(
    custom: client.CustomObjectsApi,
    target: LLMConfigObject,
    stable_hash: str,
    make_patch: Callable[[LLMConfigObject], dict[str, Any]],
) -> LLMConfigObject:
    """Write the status patch ``make_patch`` builds from the LLMConfig as it is, only
    while its stable version is still ``stable_hash`` (compare-and-set on the
    resourceVersion; an unrelated write in between is read and the patch built again).
    Returns the LLMConfig the patch was built from; raises StableMoved when a newer
    stable came in (a person's edit is never overwritten)."""
    current = target
    for _ in range(CLAIM_ATTEMPTS):
        if current.stable is None or current.stable.hash != stable_hash:
            raise StableMoved(current)
        version = (current.body.get("metadata") or {}).get("resourceVersion")
        try:
            patch_status(
                custom, target.namespace, target.name, make_patch(current), resource_version=version
            )
        except ApiException as exc:
            if exc.status != 409:
                raise
            found = read_llmconfig(custom, target.namespace, target.name)
            if found is None:
                raise
            current = LLMConfigObject.parse(found)
            continue
        return current
    raise ApiException(status=409, reason=f"LLMConfig {target.name} kept changing; write retried")


def quarantine(
    custom: client.CustomObjectsApi,
    target: LLMConfigObject,
    candidate: ModelConfig,
    rollout: str,
    reason: str,
    now: str,
    *,
    counted: bool = True,
) -> None:
    """List ``candidate`` in the LLMConfig's quarantine (rolled back on evidence: not
    retried automatically) and, when ``counted``, count the rollback for the rate limit
    (an optimizer trial's is not: its policy's budgets bound trials)."""
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
    rollbacks = [*recent[-99:], now] if counted else recent[-100:]
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
