"""LLMConfig handlers."""

from __future__ import annotations

import os
from typing import Any

import kopf

from ..api import GROUP, LLMCONFIG, VERSION
from ..reconcile.llmconfig import claim_is_live, reconcile_llmconfig
from . import audit, clients, telemetry
from .status import apply_outcome, body_dict


@kopf.on.resume(GROUP, VERSION, LLMCONFIG.plural)
@kopf.on.create(GROUP, VERSION, LLMCONFIG.plural)
@kopf.on.update(GROUP, VERSION, LLMCONFIG.plural)
@telemetry.timed("LLMConfig")
@clients.retry_soon
def reconcile(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
    """Render the ConfigMap and record the version for any state of the spec."""
    _reconcile(body, patch)


def _reconcile(body: kopf.Body, patch: kopf.Patch) -> None:
    outcome = reconcile_llmconfig(
        body_dict(body), core=clients.core(), apps=clients.apps(), custom=clients.custom()
    )
    audit.record("LLMConfig", body_dict(body), outcome)
    apply_outcome(outcome, body, patch)


DRIFT_SECONDS = float(os.environ.get("LLMOPT_DRIFT_CHECK", "30"))


@kopf.timer(GROUP, VERSION, LLMCONFIG.plural, interval=DRIFT_SECONDS, initial_delay=DRIFT_SECONDS)
@telemetry.timed("LLMConfig")
@clients.retry_soon
def repair(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
    """Drift repair: the same level-based reconcile, every DRIFT_SECONDS, so a rendered
    ConfigMap deleted or edited by hand comes back as it should be. While a Rollout is
    active the split is its own to keep (each of its ticks repairs it), so this waits —
    unless that Rollout was deleted or has ended, when the reconcile releases its claim."""
    if claim_is_live(clients.custom(), body_dict(body)):
        return
    _reconcile(body, patch)
