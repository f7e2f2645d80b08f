"""A Rollout's configuration made the stable version: recorded as the LLMConfig's
newest version (only over the stable it was judged against, so a person's newer change
is never overwritten), the Rollout's claim released, the config rendered for the
gateway and the app's Deployment annotated so its pods pick it up."""

from __future__ import annotations

from typing import Any

from kubernetes import client

from ..act.deployment import DeploymentMissing, annotate_config_hash
from ..act.llmconfigs import holds, write_on_stable
from ..act.variants import render
from ..api.llmconfig import LLMConfigObject, ModelConfig, VersionRecord
from ..store.history import record_version


def make_stable(
    config: ModelConfig,
    llmc: LLMConfigObject,
    *,
    over_hash: str,
    rollout: str,
    source: str,
    now: str,
    core: client.CoreV1Api,
    apps: client.AppsV1Api,
    custom: client.CustomObjectsApi,
) -> tuple[VersionRecord, list[tuple[str, str, str]]]:
    """Record ``config`` as stable while the stable version is ``over_hash`` (raises
    StableMoved otherwise), render it; returns the new version and the Events made.
    ``llmc``'s history is updated in place to what was written."""
    written: dict[str, Any] = {}

    def patch(current: LLMConfigObject) -> dict[str, Any]:
        history, version, _ = record_version(
            [v.to_wire() for v in current.status.history],
            config,
            source=source,
            now=now,
            limit=current.spec.history_limit,
        )
        written["history"] = history
        unclaim = {"activeRollout": None} if holds(current, rollout) else {}
        return {
            "history": history,
            "currentVersion": version,
            "currentHash": config.config_hash(),
            **unclaim,
        }

    write_on_stable(custom, llmc, over_hash, patch)
    llmc.status.history = [VersionRecord.model_validate(v) for v in written["history"]]
    stable = llmc.status.history[-1]
    render(core, llmc, stable, None)
    return stable, annotate(llmc, stable, apps)


def annotate(
    llmc: LLMConfigObject, stable: VersionRecord, apps: client.AppsV1Api
) -> list[tuple[str, str, str]]:
    """The target Deployment's pod template told the stable hash (a rolling restart
    when it changed); a Warning Event when the Deployment is missing."""
    deployment = llmc.spec.target.deployment
    if deployment is None:
        return []
    try:
        annotate_config_hash(apps, llmc.namespace, deployment.name, stable.hash)
    except DeploymentMissing as exc:
        return [("Warning", "DeploymentNotFound", str(exc))]
    return []
