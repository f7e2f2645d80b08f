"""Kubernetes API clients for handlers, configured once at startup."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from functools import lru_cache
from typing import TYPE_CHECKING, ParamSpec

import kopf
import urllib3
from kubernetes import client, config

from ..observe.prometheus import PrometheusSource
from ..observe.prometheus_access import PrometheusAccess

if TYPE_CHECKING:
    from ..store.postgres import HistoryStore


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
    from .environment import prometheus_cooldown, prometheus_timeout

    if not url:
        return None
    return PrometheusSource(
        url,
        timeout=prometheus_timeout(),
        cooldown=prometheus_cooldown(),
        access=PrometheusAccess.from_env(),
    )


# Seconds before a handler that met a transient API failure runs again (kopf's own
# default is 60 s, far too long for a rollout waiting on its next step).
RETRY_SECONDS = float(os.environ.get("LLMOPT_API_RETRY", "2"))
_TRANSIENT_STATUS = {409, 429, 500, 502, 503, 504}


def transient(exc: BaseException) -> bool:
    """A failure of the API server's connection or a status worth retrying soon: reset
    connections, timeouts, 429/5xx, and 409 conflicts (retried on fresh state)."""
    if isinstance(exc, client.ApiException):
        return exc.status in _TRANSIENT_STATUS or not exc.status
    return isinstance(exc, urllib3.exceptions.HTTPError | ConnectionError | TimeoutError)


P = ParamSpec("P")


def retry_soon(fn: Callable[P, None]) -> Callable[P, None]:
    """Run a handler; a transient API failure becomes one log line and a retry after
    RETRY_SECONDS (level-based handlers: the retry recomputes from fresh state)."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            fn(*args, **kwargs)
        except Exception as exc:
            if not transient(exc):
                raise
            what = (
                f"HTTP {exc.status} {exc.reason}"
                if isinstance(exc, client.ApiException)
                else repr(exc)
            )
            raise kopf.TemporaryError(
                f"Kubernetes API unavailable ({what[:200]}); retrying", delay=RETRY_SECONDS
            ) from exc

    return wrapper


@lru_cache(maxsize=1)
def history_store() -> HistoryStore | None:
    """PostgreSQL history when LLMOPT_DATABASE_URL is set (else status only): one per
    process, shared by the policy loop and the audit of every handler."""
    url = os.environ.get("LLMOPT_DATABASE_URL")
    if not url:
        return None
    from ..store.postgres import HistoryStore  # psycopg only with a database configured

    retention = float(os.environ.get("LLMOPT_DATABASE_RETENTION_DAYS", "90"))
    from .environment import database_pool_size

    return HistoryStore(url, retention_days=retention, pool_size=database_pool_size())
