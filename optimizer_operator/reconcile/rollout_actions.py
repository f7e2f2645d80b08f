"""A Rollout tick's actions carried out: the split written, the canary Deployment
scaled or removed, stable restored (and the candidate quarantined), the winner promoted
(only over the stable it was judged against), the bake's revert. Each returns the Events
it makes."""

from __future__ import annotations

from typing import Any

from kubernetes import client

from ..act.deployment import DeploymentMissing
from ..act.httproute import Route, set_split
from ..act.llmconfigs import quarantine, release
from ..act.replicas import (
    ensure_canary,
    remove_canary,
    remove_candidate_configmap,
    write_candidate_configmap,
)
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
    route: Route | None = None,
) -> list[tuple[str, str, str]]:
    if spec.gateway_api is not None:
        return _on_route(
            action, body, spec, status, llmc, core=core, apps=apps, custom=custom, now=now,
            route=route,
        )  # fmt: skip
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
        _stable_again(action, rollout, spec, llmc, core, custom, now)
        return [*events, ("Normal", "StableRestored", f"all traffic back on v{stable.version}")]
    assert isinstance(action, Promote)
    return [*events, *_promote(action, rollout, spec, status, llmc, core, apps, custom, now)]


def _stable_again(
    action: RestoreStable,
    rollout: str,
    spec: RolloutSpec,
    llmc: LLMConfigObject,
    core: client.CoreV1Api,
    custom: client.CustomObjectsApi,
    now: str,
) -> None:
    """Stable alone in the ConfigMap, the claim released, the candidate quarantined when
    the action says so: what every routing does on a restore."""
    stable = llmc.stable
    assert stable is not None
    render(core, llmc, stable, None)
    release(custom, llmc, rollout)
    if action.quarantine:
        quarantine(
            custom, llmc, spec.candidate, rollout, action.reason, now,
            counted=spec.trial is None,
        )  # fmt: skip


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


def _on_route(
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
    route: Route | None,
) -> list[tuple[str, str, str]]:
    """trafficRouting gatewayAPI: the same actions, the split written into the HTTPRoute.
    With ``afterPromotion: stableBackend`` the canary backend's pods read the candidate
    from ``<configmap>-canary`` while the rollout runs."""
    routing = spec.gateway_api
    assert routing is not None
    rollout = body["metadata"]["name"]
    ns = llmc.namespace
    stable = llmc.stable
    assert stable is not None
    back_to_stable = routing.after_promotion == "stableBackend"
    route_name = routing.http_route
    if isinstance(action, SetWeight):
        if back_to_stable:
            write_candidate_configmap(core, body, llmc, spec.candidate)
        set_split(custom, ns, routing, action.weight, route)
        return []
    events: list[tuple[str, str, str]] = []
    if isinstance(action, Revert):
        # The promoted version served from the canary backend: the previous one is on
        # the stable backend still, so the route goes back to it.
        if not back_to_stable:
            set_split(custom, ns, routing, 0)
            events.append(("Normal", "HTTPRouteRestored", f"HTTPRoute {route_name}: "
                           f"all traffic back on {routing.stable_backend.describe()}"))  # fmt: skip
        return [*events, *revert(
            action, rollout, spec, status, llmc, core=core, apps=apps, custom=custom, now=now
        )]  # fmt: skip
    if isinstance(action, RestoreStable):
        set_split(custom, ns, routing, 0, route)
        if back_to_stable:
            remove_candidate_configmap(core, llmc)
        _stable_again(action, rollout, spec, llmc, core, custom, now)
        return [("Normal", "StableRestored", f"HTTPRoute {route_name}: all traffic back on "
                 f"{routing.stable_backend.describe()} (v{stable.version})")]  # fmt: skip
    assert isinstance(action, Promote)
    events = _promote(action, rollout, spec, status, llmc, core, apps, custom, now)
    serving = routing.stable_backend if back_to_stable else routing.canary_backend
    set_split(custom, ns, routing, 0 if back_to_stable else 100)
    if back_to_stable:
        remove_candidate_configmap(core, llmc)
    return [*events, ("Normal", "HTTPRouteSwitched",
                      f"HTTPRoute {route_name}: all traffic on {serving.describe()}")]  # fmt: skip
