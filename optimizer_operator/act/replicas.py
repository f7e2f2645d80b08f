"""Replica-based split: a canary Deployment for apps that read their config only at start.

The canary Deployment is a clone of the target Deployment whose pods read a
ConfigMap holding the candidate alone. It is owned by the Rollout (so the
garbage collector removes it with the Rollout) and deleted when the Rollout
ends. The stable Deployment is never scaled: its replica count belongs to
whoever manages it (a person, Argo CD, Flux, an HPA). The canary gets
``ceil(S * w / (100 - w))`` replicas for a weight of w percent over S stable
replicas, so its share of pods is at least w (one pod at the least; S at 100%).
"""

from __future__ import annotations

import copy
import math
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from ..api.common import GROUP
from ..api.llmconfig import LLMConfigObject, ModelConfig
from ..api.names import label_value, object_name
from ..api.variants import TOTAL_WEIGHT, Variant, VariantSet
from .configmap import (
    ANNOTATION_CONFIG_HASH,
    REQUEST_TIMEOUT,
    apply_configmap,
    build_configmap,
    default_configmap_name,
)
from .deployment import DeploymentMissing
from .ownership import owner_reference

LABEL_CANARY = f"{GROUP}/canary-of"


def canary_replicas(stable: int, weight: int) -> int:
    """Pods for the canary so that its share of all pods is at least ``weight`` percent."""
    if weight <= 0:
        return 0
    if weight >= 100:
        return max(stable, 1)
    return max(1, math.ceil(stable * weight / (100 - weight)))


def candidate_configmap_name(llmconfig: LLMConfigObject) -> str:
    """``<configmap>-canary``: the ConfigMap holding the candidate alone."""
    spec = llmconfig.spec
    cm = spec.target.config_map.name or default_configmap_name(llmconfig.name)
    return object_name(f"{cm}-canary")


def names(llmconfig: LLMConfigObject) -> tuple[str, str]:
    """(canary Deployment, canary ConfigMap) names for an LLMConfig."""
    spec = llmconfig.spec
    assert spec.target.deployment is not None
    deployment = object_name(f"{spec.target.deployment.name}-canary")
    return deployment, candidate_configmap_name(llmconfig)


def _read(apps: client.AppsV1Api, namespace: str, name: str) -> Any | None:
    try:
        return apps.read_namespaced_deployment(name, namespace, _request_timeout=REQUEST_TIMEOUT)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def target_exists(apps: client.AppsV1Api, llmconfig: LLMConfigObject) -> bool:
    """Whether the LLMConfig's target Deployment (the one the canary clones) exists."""
    deployment = llmconfig.spec.target.deployment
    assert deployment is not None
    return _read(apps, llmconfig.namespace, deployment.name) is not None


def _swap_configmap(template: dict[str, Any], old: str, new: str) -> None:
    """Point every reference to ConfigMap ``old`` in a pod template at ``new``."""
    spec = template.get("spec") or {}
    for volume in spec.get("volumes") or []:
        if (volume.get("configMap") or {}).get("name") == old:
            volume["configMap"]["name"] = new
        for source in (volume.get("projected") or {}).get("sources") or []:
            if (source.get("configMap") or {}).get("name") == old:
                source["configMap"]["name"] = new
    for container in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        for env in container.get("env") or []:
            ref = (env.get("valueFrom") or {}).get("configMapKeyRef") or {}
            if ref.get("name") == old:
                ref["name"] = new
        for env_from in container.get("envFrom") or []:
            ref = env_from.get("configMapRef") or {}
            if ref.get("name") == old:
                ref["name"] = new


def write_candidate_configmap(
    core: client.CoreV1Api,
    rollout: dict[str, Any],
    llmconfig: LLMConfigObject,
    candidate: ModelConfig,
) -> bool:
    """Write ``<configmap>-canary`` with the candidate alone, owned by the Rollout (the
    garbage collector removes it with the Rollout); True when it changed."""
    variants = VariantSet(
        llm_config=llmconfig.name,
        namespace=llmconfig.namespace,
        rollout=rollout["metadata"]["name"],
        variants=[
            Variant(
                id=f"canary-{candidate.config_hash()[:8]}",
                role="candidate",
                hash=candidate.config_hash(),
                weight=TOTAL_WEIGHT,
                provider=candidate.provider,
                model=candidate.model,
                parameters=candidate.parameters,
                endpoint=candidate.endpoint,
            )
        ],
    )
    return apply_configmap(
        core,
        build_configmap(
            name=candidate_configmap_name(llmconfig),
            key=llmconfig.spec.target.config_map.key,
            variants=variants,
            owner=rollout,
        ),
    )


