"""The app Deployment: a config-hash annotation on its pod template makes pods roll."""

from __future__ import annotations

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from .configmap import ANNOTATION_CONFIG_HASH, REQUEST_TIMEOUT


class DeploymentMissing(RuntimeError):
    """The target Deployment does not exist."""


def annotate_config_hash(
    apps: client.AppsV1Api, namespace: str, name: str, config_hash: str
) -> bool:
    """Set the pod-template config-hash annotation; True when it changed."""
    try:
        current = apps.read_namespaced_deployment(name, namespace, _request_timeout=REQUEST_TIMEOUT)
    except ApiException as exc:
        if exc.status == 404:
            raise DeploymentMissing(f"Deployment {name} not found in {namespace}") from None
        raise
    annotations = current.spec.template.metadata.annotations or {}
    if annotations.get(ANNOTATION_CONFIG_HASH) == config_hash:
        return False
    patch = {
        "spec": {"template": {"metadata": {"annotations": {ANNOTATION_CONFIG_HASH: config_hash}}}}
    }
    apps.patch_namespaced_deployment(name, namespace, patch, _request_timeout=REQUEST_TIMEOUT)
    return True
