"""The operator's own metrics and health: ``/metrics`` and ``/readyz`` on one port.

Metrics (Prometheus text format): cycles by result and their duration,
decisions by type (every Event a policy cycle posts), Rollouts finished by
outcome, rollbacks, and the time of each policy's last cycle.

``/readyz`` reports each dependency — the API server, Prometheus, PostgreSQL
when configured — and the freshness of each policy's control loop, as JSON.
It answers 503 only when the API server cannot be reached: without Prometheus
or PostgreSQL the operator is degraded but still correct (analysis holds, the
history waits), so it stays in service and says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import threading
import time
from collections.abc import Callable
from typing import Any, ParamSpec

import requests
from aiohttp import web
from kubernetes import client
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from . import clients

REGISTRY = CollectorRegistry()
CYCLES = Counter(
    "llmopt_operator_cycles_total",
    "Policy control-loop cycles, by result (ok, error).",
    ["result"],
    registry=REGISTRY,
)
CYCLE_SECONDS = Histogram(
    "llmopt_operator_cycle_duration_seconds",
    "Duration of one policy cycle.",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
POLICY_QUEUE_SECONDS = Histogram(
    "llmopt_operator_policy_queue_seconds",
    "Time a due policy cycle waited for one of the policy threads (LLMOPT_POLICY_WORKERS).",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    registry=REGISTRY,
)
RECONCILE_SECONDS = Histogram(
    "llmopt_operator_reconcile_duration_seconds",
    "Duration of one handler run (one reconcile), by kind; queueing before it not included.",
    ["kind"],
    buckets=(
        0.0025,
        0.005,
        0.01,
        0.025,
        0.05,
        0.075,
        0.1,
        0.15,
        0.2,
        0.3,
        0.5,
        0.75,
        1,
        1.5,
        2,
        3,
        5,
        10,
    ),
    registry=REGISTRY,
)
NOTIFICATIONS = Counter(
    "llmopt_operator_notifications_total",
    "Webhook notifications by outcome: sent, failed (after its tries), dropped (queue full).",
    ["outcome"],
    registry=REGISTRY,
)
DECISIONS = Counter(
    "llmopt_operator_decisions_total",
    "Decisions of the policy loop, by type (the reason of the Event each one posts).",
    ["type"],
    registry=REGISTRY,
)
ROLLOUTS = Counter(
    "llmopt_operator_rollouts_finished_total",
    "Rollouts that reached a final phase, by phase (Promoted, RolledBack, Aborted, Failed).",
    ["outcome"],
    registry=REGISTRY,
)
ROLLBACKS = Counter(
    "llmopt_operator_rollbacks_total",
    "Rollouts rolled back (on evidence or by a trigger).",
    registry=REGISTRY,
)
LAST_CYCLE = Gauge(
    "llmopt_operator_policy_last_cycle_timestamp_seconds",
    "Unix time of each policy's last finished cycle.",
    ["namespace", "policy"],
    registry=REGISTRY,
)

_last_cycle: dict[str, float] = {}
_lock = threading.Lock()
CHECK_TIMEOUT = 2.0


def record_cycle(
    namespace: str, name: str, seconds: float, ok: bool, events: list[tuple[str, str, str]]
) -> None:
    CYCLES.labels("ok" if ok else "error").inc()
    CYCLE_SECONDS.observe(seconds)
    for _, reason, _ in events:
        DECISIONS.labels(reason).inc()
    now = time.time()
    LAST_CYCLE.labels(namespace, name).set(now)
    with _lock:
        _last_cycle[f"{namespace}/{name}"] = now


def forget_policy(namespace: str, name: str) -> None:
    with _lock:
        _last_cycle.pop(f"{namespace}/{name}", None)
    with contextlib.suppress(KeyError):
        LAST_CYCLE.remove(namespace, name)


def record_rollout_end(phase: str) -> None:
    ROLLOUTS.labels(phase).inc()
    if phase == "RolledBack":
        ROLLBACKS.inc()


def _check_api() -> str:
    try:
        client.VersionApi(clients.api_client()).get_code(_request_timeout=CHECK_TIMEOUT)
    except Exception as exc:
        return f"unreachable: {type(exc).__name__}"
    return "ok"


def _check_prometheus() -> str:
    url = os.environ.get("LLMOPT_PROMETHEUS_URL")
    if not url:
        return "not configured (analysis steps hold)"
    try:
        r = requests.get(url.rstrip("/") + "/-/ready", timeout=CHECK_TIMEOUT)
    except requests.RequestException as exc:
        return f"unreachable: {type(exc).__name__}"
    return "ok" if r.status_code == 200 else f"not ready: HTTP {r.status_code}"


def _check_postgres() -> str | None:
    url = os.environ.get("LLMOPT_DATABASE_URL")
    if not url:
        return None
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=int(CHECK_TIMEOUT)) as conn:
            conn.execute("select 1")
    except psycopg.Error as exc:
        return f"unreachable: {type(exc).__name__}"
    return "ok"


def health(policy_tick: float) -> tuple[int, dict[str, Any]]:
    """HTTP status and the JSON body of /readyz."""
    deps: dict[str, str] = {"apiServer": _check_api(), "prometheus": _check_prometheus()}
    pg = _check_postgres()
    if pg is not None:
        deps["postgres"] = pg
    now = time.time()
    with _lock:
        last = dict(_last_cycle)
    stale_after = 3 * policy_tick + 10
    loops = {
        key: {"secondsSinceCycle": round(now - t, 1), "fresh": now - t <= stale_after}
        for key, t in sorted(last.items())
    }
    degraded = any(v != "ok" for v in deps.values()) or not all(v["fresh"] for v in loops.values())
    body = {
        "status": "unavailable"
        if deps["apiServer"] != "ok"
        else ("degraded" if degraded else "ok"),
        "dependencies": deps,
        "policyLoops": loops,
        "staleAfterSeconds": stale_after,
    }
    return (503 if deps["apiServer"] != "ok" else 200), body


async def serve(port: int, host: str = "0.0.0.0", policy_tick: float = 15.0) -> web.AppRunner:
    """Start the metrics and health server; the caller keeps the runner."""

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def readyz(_: web.Request) -> web.Response:
        status, body = await asyncio.to_thread(health, policy_tick)
        return web.json_response(body, status=status)

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/readyz", readyz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


P = ParamSpec("P")


def timed(kind: str) -> Callable[[Callable[P, None]], Callable[P, None]]:
    """Count a handler's wall time in ``llmopt_operator_reconcile_duration_seconds``."""

    def wrap(fn: Callable[P, None]) -> Callable[P, None]:
        @functools.wraps(fn)
        def run(*args: P.args, **kwargs: P.kwargs) -> None:
            started = time.monotonic()
            try:
                fn(*args, **kwargs)
            finally:
                RECONCILE_SECONDS.labels(kind).observe(time.monotonic() - started)

        return run

    return wrap
