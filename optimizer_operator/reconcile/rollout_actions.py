"""A Rollout tick's actions carried out: the split written, the canary Deployment
scaled or removed, stable restored (and the candidate quarantined), the winner promoted
(only over the stable it was judged against), the bake's revert. Each returns the Events
it makes."""

from __future__ import annotations

from typing import Any

from kubernetes import client

from ..act.deployment import DeploymentMissing
from ..act.llmconfigs import quarantine, release
from ..act.replicas import ensure_canary, remove_canary
from ..act.variants import Canary, bandit_canary, render
from ..api.llmconfig import LLMConfigObject
from ..api.rollout import Bandit, RolloutSpec, RolloutStatus
from ..decide.actions import Promote, RestoreStable, Revert, SetArms, SetWeight
from .new_stable import annotate, make_stable
from .revert import revert


def carry_out(
    action: Any,
    body: dict[str, Any],
    spec: RolloutSpec,
    status: RolloutStatus,
    llmc: LLMConfigObject,
    *,
    core: client.CoreV1Api,
    apps: client.AppsV1Api,
    custom: client.CustomObjectsApi,
    now: str,
) -> list[tuple[str, str, str]]:
    rollout = body["metadata"]["name"]
    stable = llmc.stable
    assert stable is not None
    replicas_mode = spec.traffic_routing == "replicas"
    if isinstance(action, SetArms):
        weights = dict(action.weights)
        arms = (spec.bandit or Bandit()).arms
        render(core, llmc, stable, bandit_canary(rollout, spec.candidate, arms, weights))
        return []
    if isinstance(action, SetWeight):
        if replicas_mode:
            try:
                status.canary_replicas = ensure_canary(
                    core=core,
                    apps=apps,
                    rollout=body,
                    llmconfig=llmc,
                    candidate=spec.candidate,
                    weight=action.weight,
                )
            except DeploymentMissing as exc:
                return [("Warning", "DeploymentNotFound", str(exc))]
            return []
        live = action.weight > 0 or action.mirror > 0
        render(
            core,
            llmc,
            stable,
            Canary(rollout, spec.candidate, action.weight, action.mirror) if live else None,
        )
        return []
    events: list[tuple[str, str, str]] = []
    if replicas_mode and remove_canary(core, apps, llmc):
        status.canary_replicas = 0
        events.append(("Normal", "CanaryRemoved", "canary Deployment and ConfigMap deleted"))
    if isinstance(action, Revert):
        return [*events, *revert(
            action, rollout, spec, status, llmc, core=core, apps=apps, custom=custom, now=now
        )]  # fmt: skip
    if isinstance(action, RestoreStable):
        render(core, llmc, stable, None)
        release(custom, llmc, rollout)
        if action.quarantine:
            quarantine(
                custom, llmc, spec.candidate, rollout, action.reason, now,
                counted=spec.trial is None,
            )  # fmt: skip
        return [*events, ("Normal", "StableRestored", f"all traffic back on v{stable.version}")]
    assert isinstance(action, Promote)
    return [*events, *_promote(action, rollout, spec, status, llmc, core, apps, custom, now)]


def _promote(
    action: Promote,
    rollout: str,
    spec: RolloutSpec,
    status: RolloutStatus,
    llmc: LLMConfigObject,
    core: client.CoreV1Api,
    apps: client.AppsV1Api,
    custom: client.CustomObjectsApi,
    now: str,
) -> list[tuple[str, str, str]]:
    """The winner becomes the newest version (once), rendered; its Events."""
    stable = llmc.stable
    assert stable is not None
    winner = action.config or spec.candidate
    if stable.source == f"rollout/{rollout}" and stable.hash == winner.config_hash():
        # Already recorded by an interrupted tick: once only.
        release(custom, llmc, rollout)
        render(core, llmc, stable, None)
        promoted, events = stable, annotate(llmc, stable, apps)
    else:
        promoted, events = make_stable(
            winner,
            llmc,
            over_hash=status.stable_hash or stable.hash,
            rollout=rollout,
            source=f"rollout/{rollout}",
            now=now,
            core=core,
            apps=apps,
            custom=custom,
        )
    return [("Normal", "Promoted", f"{winner.model} is v{promoted.version} of {llmc.name}"),
            *events]  # fmt: skip
