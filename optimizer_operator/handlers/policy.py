"""OptimizationPolicy handler: a timer per policy that runs one cycle of its control loop."""

from __future__ import annotations

import asyncio
import contextvars
import os
import time
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Any

import kopf

from ..api import GROUP, OPTIMIZATION_POLICY, VERSION
from ..reconcile.policy import run_cycle
from ..reconcile.router_retrain import Training
from ..tracing import Tracer
from . import clients, telemetry
from .environment import policy_workers, recordings_dir, retrain_timeout
from .status import apply_outcome, body_dict

TICK_SECONDS = float(os.environ.get("LLMOPT_POLICY_TICK", "15"))


@lru_cache(maxsize=1)
def _training() -> Training:
    """Router retraining's settings (checked once at start by check_environment)."""
    return Training(recordings_dir(), retrain_timeout())


@lru_cache(maxsize=1)
def _workers() -> ThreadPoolExecutor:
    """Policy cycles (Prometheus, PostgreSQL, Optuna: the slow work) run in threads of
    their own, so they never take kopf's worker threads from Rollout ticks and LLMConfig
    renders, the handlers a person waits on."""
    return ThreadPoolExecutor(max_workers=policy_workers(), thread_name_prefix="policy-cycle")


@lru_cache(maxsize=1)
def _tracer() -> Tracer | None:
    """Spans for each loop phase when OTEL_EXPORTER_OTLP_ENDPOINT is set (else nothing)."""
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    return Tracer(endpoint, service_name="llm-optimizer-operator") if endpoint else None


@kopf.timer(
    GROUP,
    VERSION,
    OPTIMIZATION_POLICY.plural,
    interval=TICK_SECONDS,
    initial_delay=0,
    backoff=TICK_SECONDS,
)
async def cycle(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
    """Settle trials, check triggers and gates, propose the next trial; status says why.
    Runs in the policy threads; the time it waits for one is counted."""
    queued = time.monotonic()

    def run() -> None:
        telemetry.POLICY_QUEUE_SECONDS.observe(time.monotonic() - queued)
        _cycle(body, patch)

    # In kopf's context (its settings, its event queue): kopf.event from the thread needs
    # them, as it has them in kopf's own executor.
    context = contextvars.copy_context()
    await asyncio.get_running_loop().run_in_executor(_workers(), context.run, run)


@telemetry.timed("OptimizationPolicy")
@clients.retry_soon
def _cycle(body: kopf.Body, patch: kopf.Patch) -> None:
    meta = body["metadata"]
    started = time.monotonic()
    try:
        outcome = run_cycle(
            body_dict(body),
            custom=clients.custom(),
            source=clients.metric_source(),
            tracer=_tracer(),
            store=clients.history_store(),
            training=_training(),
        )
    except Exception:
        telemetry.record_cycle(
            meta["namespace"], meta["name"], time.monotonic() - started, False, []
        )
        raise
    telemetry.record_cycle(
        meta["namespace"], meta["name"], time.monotonic() - started, True, outcome.events
    )
    outcome.retry_after = None  # the timer is the retry
    apply_outcome(outcome, body, patch)


@kopf.on.delete(GROUP, VERSION, OPTIMIZATION_POLICY.plural, optional=True)
def forget(body: kopf.Body, **_: Any) -> None:
    """A deleted policy's loop is no longer expected to be fresh (no finalizer needed)."""
    telemetry.forget_policy(body["metadata"]["namespace"], body["metadata"]["name"])