def remove_candidate_configmap(core: client.CoreV1Api, llmconfig: LLMConfigObject) -> bool:
    """Delete ``<configmap>-canary``; True when it existed."""
    try:
        core.delete_namespaced_config_map(
            candidate_configmap_name(llmconfig),
            llmconfig.namespace,
            _request_timeout=REQUEST_TIMEOUT,
        )
    except ApiException as exc:
        if exc.status != 404:
            raise
        return False
    return True


def ensure_canary(
    *,
    core: client.CoreV1Api,
    apps: client.AppsV1Api,
    rollout: dict[str, Any],
    llmconfig: LLMConfigObject,
    candidate: ModelConfig,
    weight: int,
) -> int:
    """Create or scale the canary Deployment (and its ConfigMap); returns its replicas."""
    namespace = llmconfig.namespace
    spec = llmconfig.spec
    assert spec.target.deployment is not None
    target = _read(apps, namespace, spec.target.deployment.name)
    if target is None:
        raise DeploymentMissing(
            f"Deployment {spec.target.deployment.name} not found in {namespace}"
        )
    deploy_name, cm_name = names(llmconfig)
    stable_cm = spec.target.config_map.name or default_configmap_name(llmconfig.name)
    rollout_name = rollout["metadata"]["name"]
    write_candidate_configmap(core, rollout, llmconfig, candidate)
    replicas = canary_replicas(target.spec.replicas or 1, weight)
    api = apps.api_client  # the caller's client: its serializer, no new connection pool
    template = api.sanitize_for_serialization(target.spec.template)
    template = copy.deepcopy(template)
    _swap_configmap(template, stable_cm, cm_name)
    canary_of = label_value(rollout_name)
    labels = {**(template.get("metadata", {}).get("labels") or {}), LABEL_CANARY: canary_of}
    template.setdefault("metadata", {})["labels"] = labels
    template["metadata"].setdefault("annotations", {})[ANNOTATION_CONFIG_HASH] = (
        candidate.config_hash()
    )
    selector = api.sanitize_for_serialization(target.spec.selector)
    selector = {
        **selector,
        "matchLabels": {**(selector.get("matchLabels") or {}), LABEL_CANARY: canary_of},
    }
    current = _read(apps, namespace, deploy_name)
    if current is None:
        apps.create_namespaced_deployment(
            namespace,
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {
                    "name": deploy_name,
                    "namespace": namespace,
                    "labels": {LABEL_CANARY: canary_of},
                    "ownerReferences": [owner_reference(rollout)],
                },
                "spec": {"replicas": replicas, "selector": selector, "template": template},
            },
            _request_timeout=REQUEST_TIMEOUT,
        )
    elif current.spec.replicas != replicas:
        apps.patch_namespaced_deployment(
            deploy_name,
            namespace,
            {"spec": {"replicas": replicas}},
            _request_timeout=REQUEST_TIMEOUT,
        )
    return replicas


def canary_ready(
    apps: client.AppsV1Api, llmconfig: LLMConfigObject, weight: int
) -> tuple[bool, str]:
    """Whether the canary Deployment has the pods the weight asks for."""
    deploy_name, _ = names(llmconfig)
    deployment = llmconfig.spec.target.deployment
    assert deployment is not None
    namespace = llmconfig.namespace
    target = _read(apps, namespace, deployment.name)
    current = _read(apps, namespace, deploy_name)
    if target is None or current is None:
        return False, f"canary Deployment {deploy_name} not created yet"
    want = canary_replicas(target.spec.replicas or 1, weight)
    have = (current.status.available_replicas if current.status else None) or 0
    if have < want:
        return False, f"canary Deployment {deploy_name}: {have}/{want} pods available"
    return True, f"{have}/{want} canary pods available"


def remove_canary(
    core: client.CoreV1Api, apps: client.AppsV1Api, llmconfig: LLMConfigObject
) -> bool:
    """Delete the canary Deployment and ConfigMap; True when something was deleted."""
    deploy_name, cm_name = names(llmconfig)
    namespace = llmconfig.namespace
    deleted = False
    for delete, name in (
        (apps.delete_namespaced_deployment, deploy_name),
        (core.delete_namespaced_config_map, cm_name),
    ):
        try:
            delete(name, namespace, _request_timeout=REQUEST_TIMEOUT)
            deleted = True
        except ApiException as exc:
            if exc.status != 404:
                raise
    return deleted
