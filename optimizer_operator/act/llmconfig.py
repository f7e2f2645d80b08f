"""Reconcile one LLMConfig: record its version, render its ConfigMap, roll its pods."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kubernetes import client

from ..api.conditions import now_rfc3339, set_condition
from ..api.llmconfig import LLMConfigSpec
from ..api.validation import InvalidSpec, parse_spec
from ..api.variants import TOTAL_WEIGHT, Variant, VariantSet
from ..store.history import record_version
from .configmap import ConfigMapConflict, apply_configmap, build_configmap, default_configmap_name
from .deployment import DeploymentMissing, annotate_config_hash


@dataclass
class Outcome:
    """What a reconcile decided: the status to write and the Events to post."""

    status: dict[str, Any]
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (type, reason, message)
    retry_after: float | None = None  # seconds, when the world must change first


def reconcile_llmconfig(
    body: dict[str, Any],
    *,
    core: client.CoreV1Api,
    apps: client.AppsV1Api,
    now: str | None = None,
) -> Outcome:
    """Bring the cluster in line with the LLMConfig ``body``; level-based and idempotent."""
    now = now or now_rfc3339()
    meta, status = body["metadata"], dict(body.get("status") or {})
    generation = meta.get("generation")
    conditions = status.get("conditions")
    try:
        spec = parse_spec(LLMConfigSpec, body.get("spec"))
    except InvalidSpec as exc:
        return _not_ready(status, conditions, generation, "InvalidSpec", str(exc), now)

    config = spec.model_config_part()
    history, version, is_new = record_version(
        status.get("history"), config, source="spec", now=now, limit=spec.history_limit
    )
    cm_name = spec.target.config_map.name or default_configmap_name(meta["name"])
    variants = VariantSet(
        llm_config=meta["name"],
        namespace=meta["namespace"],
        rollout=None,
        variants=[
            Variant(
                id=f"v{version}",
                role="stable",
                hash=config.config_hash(),
                weight=TOTAL_WEIGHT,
                provider=config.provider,
                model=config.model,
                parameters=config.parameters,
                endpoint=config.endpoint,
            )
        ],
    )
    events: list[tuple[str, str, str]] = []
    try:
        written = apply_configmap(
            core,
            build_configmap(
                name=cm_name, key=spec.target.config_map.key, variants=variants, owner=body
            ),
        )
    except ConfigMapConflict as exc:
        return _not_ready(
            status,
            conditions,
            generation,
            "ConfigMapConflict",
            f"spec.target.configMap.name: {exc}",
            now,
        )
    if written:
        events.append(("Normal", "ConfigMapUpdated", f"ConfigMap {cm_name} renders v{version}"))
    if spec.target.deployment is not None:
        try:
            if annotate_config_hash(
                apps, meta["namespace"], spec.target.deployment.name, config.config_hash()
            ):
                events.append(
                    (
                        "Normal",
                        "DeploymentAnnotated",
                        f"Deployment {spec.target.deployment.name} rolls to v{version}",
                    )
                )
        except DeploymentMissing as exc:
            outcome = _not_ready(
                status,
                conditions,
                generation,
                "DeploymentNotFound",
                f"spec.target.deployment.name: {exc}",
                now,
            )
            outcome.status.update(
                {
                    "history": history,
                    "currentVersion": version,
                    "currentHash": config.config_hash(),
                    "configMapName": cm_name,
                }
            )
            outcome.retry_after = 30
            return outcome
    if is_new and version > 1:
        events.append(("Normal", "NewVersion", f"v{version} ({config.model}) is stable"))
    message = f"v{version} ({config.provider}/{config.model}) rendered to ConfigMap {cm_name}"
    status.update(
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
            "history": history,
            "currentVersion": version,
            "currentHash": config.config_hash(),
            "configMapName": cm_name,
            "message": message,
        }
    )
    return Outcome(status=status, events=events)


def _not_ready(
    status: dict[str, Any],
    conditions: list[dict[str, Any]] | None,
    generation: int | None,
    reason: str,
    message: str,
    now: str,
) -> Outcome:
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
