"""Rollout reads and writes, and the pure builder of a Rollout object."""

from __future__ import annotations

from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from ..api.common import GROUP, VERSION
from .configmap import REQUEST_TIMEOUT
from .ownership import owner_reference

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
        _request_timeout=REQUEST_TIMEOUT,
    )  # fmt: skip


def build_rollout(
    name: str,
    namespace: str,
    spec: dict[str, Any],
    *,
    labels: dict[str, str],
    annotations: dict[str, str],
    owner: dict[str, Any],
) -> dict[str, Any]:
    """A Rollout object owned by ``owner`` (garbage-collected with it)."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Rollout",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [owner_reference(owner)],
        },
        "spec": spec,
    }


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
