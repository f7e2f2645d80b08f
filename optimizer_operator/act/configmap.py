"""The gateway's ConfigMap: built as a pure function, written with timeouts."""

from __future__ import annotations

import json
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from ..api.common import GROUP
from ..api.names import label_value, object_name
from ..api.variants import VariantSet
from .ownership import owner_reference

MANAGED_BY = "llm-optimizer"
LABEL_LLM_CONFIG = f"{GROUP}/llm-config"
ANNOTATION_CONFIG_HASH = f"{GROUP}/config-hash"
REQUEST_TIMEOUT = (5, 15)  # connect, read (seconds)


class ConfigMapConflict(RuntimeError):
    """A ConfigMap of that name exists and belongs to someone else."""


def default_configmap_name(llm_config: str) -> str:
    return object_name(f"{llm_config}-llm-config")


def render_document(variants: VariantSet) -> str:
    """The JSON text the gateway reads; stable key order so unchanged input is unchanged text."""
    return json.dumps(variants.to_wire(), indent=2, sort_keys=True) + "\n"


def build_configmap(
    *,
    name: str,
    key: str,
    variants: VariantSet,
    owner: dict[str, Any],
) -> dict[str, Any]:
    """The ConfigMap object for ``variants``, owned by the LLMConfig ``owner``."""
    stable = variants.variants[0]
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": variants.namespace,
            "labels": {
                "app.kubernetes.io/managed-by": MANAGED_BY,
                LABEL_LLM_CONFIG: label_value(variants.llm_config),
            },
            "annotations": {ANNOTATION_CONFIG_HASH: stable.hash},
            "ownerReferences": [owner_reference(owner)],
        },
        "data": {key: render_document(variants)},
    }


def _read(core: client.CoreV1Api, meta: dict[str, Any]) -> Any:
    """The ConfigMap named in ``meta``, or None when there is none."""
    try:
        return core.read_namespaced_config_map(
            meta["name"], meta["namespace"], _request_timeout=REQUEST_TIMEOUT
        )
    except ApiException as exc:
        if exc.status != 404:
            raise
        return None


def apply_configmap(core: client.CoreV1Api, desired: dict[str, Any]) -> bool:
    """Create or update ``desired``; returns True when something was written.

    Refuses to take over a ConfigMap that another owner (or a person) created. When
    another writer creates it between our read and our create (a second operator during
    a hand-over, a person applying it), the create's 409 is answered by reading what
    they wrote and going on from there, as if our read had come after theirs.
    """
    meta = desired["metadata"]
    owner_uid = meta["ownerReferences"][0]["uid"]
    current = _read(core, meta)
    if current is None:
        try:
            core.create_namespaced_config_map(
                meta["namespace"], desired, _request_timeout=REQUEST_TIMEOUT
            )
            return True
        except ApiException as exc:
            if exc.status != 409:
                raise
            current = _read(core, meta)
            if current is None:  # created and deleted again meanwhile: retry afresh
                raise
    owners = current.metadata.owner_references or []
    if not any(o.uid == owner_uid for o in owners):
        raise ConfigMapConflict(
            f"ConfigMap {meta['name']} exists and is not owned by this LLMConfig; "
            "rename spec.target.configMap.name or delete that ConfigMap"
        )
    same = (
        (current.data or {}) == desired["data"]
        and (current.metadata.labels or {}) == {**(current.metadata.labels or {}), **meta["labels"]}
        and (current.metadata.annotations or {}).get(ANNOTATION_CONFIG_HASH)
        == meta["annotations"][ANNOTATION_CONFIG_HASH]
    )
    if same:
        return False
    patch = {
        "metadata": {
            "labels": meta["labels"],
            "annotations": meta["annotations"],
            "resourceVersion": current.metadata.resource_version,
        },
        "data": desired["data"],
    }
    # resourceVersion in the patch makes it conditional: a concurrent edit fails
    # with 409 and the handler retries on fresh state instead of overwriting it.
    core.patch_namespaced_config_map(
        meta["name"], meta["namespace"], patch, _request_timeout=REQUEST_TIMEOUT
    )
    return True
