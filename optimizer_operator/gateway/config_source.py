"""Where the gateway gets its VariantSet: a mounted ConfigMap file or an API watch.

A new document that fails validation is refused and the last good one kept
(counted and logged); until a first good one arrives the gateway is not ready.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..api.variants import VariantSet
from .routing import RoutingTable

log = logging.getLogger("llmopt.gateway.config")


def parse_document(text: str) -> VariantSet:
    """A VariantSet from the ConfigMap's JSON text; ValueError says what is wrong."""
    try:
        return VariantSet.model_validate(json.loads(text))
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "document"
        raise ValueError(f"{where}: {first['msg']}") from None


class ConfigHolder:
    """The current routing table plus reload bookkeeping."""

    def __init__(
        self,
        on_change: Callable[[RoutingTable], None] | None = None,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self.table: RoutingTable | None = None
        self.last_error: str | None = None
        self.reloads_ok = 0
        self.reloads_failed = 0
        self._on_change = on_change
        self._on_error = on_error
        self._last_text: str | None = None

    def offer(self, text: str, source: str) -> bool:
        """Try a new document; True if it became the live table."""
        if text == self._last_text:
            return False
        try:
            variant_set = parse_document(text)
            table = RoutingTable.build(variant_set)  # a router's artifact is checked here
        except ValueError as exc:
            self.last_error = f"{source}: {exc}"
            self.reloads_failed += 1
            self._last_text = text
            if self._on_error is not None:
                self._on_error(self.last_error)
            log.warning(
                "refusing new variant config from %s (keeping the last good one): %s", source, exc
            )
            return False
        self.table = table
        self.last_error = None
        self.reloads_ok += 1
        self._last_text = text
        log.info(
            "variant config loaded from %s: %s",
            source,
            ", ".join(f"{v.id}={v.weight}" for v in variant_set.variants),
        )
        if self._on_change is not None:
            self._on_change(self.table)
        return True


async def watch_file(holder: ConfigHolder, path: Path, interval: float = 1.0) -> None:
    """Poll the mounted file; Kubernetes swaps ConfigMap volumes by symlink, so stat the
    resolved path and compare content, not only mtimes."""
    last_sig: tuple[int, int, int] | None = None
    while True:
        try:
            st = os.stat(path)
            sig = (st.st_ino, st.st_mtime_ns, st.st_size)
            if sig != last_sig:
                last_sig = sig
                holder.offer(path.read_text(), str(path))
        except FileNotFoundError:
            if holder.table is None:
                holder.last_error = f"{path}: not found"
        except OSError as exc:
            holder.last_error = f"{path}: {exc}"
        await asyncio.sleep(interval)


def watch_configmap(
    holder: ConfigHolder,
    loop: asyncio.AbstractEventLoop,
    namespace: str,
    name: str,
    key: str,
    stop: threading.Event,
) -> threading.Thread:
    """Watch one ConfigMap through the Kubernetes API in a thread; offers go to the loop."""
    from kubernetes import client, config, watch

    try:
        config.load_incluster_config()
    except config.ConfigException:
        # The client reads $KUBECONFIG at import time; read it now instead.
        config.load_kube_config(config_file=os.environ.get("KUBECONFIG"))
    core = client.CoreV1Api()

    def offer(obj: Any) -> None:
        data = (obj.data or {}) if obj is not None else {}
        if key in data:
            loop.call_soon_threadsafe(holder.offer, data[key], f"configmap {namespace}/{name}")

    def run() -> None:
        backoff = 1.0
        while not stop.is_set():
            try:
                current = core.read_namespaced_config_map(name, namespace, _request_timeout=10)
                offer(current)
                w = watch.Watch()
                for event in w.stream(
                    core.list_namespaced_config_map,
                    namespace,
                    field_selector=f"metadata.name={name}",
                    resource_version=current.metadata.resource_version,
                    timeout_seconds=60,
                    _request_timeout=90,
                ):
                    if stop.is_set():
                        w.stop()
                        break
                    if event["type"] in ("ADDED", "MODIFIED"):
                        offer(event["object"])
                backoff = 1.0
            except Exception as exc:
                log.warning("configmap watch failed (%s); retrying in %.0fs", exc, backoff)
                stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)

    thread = threading.Thread(target=run, name="configmap-watch", daemon=True)
    thread.start()
    return thread
