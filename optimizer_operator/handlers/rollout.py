"""Rollout handlers (validation and status; step execution comes with its issue)."""

from __future__ import annotations

from typing import Any

import kopf

from ..act.targets import accept_targeting
from ..api import GROUP, ROLLOUT, VERSION, RolloutSpec
from . import clients
from .status import apply_outcome, body_dict


@kopf.on.resume(GROUP, VERSION, ROLLOUT.plural)
@kopf.on.create(GROUP, VERSION, ROLLOUT.plural)
@kopf.on.update(GROUP, VERSION, ROLLOUT.plural)
def reconcile(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
    """Validate the rollout and its target; it stays Pending until steps are executed."""
    outcome = accept_targeting(
        body_dict(body),
        RolloutSpec,
        custom=clients.custom(),
        ready_reason="Accepted",
        ready_message="rollout is valid and its LLMConfig exists; step execution is not "
        "implemented in this version, so traffic is unchanged",
        extra_status={"phase": "Pending", "currentStepIndex": 0, "canaryWeight": 0},
    )
    apply_outcome(outcome, body, patch)
