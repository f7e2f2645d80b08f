"""Notifications of a Rollout's promotion, rollback, hold and revert to webhooks: a
generic JSON payload or a Slack-compatible one (``{"text": ...}``, which Slack, Mattermost
and Teams' incoming-webhook connectors accept).

Receivers come from ``LLMOPT_NOTIFY_WEBHOOKS`` (the chart's ``notifications.webhooks``),
a JSON list of objects:

- ``url`` or ``urlFile`` (a mounted Secret holding the URL: Slack's carries its token);
- ``format``: ``json`` (default) or ``slack``;
- ``events``: any of ``Promoted``, ``RolledBack``, ``Reverted``, ``Holding`` (default all);
- ``namespaces``: only Rollouts in these namespaces (default all);
- ``headers``: extra request headers; ``timeout`` seconds per try (default 5).

A namespace may add its own: the ``webhooks`` key of its ConfigMap
``llm-optimizer-notifications``, the same list with ``url`` only (``NamespaceWebhooks``).

Delivery never blocks the loop: events go to a bounded queue per receiver, each drained
by a thread of its own, each POST with its timeout and up to three tries (connection
errors, 429 and 5xx, with backoff); a receiver that hangs or fails costs its own queue
time, neither a tick's nor another receiver's. Each
event is sent once per process (a key per Rollout and transition); a full queue drops
the event and counts it.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

log = logging.getLogger("llmopt.notify")
EVENTS = ("Promoted", "RolledBack", "Reverted", "Holding")
ENV = "LLMOPT_NOTIFY_WEBHOOKS"
TRIES = 3
_EMOJI = {"Promoted": ":white_check_mark:", "RolledBack": ":rewind:",
          "Reverted": ":leftwards_arrow_with_hook:", "Holding": ":pause_button:"}  # fmt: skip
_VERB = {"Promoted": "promoted", "RolledBack": "rolled back",
         "Reverted": "reverted after promotion", "Holding": "holding"}  # fmt: skip


@dataclass(frozen=True)
class Webhook:
    """One receiver."""

    url: str | None = None
    url_file: str | None = None
    format: str = "json"
    events: tuple[str, ...] = EVENTS
    namespaces: tuple[str, ...] = ()
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout: float = 5.0

    def target(self) -> str:
        """The URL, read from its file at each send when it comes from a Secret."""
        if self.url_file:
            return Path(self.url_file).read_text().strip()
        assert self.url is not None
        return self.url

    @property
    def identity(self) -> tuple[Any, ...]:
        """Receivers alike share one queue and thread."""
        return (self.url, self.url_file, self.format, self.timeout,
                tuple(sorted(self.headers.items())))  # fmt: skip

    def wants(self, event: str, namespace: str) -> bool:
        return event in self.events and (not self.namespaces or namespace in self.namespaces)


def parse_webhooks(raw: str | None, source: str = ENV, files: bool = True) -> list[Webhook]:
    """The receivers in ``raw`` (JSON: LLMOPT_NOTIFY_WEBHOOKS, or a namespace's
    ConfigMap, ``source`` naming it); ValueError naming the bad entry. ``files``: whether
    ``urlFile`` may be used (not from a namespace: the operator reads no Secrets)."""
    if not raw or not raw.strip():
        return []
    try:
        items = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{source}: not JSON ({exc.msg})") from None
    if not isinstance(items, list):
        raise ValueError(f"{source}: expected a list of webhooks")
    hooks = [_webhook(item, f"{source}[{i}]") for i, item in enumerate(items)]
    if not files and any(h.url_file for h in hooks):
        raise ValueError(f"{source}: urlFile is for the operator's own settings; give url")
    return hooks


def _webhook(item: Any, where: str) -> Webhook:
    """One receiver's entry, checked."""
    if not isinstance(item, dict):
        raise ValueError(f"{where}: expected an object")
    unknown = set(item) - {"url", "urlFile", "format", "events", "namespaces", "headers",
                           "timeout"}  # fmt: skip
    if unknown:
        raise ValueError(f"{where}: unknown keys {', '.join(sorted(unknown))}")
    url, url_file = item.get("url"), item.get("urlFile")
    if bool(url) == bool(url_file):
        raise ValueError(f"{where}: give exactly one of url and urlFile")
    if url and not str(url).startswith(("http://", "https://")):
        raise ValueError(f"{where}.url: expected an http(s) URL")
    if url_file and not Path(str(url_file)).is_file():
        raise ValueError(f"{where}.urlFile: no file at {url_file}")
    fmt = item.get("format", "json")
    if fmt not in ("json", "slack"):
        raise ValueError(f"{where}.format: json or slack, got {fmt!r}")
    events = tuple(item.get("events") or EVENTS)
    bad = [e for e in events if e not in EVENTS]
    if bad:
        raise ValueError(f"{where}.events: {', '.join(bad)} not among {', '.join(EVENTS)}")
    timeout = item.get("timeout", 5)
    if not isinstance(timeout, int | float) or not 0 < timeout <= 60:
        raise ValueError(f"{where}.timeout: seconds in (0, 60], got {timeout!r}")
    headers = item.get("headers") or {}
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        raise ValueError(f"{where}.headers: expected an object of strings")
    return Webhook(
        url=str(url) if url else None,
        url_file=str(url_file) if url_file else None,
        format=fmt,
        events=events,
        namespaces=tuple(item.get("namespaces") or ()),
        headers=headers,
        timeout=float(timeout),
    )


