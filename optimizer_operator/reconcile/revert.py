"""The bake's revert: the version a promoted candidate replaced becomes stable again,
recorded as a new version (``rollout/<name>:revert``), rendered, and the candidate
quarantined — written only while the candidate is still the stable version, so a
person's change made meanwhile is never overwritten."""

from __future__ import annotations

from typing import Any

from kubernetes import client

from ..act.deployment import DeploymentMissing, annotate_config_hash
from ..act.llmconfigs import quarantine, write_on_stable
from ..act.variants import render
from ..api.llmconfig import LLMConfigObject, VersionRecord
from ..api.rollout import RolloutSpec, RolloutStatus
from ..decide.actions import Revert
from ..store.history import record_version


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
    written: dict[str, Any] = {}

    def back(current: LLMConfigObject) -> dict[str, Any]:
        history, version, _ = record_version(
            [v.to_wire() for v in current.status.history],
            previous.model_config_part(),
            source=f"rollout/{rollout}:revert",
            now=now,
            limit=current.spec.history_limit,
        )
        written["history"] = history
        return {"history": history, "currentVersion": version, "currentHash": previous.hash}

    write_on_stable(custom, llmc, spec.candidate.config_hash(), back)
    llmc.status.history = [VersionRecord.model_validate(v) for v in written["history"]]
    restored = llmc.status.history[-1]
    render(core, llmc, restored, None)
    quarantine(
        custom, llmc, spec.candidate, rollout, action.reason, now, counted=spec.trial is None
    )
    events = [
        (
            "Warning",
            "Reverted",
            f"v{restored.version} ({restored.model}) is stable again, the configuration "
            f"of {status.stable_variant}: {action.reason}",
        )
    ]
    deployment = llmc.spec.target.deployment
    if deployment is not None:
        try:
            annotate_config_hash(apps, llmc.namespace, deployment.name, restored.hash)
        except DeploymentMissing as exc:
            events.append(("Warning", "DeploymentNotFound", str(exc)))
    return events
