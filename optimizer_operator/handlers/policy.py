"""OptimizationPolicy handlers (validation and status; the loop comes with its issue)."""

from __future__ import annotations

from typing import Any

import kopf

from ..act.targets import accept_targeting
from ..api import GROUP, OPTIMIZATION_POLICY, VERSION, OptimizationPolicySpec
from . import clients
from .status import apply_outcome, body_dict


@kopf.on.resume(GROUP, VERSION, OPTIMIZATION_POLICY.plural)
@kopf.on.create(GROUP, VERSION, OPTIMIZATION_POLICY.plural)
@kopf.on.update(GROUP, VERSION, OPTIMIZATION_POLICY.plural)
def reconcile(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
    """Validate the policy and its target; report the loop as Idle."""
    outcome = accept_targeting(
        body_dict(body),
        OptimizationPolicySpec,
        custom=clients.custom(),
        ready_reason="Accepted",
        ready_message="policy is valid and its LLMConfig exists; the optimization loop is "
        "not implemented in this version, so no trials run",
        extra_status={"state": "Idle"},
    )
    apply_outcome(outcome, body, patch)