@dataclass(frozen=True)
class Notice:
    """What happened to one Rollout."""

    event: str
    namespace: str
    name: str
    llm_config: str
    message: str
    candidate: Mapping[str, Any]
    at: str

    def json_payload(self) -> dict[str, Any]:
        return {
            "source": "llm-optimizer",
            "kind": "Rollout",
            "event": self.event,
            "namespace": self.namespace,
            "name": self.name,
            "llmConfig": self.llm_config,
            "message": self.message,
            "candidate": dict(self.candidate),
            "at": self.at,
        }

    def slack_payload(self) -> dict[str, Any]:
        model = "/".join(str(self.candidate.get(k, "")) for k in ("provider", "model"))
        verb = _VERB[self.event]
        text = (
            f"{_EMOJI[self.event]} Rollout {self.namespace}/{self.name} ({self.llm_config} → "
            f"{model}) {verb}: {self.message}"
        )
        return {"text": text}


Sender = Callable[[str, dict[str, Any], Mapping[str, str], float], int]


def _post(url: str, payload: dict[str, Any], headers: Mapping[str, str], timeout: float) -> int:
    resp = requests.post(url, json=payload, headers=dict(headers), timeout=timeout)
    return resp.status_code


class Notifier:
    """A queue per receiver and the thread that delivers it (a receiver that hangs
    delays only its own notices)."""

    def __init__(
        self,
        webhooks: list[Webhook],
        *,
        send: Sender = _post,
        capacity: int = 1000,
        backoff: float = 1.0,
        counted: Callable[[str], None] = lambda outcome: None,
    ) -> None:
        self.webhooks, self._send, self._backoff, self._counted = webhooks, send, backoff, counted
        self._capacity = capacity
        self._queues: dict[tuple[Any, ...], queue.Queue[Notice]] = {}
        self._seen: OrderedDict[tuple[str, ...], None] = OrderedDict()
        self._lock = threading.Lock()

    def _queue_of(self, webhook: Webhook) -> queue.Queue[Notice]:
        with self._lock:
            q = self._queues.get(webhook.identity)
            if q is None:
                q = self._queues[webhook.identity] = queue.Queue(maxsize=self._capacity)
                threading.Thread(
                    target=self._run, args=(webhook, q), name=f"notify-{len(self._queues)}",
                    daemon=True,
                ).start()  # fmt: skip
            return q

    def notify(
        self, key: tuple[str, ...], notice: Notice, extra: Sequence[Webhook] = ()
    ) -> None:
        """Queue ``notice`` for every receiver that wants it (the configured ones and
        ``extra``, e.g. its namespace's), once per ``key``; never waits."""
        wanted = list({w.identity: w for w in [*self.webhooks, *extra]
                       if w.wants(notice.event, notice.namespace)}.values())  # fmt: skip
        if not wanted:
            return
        with self._lock:
            if key in self._seen:
                return
            self._seen[key] = None
            if len(self._seen) > 10_000:
                self._seen.popitem(last=False)
        for webhook in wanted:
            try:
                self._queue_of(webhook).put_nowait(notice)
            except queue.Full:
                self._counted("dropped")
                log.warning("notification queue full: %s %s dropped", notice.event, notice.name)

    def drain(self, timeout: float = 30.0) -> bool:
        """Wait until every queued notice was delivered or given up (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                busy = any(q.unfinished_tasks for q in self._queues.values())
            if not busy:
                return True
            time.sleep(0.05)
        return False

    def _run(self, webhook: Webhook, q: queue.Queue[Notice]) -> None:
        while True:
            notice = q.get()
            try:
                self._deliver(webhook, notice)
            finally:
                q.task_done()

    def _deliver(self, webhook: Webhook, notice: Notice) -> None:
        payload = notice.slack_payload() if webhook.format == "slack" else notice.json_payload()
        for attempt in range(1, TRIES + 1):
            try:
                status = self._send(webhook.target(), payload, webhook.headers, webhook.timeout)
            except (requests.RequestException, OSError) as exc:
                reason = str(exc)[:200]
            else:
                if 200 <= status < 300:
                    self._counted("sent")
                    return
                reason = f"HTTP {status}"
                if status < 500 and status != 429:
                    break  # the receiver refused it: another try would be refused too
            if attempt < TRIES:
                time.sleep(self._backoff * attempt)
        self._counted("failed")
        log.warning("notification %s of %s/%s not delivered: %s",
                    notice.event, notice.namespace, notice.name, reason)  # fmt: skip


def from_env(counted: Callable[[str], None] = lambda outcome: None) -> Notifier:
    """The notifier the environment configures (none configured: it sends nothing)."""
    return Notifier(parse_webhooks(os.environ.get(ENV)), counted=counted)


def rollout_notice(
    old: Mapping[str, Any], new: Mapping[str, Any], body: Mapping[str, Any], at: str
) -> tuple[tuple[str, ...], Notice] | None:
    """The notice (and its once-only key) for a Rollout whose status goes from ``old``
    to ``new``, if the change is one to tell: Promoted, RolledBack (Reverted when its
    bake found the regression after promotion), a new hold."""
    phase, before = new.get("phase"), old.get("phase")
    if phase == before or phase not in ("Promoted", "RolledBack", "Holding"):
        return None
    event = str(phase)
    conditions = new.get("conditions") or []
    if phase == "RolledBack" and any(c.get("reason") == "BakeFailed" for c in conditions):
        event = "Reverted"
    meta, spec = body.get("metadata") or {}, body.get("spec") or {}
    since = str(new.get("holdingSince") or "") if phase == "Holding" else ""
    key = (str(meta.get("uid", "")), event, str(new.get("observedRetry", 0)), since)
    candidate = spec.get("candidate") or {}
    return key, Notice(
        event=event,
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        llm_config=str((spec.get("targetRef") or {}).get("name", "")),
        message=str(new.get("message", "")),
        candidate={k: candidate[k] for k in ("provider", "model") if k in candidate},
        at=at,
    )


NAMESPACE_CONFIGMAP = "llm-optimizer-notifications"


class NamespaceWebhooks:
    """Each namespace's own receivers: the ``webhooks`` key of its ConfigMap
    ``llm-optimizer-notifications`` (the same JSON list, ``url`` only), read at most every
    ``ttl`` seconds. A missing ConfigMap is none; a bad one is logged and ignored (its
    receivers get nothing until it is fixed; the operator's own still do)."""

    def __init__(self, read: Callable[[str], str | None], ttl: float = 30.0) -> None:
        self._read, self._ttl = read, ttl
        self._cache: dict[str, tuple[float, list[Webhook]]] = {}
        self._lock = threading.Lock()

    def __call__(self, namespace: str) -> list[Webhook]:
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(namespace)
        if hit is not None and hit[0] > now:
            return hit[1]
        source = f"ConfigMap {namespace}/{NAMESPACE_CONFIGMAP} webhooks"
        try:
            hooks = parse_webhooks(self._read(namespace), source, files=False)
        except ValueError as exc:
            log.warning("%s", exc)
            hooks = []
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
            log.warning("notifications of %s: %s", namespace, exc)  # the last known ones
            return hit[1] if hit is not None else []
        with self._lock:
            self._cache[namespace] = (now + self._ttl, hooks)
        return hooks


def read_namespace_webhooks(core: client.CoreV1Api) -> Callable[[str], str | None]:
    """A reader of a namespace's ``webhooks`` key (None when there is no ConfigMap)."""

    def read(namespace: str) -> str | None:
        try:
            cm = core.read_namespaced_config_map(
                NAMESPACE_CONFIGMAP, namespace, _request_timeout=10
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return (cm.data or {}).get("webhooks")

    return read
