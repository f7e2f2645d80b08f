"""The bake's revert: the version a promoted candidate replaced becomes stable again,
recorded as a new version (``rollout/<name>:revert``), rendered, and the candidate
quarantined — written only while the candidate is still the stable version, so a
person's change made meanwhile is never overwritten."""

from __future__ import annotations

from kubernetes import client

from ..act.llmconfigs import quarantine
from ..api.llmconfig import LLMConfigObject
from ..api.rollout import RolloutSpec, RolloutStatus
from ..decide.actions import Revert
from .new_stable import make_stable


def revert(
    action: Revert,
    rollout: str,
    spec: RolloutSpec,
    status: RolloutStatus,
    llmc: LLMConfigObject,
    *,
    core: client.CoreV1Api,
    apps: client.AppsV1Api,
    custom: client.CustomObjectsApi,
    now: str,
) -> list[tuple[str, str, str]]:
    """Carry out ``action``; the Events it makes. Raises StableMoved when the stable
    version is no longer the candidate."""
    previous = next(
        (v for v in reversed(llmc.status.history) if v.hash == status.stable_hash), None
    )
    if previous is None:
        return [
            (
                "Warning",
                "RevertImpossible",
                f"the version this rollout replaced ({status.stable_variant}) is no longer "
                "in status.history; nothing reverted — llm-optimizer undo picks another",
            )
        ]
    restored, annotated = make_stable(
        previous.model_config_part(),
        llmc,
        over_hash=spec.candidate.config_hash(),
        rollout=rollout,
        source=f"rollout/{rollout}:revert",
        now=now,
        core=core,
        apps=apps,
        custom=custom,
    )
    quarantine(
        custom, llmc, spec.candidate, rollout, action.reason, now, counted=spec.trial is None
    )
    reverted = (
        "Warning",
        "Reverted",
        f"v{restored.version} ({restored.model}) is stable again, the configuration "
        f"of {status.stable_variant}: {action.reason}",
    )
    return [reverted, *annotated]
