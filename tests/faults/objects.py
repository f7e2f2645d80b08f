"""Object builders shared by the faults suite: an LLMConfig and a Rollout, created through
the real API server."""

from __future__ import annotations

from typing import Any

from kubernetes import client

from optimizer_operator.api import GROUP, VERSION


def create_llmconfig(
    custom: client.CustomObjectsApi, namespace: str, name: str, spec: dict[str, Any]
) -> None:
    custom.create_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        "llmconfigs",
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "LLMConfig",
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        },
    )


def create_rollout(
    custom: client.CustomObjectsApi,
    namespace: str,
    name: str,
    *,
    target: str,
    candidate: dict[str, Any],
    steps: list[dict[str, Any]],
) -> None:
    custom.create_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        "rollouts",
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Rollout",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"targetRef": {"name": target}, "candidate": candidate, "steps": steps},
        },
    )
