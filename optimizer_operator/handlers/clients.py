"""Kubernetes API clients for handlers, configured once at startup."""

from __future__ import annotations

import os
from functools import lru_cache

from kubernetes import client, config

from ..observe.prometheus import PrometheusSource


def load_config() -> None:
    """In-cluster credentials when running in a pod, else the kubeconfig."""
    try:
        config.load_incluster_config()
    except config.ConfigException:
        # The client reads $KUBECONFIG at import time; read it now instead.
        config.load_kube_config(config_file=os.environ.get("KUBECONFIG"))


@lru_cache(maxsize=1)
def api_client() -> client.ApiClient:
    return client.ApiClient()


def core() -> client.CoreV1Api:
    return client.CoreV1Api(api_client())


def apps() -> client.AppsV1Api:
    return client.AppsV1Api(api_client())


def custom() -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api_client())


@lru_cache(maxsize=1)
def metric_source() -> PrometheusSource | None:
    """One Prometheus client (and HTTP session) for all handlers, not one per tick."""
    url = os.environ.get("LLMOPT_PROMETHEUS_URL")
    timeout = float(os.environ.get("LLMOPT_PROMETHEUS_TIMEOUT", "10"))
    return PrometheusSource(url, timeout=timeout) if url else None
