"""The one place the CLI reaches the cluster: credentials, the namespace, timeouts."""

from __future__ import annotations

import os

from kubernetes import client, config

# (connect, read) seconds for one API request: a hung API server gives a clear error.
TIMEOUT = (5, 20)


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
