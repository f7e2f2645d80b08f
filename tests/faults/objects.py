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


def app_deployment(namespace: str) -> dict[str, Any]:
    """The app Deployment `chat` (3 replicas) reading ConfigMap bot-llm-config by volume and
    by env: what a replica-split Rollout clones."""
    labels = {"app": "chat"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "chat", "namespace": namespace},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": "example.invalid/chat:1",
                            "env": [
                                {
                                    "name": "VARIANTS",
                                    "valueFrom": {
                                        "configMapKeyRef": {
                                            "name": "bot-llm-config",
                                            "key": "variants.json",
                                        }
                                    },
                                }
                            ],
                            "volumeMounts": [{"name": "llm", "mountPath": "/etc/llm"}],
                        }
                    ],
                    "volumes": [{"name": "llm", "configMap": {"name": "bot-llm-config"}}],
                },
            },
        },
    }
