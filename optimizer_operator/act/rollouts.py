"""Rollout reads and writes, and the pure builder of a Rollout object."""

from __future__ import annotations

from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from ..api.common import GROUP, VERSION
from ..api.names import object_name
from ..api.rollout import TERMINAL_PHASES
from .configmap import REQUEST_TIMEOUT
from .ownership import owner_reference

FIELD_MANAGER = "llm-optimizer-operator"  # the operator's own spec writes, in managedFields
LABEL_RULE = f"{GROUP}/rule"  # the policy rule a Rollout carries out
LABEL_SAFETY = f"{GROUP}/safety"  # "rollback": a safety rollback, never rate-limited


def read_rollout(
    custom: client.CustomObjectsApi, namespace: str, name: str
) -> dict[str, Any] | None:
    """The Rollout ``name``, or None when it does not exist."""
    try:
        obj: dict[str, Any] = custom.get_namespaced_custom_object(
            GROUP, VERSION, namespace, "rollouts", name, _request_timeout=REQUEST_TIMEOUT
        )
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return obj


def patch_rollout_spec(
    custom: client.CustomObjectsApi, namespace: str, name: str, spec: dict[str, Any]
) -> None:
    """Merge ``spec`` into the Rollout's spec (promote, abort: what a person would set)."""
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "rollouts", name, {"spec": spec},
        field_manager=FIELD_MANAGER, _request_timeout=REQUEST_TIMEOUT,
    )  # fmt: skip


def build_rollout(
    name: str,
    namespace: str,
    spec: dict[str, Any],
    *,
    labels: dict[str, str],
    annotations: dict[str, str],
    owner: dict[str, Any] | None,
) -> dict[str, Any]:
    """A Rollout object owned by ``owner`` (garbage-collected with it); with no owner,
    a person's Rollout (one the CLI creates for them: never held back)."""
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Rollout",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels,
            "annotations": annotations,
            **({"ownerReferences": [owner_reference(owner)]} if owner is not None else {}),
        },
        "spec": spec,
    }
    return body


def create_rollout(custom: client.CustomObjectsApi, body: dict[str, Any]) -> None:
    """Create ``body``; one that exists already (created before a restart, for the same
    trial or rule: the names are deterministic) is left as it is."""
    try:
        custom.create_namespaced_custom_object(
            GROUP, VERSION, body["metadata"]["namespace"], "rollouts", body,
            _request_timeout=REQUEST_TIMEOUT,
        )  # fmt: skip
    except ApiException as exc:
        if exc.status != 409:
            raise


def patch_policy_status(
    custom: client.CustomObjectsApi, namespace: str, name: str, patch: dict[str, Any]
) -> None:
    """Merge ``patch`` into an OptimizationPolicy's status now, before the cycle's own
    write at its end (a trial's record goes in before its Rollout is created)."""
    custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, "optimizationpolicies", name, {"status": patch},
        _request_timeout=REQUEST_TIMEOUT,
    )  # fmt: skip


def free_name(
    custom: client.CustomObjectsApi, namespace: str, base: str, attempts: int = 20
) -> tuple[str, dict[str, Any] | None] | None:
    """The name for the next Rollout of ``base``: ``base`` itself, else ``base-2``,
    ``base-3``… past the ones that have ended. Returns (name, the Rollout of that name
    when it exists and still runs — the same request made before, to adopt rather than
    duplicate), or None when ``attempts`` names are all taken by ended Rollouts."""
    for k in range(1, attempts + 1):
        name = object_name(base if k == 1 else f"{base}-{k}")
        body = read_rollout(custom, namespace, name)
        if body is None:
            return name, None
        if (body.get("status") or {}).get("phase") not in TERMINAL_PHASES:
            return name, body
    return None
