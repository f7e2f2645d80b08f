"""What the gateway should serve for an LLMConfig: its stable version plus any canary.

Both the LLMConfig handler and the rollout controller render the ConfigMap
through here, from the same state, so they never fight over weights.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes import client
from pydantic import ValidationError

from ..api.llmconfig import LLMConfigObject, ModelConfig, VersionRecord
from ..api.rollout import RolloutSpec, RolloutStatus
from ..api.variants import (
    TOTAL_WEIGHT,
    Variant,
    VariantRouter,
    VariantSet,
    canary_variant_id,
    stable_variant_id,
)
from .configmap import apply_configmap, build_configmap, default_configmap_name
from .router_artifacts import variant_router

ACTIVE_PHASES = {"Progressing", "Paused", "Holding"}


@dataclass(frozen=True)
class Canary:
    """A candidate taking ``weight`` percent of traffic for ``rollout``."""

    rollout: str
    config: ModelConfig
    weight: int
    mirror: int = 0  # percent of requests copied to the candidate
    others: tuple[tuple[ModelConfig, int], ...] = ()  # bandit: further arms and percents

    @property
    def variant_id(self) -> str:
        return canary_variant_id(self.config.config_hash())


def canary_of(name: str, spec: RolloutSpec, status: RolloutStatus) -> Canary | None:
    """The canary the active Rollout ``name`` currently asks for, if any."""
    weight, mirror = status.canary_weight or 0, status.mirror_percent or 0
    if status.phase not in ACTIVE_PHASES or (weight <= 0 and mirror <= 0):
        return None
    if spec.traffic_routing in ("replicas", "gatewayAPI"):
        # The canary runs in its own Deployment, or behind its own backend of the route,
        # with its own ConfigMap: the LLMConfig's ConfigMap holds stable alone.
        return None
    if spec.strategy == "bandit":
        arms = spec.bandit.arms if spec.bandit is not None else []
        return bandit_canary(name, spec.candidate, list(arms), dict(status.arm_weights))
    return Canary(name, spec.candidate, weight, mirror)


def parsed_canary(rollout: dict[str, Any] | None) -> Canary | None:
    """``canary_of`` a Rollout as read; one that does not validate asks for nothing (its
    own reconciler stops it with InvalidSpec, so stable alone is the safe split)."""
    if rollout is None:
        return None
    try:
        spec = RolloutSpec.model_validate(rollout.get("spec") or {})
        raw = dict(rollout.get("status") or {})
        raw.pop("conditions", None)
        raw.pop("observedGeneration", None)
        status = RolloutStatus.model_validate(raw)
    except ValidationError:
        return None
    return canary_of(rollout["metadata"]["name"], spec, status)


def bandit_canary(
    rollout: str, candidate: ModelConfig, arms: list[ModelConfig], weights: dict[str, int]
) -> Canary | None:
    """The bandit's arms as one Canary: the candidate plus the others, by variant id."""

    def pct(config: ModelConfig) -> int:
        return int(weights.get(canary_variant_id(config.config_hash()), 0))

    others = tuple((a, pct(a)) for a in arms)
    if pct(candidate) <= 0 and not any(w > 0 for _, w in others):
        return None
    return Canary(rollout, candidate, pct(candidate), 0, others)


Routers = Callable[[ModelConfig], VariantRouter | None]


def _no_routers(config: ModelConfig) -> VariantRouter | None:
    if config.router is not None:
        raise ValueError("a router config needs its artifact read (render does)")
    return None


def _candidate(
    config: ModelConfig, weight_bp: int, mirror_bp: int = 0, routers: Routers = _no_routers
) -> Variant:
    return Variant(
        id=canary_variant_id(config.config_hash()),
        role="candidate",
        hash=config.config_hash(),
        weight=weight_bp,
        mirror=mirror_bp,
        provider=config.provider,
        model=config.model,
        parameters=config.parameters,
        endpoint=config.endpoint,
        router=routers(config),
    )


def build_variant_set(
    llm_config: str,
    namespace: str,
    stable: VersionRecord,
    canary: Canary | None,
    routers: Routers = _no_routers,
) -> VariantSet:
    config = stable.model_config_part()
    canary_bp = canary.weight * TOTAL_WEIGHT // 100 if canary else 0
    others_bp = [w * TOTAL_WEIGHT // 100 for _, w in canary.others] if canary else []
    variants = [
        Variant(
            id=stable_variant_id(stable.version),
            role="stable",
            hash=stable.hash,
            weight=TOTAL_WEIGHT - canary_bp - sum(others_bp),
            provider=config.provider,
            model=config.model,
            parameters=config.parameters,
            endpoint=config.endpoint,
            router=routers(config),
        )
    ]
    if canary is not None:
        mirror_bp = canary.mirror * TOTAL_WEIGHT // 100
        variants.append(_candidate(canary.config, canary_bp, mirror_bp, routers))
        for (other, _), bp in zip(canary.others, others_bp, strict=True):
            variants.append(_candidate(other, bp, routers=routers))
    return VariantSet(
        llm_config=llm_config,
        namespace=namespace,
        rollout=canary.rollout if canary else None,
        variants=variants,
    )


def render(
    core: client.CoreV1Api, target: LLMConfigObject, stable: VersionRecord, canary: Canary | None
) -> tuple[str, bool]:
    """Write the LLMConfig's ConfigMap; returns its name and whether it changed."""
    spec = target.spec
    name = spec.target.config_map.name or default_configmap_name(target.name)
    variant_set = build_variant_set(
        target.name,
        target.namespace,
        stable,
        canary,
        lambda config: variant_router(core, target.namespace, config),
    )
    changed = apply_configmap(
        core,
        build_configmap(
            name=name, key=spec.target.config_map.key, variants=variant_set, owner=target.body
        ),
    )
    return name, changed
