"""Reconcile one LLMConfig: record spec changes as versions, render its ConfigMap, roll pods.

The stable version is the newest history entry: a spec change made by a person
becomes one (when the spec's config hash changes), and so does a promoted
Rollout. This handler writes only the status fields it owns, so it never
overwrites a promotion or a rollout's claim (``activeRollout``) made meanwhile.
"""

from __future__ import annotations

from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from ..act.configmap import REQUEST_TIMEOUT, ConfigMapConflict
from ..act.deployment import DeploymentMissing, annotate_config_hash
from ..act.httproute import RouteProblem, set_split
from ..act.llmconfigs import read_llmconfig, release
from ..act.outcome import Outcome
from ..act.ownership import owner_reference
from ..act.rollouts import read_rollout
from ..act.router_artifacts import RouterArtifactProblem, read_artifact
from ..act.variants import parsed_canary, render
from ..api.common import GROUP, VERSION
from ..api.conditions import now_rfc3339, set_condition
from ..api.llmconfig import LLMConfigObject, LLMConfigSpec, VersionRecord
from ..api.names import label_value, object_name
from ..api.routing import GatewayAPIRouting
from ..api.validation import InvalidSpec
from ..decide.actions import TERMINAL
from ..store.history import record_version


def reconcile_llmconfig(
    body: dict[str, Any],
    *,
    core: client.CoreV1Api,
    apps: client.AppsV1Api,
    custom: client.CustomObjectsApi | None = None,
    now: str | None = None,
) -> Outcome:
    """Bring the cluster in line with the LLMConfig ``body``; level-based and idempotent."""
    now = now or now_rfc3339()
    meta, status = body["metadata"], dict(body.get("status") or {})
    generation = meta.get("generation")
    conditions = status.get("conditions")
    try:
        target = LLMConfigObject.parse(body)
    except InvalidSpec as exc:
        return _not_ready(conditions, generation, "InvalidSpec", str(exc), now)
    config = target.spec.model_config_part()
    if config.router is not None:
        try:  # before any version is recorded: a router that cannot run never becomes one
            read_artifact(core, meta["namespace"], config)
        except RouterArtifactProblem as exc:
            return _not_ready(
                conditions, generation, "RouterArtifactInvalid",
                f"spec.router.artifact: {exc} (the stable version keeps serving)", now,
            )  # fmt: skip
    return _reconcile(body, target, core=core, apps=apps, custom=custom, now=now)


def _reconcile(
    body: dict[str, Any],
    target: LLMConfigObject,
    *,
    core: client.CoreV1Api,
    apps: client.AppsV1Api,
    custom: client.CustomObjectsApi | None,
    now: str,
) -> Outcome:
    meta, status = body["metadata"], dict(body.get("status") or {})
    generation = meta.get("generation")
    conditions = status.get("conditions")
    spec, known = target.spec, target.status

    owned: dict[str, Any] = {}
    events: list[tuple[str, str, str]] = []
    config = spec.model_config_part()
    spec_hash = config.config_hash()
    history = [v.to_wire() for v in known.history]
    if (
        known.history
        and known.spec_hash != spec_hash
        and spec.delivery.strategy == "canary"
        and known.history[-1].hash != spec_hash
        and custom is not None
    ):
        # A person's change goes through a Rollout: stable stays until it is promoted.
        name = _deliver_by_rollout(custom, body, spec)
        owned.update(specHash=spec_hash, deliveringRollout=name)
        events.append(
            (
                "Normal",
                "DeliveringByRollout",
                f"spec change ({config.model}) is delivered through Rollout {name}",
            )
        )
    elif not history or known.spec_hash != spec_hash:
        history, version, is_new = record_version(
            history, config, source="spec", now=now, limit=spec.history_limit
        )
        owned.update(
            history=history,
            currentVersion=version,
            currentHash=history[-1]["hash"],
            specHash=spec_hash,
        )
        if is_new and version > 1:
            events.append(("Normal", "NewVersion", f"v{version} ({config.model}) from spec"))
    elif len(history) > spec.history_limit:
        history = history[-spec.history_limit :]
        owned["history"] = history
    stable = VersionRecord.model_validate(history[-1])

    active = known.active_rollout
    rollout = _holder(custom, target, stable, events) if active and custom else None
    if rollout is None:
        active = None
    try:
        cm_name, written = render(core, target, stable, parsed_canary(rollout))
    except ConfigMapConflict as exc:
        return _not_ready(
            conditions,
            generation,
            "ConfigMapConflict",
            f"spec.target.configMap.name: {exc}",
            now,
            owned,
        )
    owned["configMapName"] = cm_name
    if written:
        events.append(
            ("Normal", "ConfigMapUpdated", f"ConfigMap {cm_name} renders v{stable.version}")
        )
    if spec.target.deployment is not None:
        try:
            if annotate_config_hash(
                apps, meta["namespace"], spec.target.deployment.name, stable.hash
            ):
                events.append(
                    (
                        "Normal",
                        "DeploymentAnnotated",
                        f"Deployment {spec.target.deployment.name} rolls to v{stable.version}",
                    )
                )
        except DeploymentMissing as exc:
            outcome = _not_ready(
                conditions,
                generation,
                "DeploymentNotFound",
                f"spec.target.deployment.name: {exc}",
                now,
                owned,
            )
            outcome.retry_after = 10
            return outcome
    message = (
        f"v{stable.version} ({stable.provider}/{stable.model}) rendered to ConfigMap "
        f"{cm_name}" + (f"; rollout {active} active" if active else "")
    )
    owned.update(
        {
            "observedGeneration": generation,
            "conditions": set_condition(
                conditions,
                type="Ready",
                status="True",
                reason="Rendered",
                message=message,
                generation=generation,
                now=now,
            ),
            "message": message,
        }
    )
    return Outcome(status=owned, events=events)


