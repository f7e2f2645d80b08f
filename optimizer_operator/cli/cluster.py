"""The one place the CLI reaches the cluster: credentials, the namespace, timeouts."""

from __future__ import annotations

import base64
import json
import os

from kubernetes import client, config

# (connect, read) seconds for one API request: a hung API server gives a clear error.
TIMEOUT = (5, 20)
# The CLI's writes, as managedFields and the audit show them.
FIELD_MANAGER = "llm-optimizer-cli"
REQUESTED_BY = "optimizer.llmops.dev/requested-by"


def connect() -> client.CustomObjectsApi:
    """In-cluster credentials when running in a pod, else the kubeconfig ($KUBECONFIG);
    raises ``config.ConfigException`` or ``OSError`` when neither works."""
    from ..handlers.clients import load_config

    load_config()
    return client.CustomObjectsApi()


def namespace(arg: str | None) -> str:
    """``-n``'s namespace, else the kubeconfig context's, else ``default``."""
    if arg:
        return arg
    try:
        _, active = config.list_kube_config_contexts(config_file=os.environ.get("KUBECONFIG"))
        return str(active.get("context", {}).get("namespace") or "default")
    except (config.ConfigException, OSError, TypeError):
        return "default"


def requester() -> str:
    """Who is asking, as the cluster will know them: the kubeconfig context's user, or
    the pod's service account (the ``sub`` of its token) when running in a cluster;
    ``unknown`` otherwise."""
    token = "/var/run/secrets/kubernetes.io/serviceaccount/token"
    if os.path.exists(token):
        try:
            with open(token) as f:
                payload = f.read().strip().split(".")[1]
            claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
            return str(claims.get("sub") or "unknown")
        except (OSError, IndexError, ValueError):
            return "unknown"
    try:
        _, active = config.list_kube_config_contexts(config_file=os.environ.get("KUBECONFIG"))
        return str(active.get("context", {}).get("user") or "unknown")
    except (config.ConfigException, OSError, TypeError):
        return "unknown"
