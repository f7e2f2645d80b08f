"""LLMConfig handlers."""

from __future__ import annotations

from typing import Any

import kopf

from ..act.llmconfig import reconcile_llmconfig
from ..api import GROUP, LLMCONFIG, VERSION
from . import clients
from .status import apply_outcome, body_dict


@kopf.on.resume(GROUP, VERSION, LLMCONFIG.plural)
@kopf.on.create(GROUP, VERSION, LLMCONFIG.plural)
@kopf.on.update(GROUP, VERSION, LLMCONFIG.plural)
def reconcile(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
    """Render the ConfigMap and record the version for any state of the spec."""
    outcome = reconcile_llmconfig(
        body_dict(body), core=clients.core(), apps=clients.apps(), custom=clients.custom()
    )
    apply_outcome(outcome, body, patch)
