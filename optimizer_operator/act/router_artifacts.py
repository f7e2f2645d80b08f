"""Router artifacts for the gateway: read from the ConfigMap a router config names,
checked (a router the gateway can load, with the digest the spec pins) and inlined into
the variant the gateway reads."""

from __future__ import annotations

import json
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from ..api.llmconfig import ModelConfig
from ..api.variants import VariantRouter
from ..routers.model import Router
from .configmap import REQUEST_TIMEOUT
from .ownership import owner_reference


class RouterArtifactProblem(Exception):
    """A router config's artifact cannot be used; the message says why."""


def read_artifact(core: client.CoreV1Api, namespace: str, config: ModelConfig) -> str:
    """The artifact's JSON text, checked; RouterArtifactProblem otherwise."""
    assert config.router is not None
    ref = config.router.artifact
    where = f"ConfigMap {namespace}/{ref.name} key {ref.key}"
    try:
        cm = core.read_namespaced_config_map(ref.name, namespace, _request_timeout=REQUEST_TIMEOUT)
    except ApiException as exc:
        if exc.status == 404:
            raise RouterArtifactProblem(f"{where}: the ConfigMap does not exist") from None
        raise
    text = (cm.data or {}).get(ref.key)
    if text is None:
        raise RouterArtifactProblem(f"{where}: no such key")
    try:
        Router.loads(text)
    except ValueError as exc:
        raise RouterArtifactProblem(f"{where}: {exc}") from None
    digest = json.loads(text).get("digest")
    if digest != ref.digest:
        raise RouterArtifactProblem(
            f"{where}: the artifact's digest {str(digest)[:12]}… is not the one the spec "
            f"pins ({ref.digest[:12]}…); a retrained router is a new configuration: put "
            "its digest in the spec"
        )
    return str(text)


def variant_router(
    core: client.CoreV1Api, namespace: str, config: ModelConfig
) -> VariantRouter | None:
    """The gateway's view of ``config``'s routing (None for a plain config)."""
    if config.router is None:
        return None
    r = config.router
    return VariantRouter(
        mode=r.mode,
        threshold=r.threshold,
        strong=r.strong,
        artifact=read_artifact(core, namespace, config),
    )


def write_artifact(
    core: client.CoreV1Api,
    namespace: str,
    name: str,
    text: str,
    *,
    owner: dict[str, Any],
    labels: dict[str, str],
) -> None:
    """A retrained router's artifact as ConfigMap ``name`` (key router.json), owned by
    ``owner``. Its name carries the digest: an existing one holds the same artifact and
    is left as it is (a retried cycle writes nothing twice)."""
    body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels,
            "ownerReferences": [owner_reference(owner)],
        },
        "data": {"router.json": text},
    }
    try:
        core.create_namespaced_config_map(namespace, body, _request_timeout=REQUEST_TIMEOUT)
    except ApiException as exc:
        if exc.status != 409:
            raise