def _holder(
    custom: client.CustomObjectsApi,
    target: LLMConfigObject,
    stable: VersionRecord,
    events: list[tuple[str, str, str]],
) -> dict[str, Any] | None:
    """The Rollout holding the claim, as read; None (the claim released) when it was
    deleted or ended without letting go: nothing else would ever release it, and every
    later Rollout and the policy would wait on it."""
    active = target.status.active_rollout
    assert active is not None
    rollout = read_rollout(custom, target.namespace, active)
    if rollout is not None and (rollout.get("status") or {}).get("phase") not in TERMINAL:
        return rollout
    release(custom, target, active)
    if rollout is None:
        events.append(
            (
                "Warning",
                "RolloutDeleted",
                f"Rollout {active} was deleted while it held this LLMConfig; its claim is "
                f"released and v{stable.version} serves all traffic",
            )
        )
    return None


def rollout_deleted(
    core: client.CoreV1Api,
    custom: client.CustomObjectsApi,
    namespace: str,
    llmconfig: str,
    rollout: str,
    routing: GatewayAPIRouting | None = None,
) -> tuple[dict[str, Any], str] | None:
    """A Rollout was deleted: if it held its LLMConfig, the claim is released and the
    stable version gets all traffic at once (through its HTTPRoute, for ``routing``).
    Returns the LLMConfig and what was done (for its Event), or None when the Rollout
    held nothing."""
    found = read_llmconfig(custom, namespace, llmconfig)
    if found is None:
        return None
    try:
        target = LLMConfigObject.parse(found)
    except InvalidSpec:
        return None  # its own reconcile reports that; nothing of ours to undo
    if target.status.active_rollout != rollout or target.stable is None:
        return None
    render(core, target, target.stable, None)
    routed = ""
    if routing is not None:
        try:
            set_split(custom, namespace, routing, 0)
            routed = f" (HTTPRoute {routing.http_route}: {routing.stable_backend.describe()})"
        except RouteProblem as problem:
            routed = f" (HTTPRoute not restored: {problem})"
    release(custom, target, rollout)
    return found, (
        f"Rollout {rollout} was deleted while it held this LLMConfig; its claim is "
        f"released and v{target.stable.version} serves all traffic{routed}"
    )


def claim_is_live(custom: client.CustomObjectsApi, body: dict[str, Any]) -> bool:
    """Whether the LLMConfig's ``activeRollout`` names a Rollout that still runs (its
    ticks keep the split; drift repair leaves it alone). A claim held by a deleted or
    ended Rollout is not live: the reconcile releases it."""
    active = (body.get("status") or {}).get("activeRollout")
    if not active:
        return False
    rollout = read_rollout(custom, body["metadata"]["namespace"], active)
    return rollout is not None and (rollout.get("status") or {}).get("phase") not in TERMINAL


def _deliver_by_rollout(
    custom: client.CustomObjectsApi, body: dict[str, Any], spec: LLMConfigSpec
) -> str:
    """Create (idempotently) the Rollout that delivers the spec's configuration."""
    meta = body["metadata"]
    candidate = spec.model_config_part()
    name = object_name(f"{meta['name']}-spec-{candidate.config_hash()[:8]}")
    rollout: dict[str, Any] = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Rollout",
        "metadata": {
            "name": name,
            "namespace": meta["namespace"],
            "labels": {
                f"{GROUP}/delivery": "spec",
                f"{GROUP}/llm-config": label_value(meta["name"]),
            },
            "ownerReferences": [owner_reference(body)],
        },
        "spec": {"targetRef": {"name": meta["name"]}, "candidate": candidate.to_wire()},
    }
    if spec.delivery.steps:
        rollout["spec"]["steps"] = [s.to_wire() for s in spec.delivery.steps]
    if spec.delivery.analysis:
        rollout["spec"]["analysis"] = spec.delivery.analysis.to_wire()
    try:
        custom.create_namespaced_custom_object(
            GROUP, VERSION, meta["namespace"], "rollouts", rollout, _request_timeout=REQUEST_TIMEOUT
        )
    except ApiException as exc:
        if exc.status != 409:  # already created on an earlier pass: fine
            raise
    return name


def _not_ready(
    conditions: list[dict[str, Any]] | None,
    generation: int | None,
    reason: str,
    message: str,
    now: str,
    owned: dict[str, Any] | None = None,
) -> Outcome:
    status = dict(owned or {})
    status.update(
        {
            "observedGeneration": generation,
            "conditions": set_condition(
                conditions,
                type="Ready",
                status="False",
                reason=reason,
                message=message,
                generation=generation,
                now=now,
            ),
            "message": message,
        }
    )
    return Outcome(status=status, events=[("Warning", reason, message)])
