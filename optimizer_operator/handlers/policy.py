"""OptimizationPolicy handler: a timer per policy that runs one cycle of its control loop."""

from __future__ import annotations

import os
from typing import Any

import kopf

from ..act.policy import run_cycle
from ..api import GROUP, OPTIMIZATION_POLICY, VERSION
from . import clients
from .status import apply_outcome, body_dict

TICK_SECONDS = float(os.environ.get("LLMOPT_POLICY_TICK", "15"))


@kopf.timer(GROUP, VERSION, OPTIMIZATION_POLICY.plural, interval=TICK_SECONDS, initial_delay=0)
def cycle(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
    """Settle trials, check triggers and gates, propose the next trial; status says why."""
    outcome = run_cycle(body_dict(body), custom=clients.custom(), source=clients.metric_source())
    outcome.retry_after = None  # the timer is the retry
    apply_outcome(outcome, body, patch)
