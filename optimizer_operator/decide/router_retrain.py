"""A policy's router retraining, the pure choices: whether it is due, whether a
retrained router is worth a canary, and which artifact the search uses for a router
choice once a retrained one is stable."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ..api.common import parse_decimal, parse_duration
from ..api.cron import cron_due
from ..api.llmconfig import ModelConfig
from ..api.names import object_name
from ..api.policy import OptimizationPolicySpec, RouterTraining, RouterTrainingStatus
from ..api.timestamps import parse_optional
from .optimizer import choice_key, config_key


def due(
    training: RouterTraining,
    status: RouterTrainingStatus | None,
    now: datetime,
    created: datetime | None,
) -> bool:
    """A scheduled time has passed since the last run (or, before the first, since the
    policy was created; an interval's first run is one interval after creation)."""
    since = parse_optional(status.last_run if status else None) or created
    if since is None:
        return True
    if training.every is not None:
        return (now - since).total_seconds() >= parse_duration(training.every)
    assert training.cron is not None
    return cron_due(training.cron, since, now, training.time_zone)


@dataclass(frozen=True)
class Verdict:
    canary: bool
    outcome: str
    message: str


def judge(auc: dict[str, float] | None, min_gain: str) -> Verdict:
    """Canary the retrained router only when it tells the cheap model's good answers from
    its bad ones at least ``min_gain`` better than the current router on held-out
    recordings; without a held-out comparison (too few, or one outcome only), nothing."""
    if not auc:
        return Verdict(
            False,
            "NotEnoughData",
            "the held-out recordings lack both outcomes (good and bad cheap answers): no "
            "comparison with the current router, nothing canaried",
        )
    gain = auc["retrained"] - auc["current"]
    need = float(parse_decimal(min_gain))
    said = f"held-out AUC {auc['retrained']:.3f} retrained vs {auc['current']:.3f} current"
    if gain < need:
        return Verdict(False, "NotBetter", f"{said}: below minAucGain {min_gain}; kept")
    return Verdict(True, "Canaried", said)


def artifact_name(policy: str, digest: str) -> str:
    """The ConfigMap a policy writes a retrained router's artifact to."""
    return object_name(f"{policy}-router-{digest[:12]}")


def effective_spec(
    spec: OptimizationPolicySpec, stable: ModelConfig, policy: str
) -> OptimizationPolicySpec:
    """The spec the search works with: once a router this policy retrained is stable (its
    artifact in the policy's own ConfigMap), the router choice it came from uses that
    artifact and its threshold, the retrained router's scores being on a scale of their
    own (the spec itself, a person's, is never written); otherwise the spec as given."""
    if stable.router is None:
        return spec
    ref = stable.router.artifact
    if ref.name != artifact_name(policy, ref.digest):
        return spec
    key = config_key(stable)
    update = {"artifact": ref, "threshold": stable.router.threshold}
    models = [
        m.model_copy(update={"router": m.router.model_copy(update=update)})
        if m.router is not None and choice_key(m) == key
        else m
        for m in spec.search_space.models
    ]
    if models == spec.search_space.models:
        return spec
    space = spec.search_space.model_copy(update={"models": models})
    return spec.model_copy(update={"search_space": space})
