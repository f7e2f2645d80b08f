"""Operator startup settings, shared by every kopf handler."""

from __future__ import annotations

import logging
import os
from typing import Any

import kopf

from ..api import GROUP
from . import clients

FINALIZER = f"{GROUP}/finalizer"


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    """Progress and diff-base in annotations under our prefix; timeouts on every call."""
    clients.load_config()
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.persistence.finalizer = FINALIZER
    # A watch that hangs is cut and restarted; a request that hangs fails and retries.
    settings.watching.server_timeout = int(os.environ.get("LLMOPT_WATCH_SERVER_TIMEOUT", "300"))
    settings.watching.client_timeout = settings.watching.server_timeout + 30
    settings.watching.connect_timeout = 10
    settings.networking.request_timeout = 30
    settings.networking.connect_timeout = 10
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
