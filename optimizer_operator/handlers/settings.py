"""Operator startup settings, shared by every kopf handler."""

from __future__ import annotations

import logging
import os
import warnings
from typing import Any

import aiohttp
import kopf

from ..api import GROUP
from . import clients, memory
from .environment import connection_limit

FINALIZER = f"{GROUP}/finalizer"


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    """Progress and diff-base in annotations under our prefix; timeouts on every call."""
    clients.load_config()
    memory.start_trimming()
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.persistence.finalizer = FINALIZER
    # A watch that hangs is cut and restarted; a request that hangs fails and retries.
    settings.watching.server_timeout = int(os.environ.get("LLMOPT_WATCH_SERVER_TIMEOUT", "300"))
    settings.watching.client_timeout = settings.watching.server_timeout + 30
    settings.watching.connect_timeout = 10
    # A request cut in flight (a reset that leaves its connection half-open) waits this
    # long before kopf retries it; its status patch holds the object's next tick meanwhile,
    # so it is the same bound as the operator's own API calls (15 s to answer).
    settings.networking.request_timeout = 15
    settings.networking.connect_timeout = 5
    settings.execution.max_workers = int(os.environ.get("LLMOPT_MAX_WORKERS", "8"))
    settings.batching.error_delays = [1, 2, 5, 10, 30, 60]
    # Handler errors become Warning Events on the object, not only log lines.
    settings.posting.level = logging.WARNING
    # Namespaced mode: the chart grants nothing cluster-wide, so kopf must not scan CRDs
    # and namespaces (the resources are found through API discovery, open to all).
    settings.scanning.disabled = os.environ.get("LLMOPT_NO_SCANNING") == "1"
    peering = os.environ.get("LLMOPT_PEERING_NAME")
    if peering:
        settings.peering.name = peering
        settings.peering.priority = int(os.environ.get("LLMOPT_PEERING_PRIORITY", "0"))
        # Seconds after which a silent peer counts as gone and a standby takes over.
        settings.peering.lifetime = int(os.environ.get("LLMOPT_PEERING_LIFETIME", "60"))
        settings.peering.mandatory = True
    else:
        settings.peering.standalone = True


@kopf.on.login()
async def login(**kwargs: Any) -> kopf.AiohttpSession | None:
    """The kubeconfig or in-cluster credentials, as kopf reads them, through a session
    whose connection pool is bounded (``connection_limit``)."""
    info = kopf.login_via_client(**kwargs)
    if info is None:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        auth = info.as_aiohttp_basic_auth()
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=connection_limit(), ssl=info.as_ssl_context()),
        headers=info.as_http_headers(),
        auth=auth,
        proxy=info.proxy_url,
        trust_env=info.trust_env,
    )
    return kopf.AiohttpSession(
        server=info.server,
        default_namespace=info.default_namespace,
        expiration=info.expiration,
        priority=info.priority,
        aiohttp_session=session,
    )
