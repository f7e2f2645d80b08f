"""Carry out a rollout: claim the LLMConfig, move weights, promote or restore stable.

One active Rollout per LLMConfig: a Rollout claims its LLMConfig through
``status.activeRollout`` and waits while another holds it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from kubernetes import client

from ..act.configmap import REQUEST_TIMEOUT
from ..act.deployment import DeploymentMissing, annotate_config_hash
from ..act.llmconfigs import read_llmconfig
from ..act.outcome import Outcome
from ..act.replicas import canary_ready, ensure_canary, remove_canary, target_exists
from ..act.variants import (
    ACTIVE_PHASES,
    Canary,
    bandit_canary,
    canary_of,
    render,
    stable_record,
)
from ..analysis.bandit import ArmReward
from ..analysis.canary import Direction
from ..analysis.measurement import (
    ABOutcome,
    Measurement,
    TriggerResult,
    Variants,
    ab_decide,
    arm_rewards,
    check_triggers,
    measure,
)
from ..api.common import GROUP, VERSION, parse_duration
from ..api.conditions import set_condition
from ..api.llmconfig import LLMConfigSpec, ModelConfig, QuarantineEntry
from ..api.rollout import ABTest, Bandit, RolloutSpec, RolloutStatus
from ..api.timestamps import format_ts, parse_ts
from ..api.validation import InvalidSpec, parse_spec
from ..api.variants import canary_variant_id, stable_variant_id
from ..decide.actions import TERMINAL, Promote, RestoreStable, SetArms, SetWeight, Tick
from ..decide.bandit import BanditArms
from ..decide.rollout import progress, retry
from ..observe.prometheus import BUILTIN, MetricSource, MetricsUnavailable
from ..store.history import record_version

_CONDITION_FOR_PHASE: dict[str, tuple[str, str, str]] = {
    # phase: (Progressing, Paused, Degraded)
    "Progressing": ("True", "False", "False"),
    "Paused": ("True", "True", "False"),
    "Holding": ("True", "False", "True"),
    "Promoted": ("False", "False", "False"),
    "RolledBack": ("False", "False", "True"),
    "Aborted": ("False", "False", "True"),
    "Failed": ("False", "False", "True"),
    "Pending": ("False", "False", "False"),
}


def _patch_llmconfig_status(
    custom: client.CustomObjectsApi, namespace: str, name: str, patch: dict[str, Any]
) -> None:
    custom.patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        namespace,
        "llmconfigs",
        name,
        {"status": patch},
        _request_timeout=REQUEST_TIMEOUT,
    )


def reconcile_rollout(
    body: dict[str, Any],
    *,
    core: client.CoreV1Api,
    apps: client.AppsV1Api,
    custom: client.CustomObjectsApi,
    source: MetricSource | None,
    now: datetime | None = None,
) -> Outcome:
    """One tick of a Rollout: validate, claim, progress, act; returns its new status."""
    now = now or datetime.now(UTC)
    meta = body["metadata"]
    name, namespace, generation = meta["name"], meta["namespace"], meta.get("generation")
    raw_status = dict(body.get("status") or {})
    conditions = raw_status.get("conditions")
    stamp = format_ts(now)

    def ready(
        ok: bool,
        reason: str,
        message: str,
        extra: dict[str, Any] | None = None,
        retry: float | None = None,
    ) -> Outcome:
        status = {**(extra or {}), "observedGeneration": generation, "message": message}
        status["conditions"] = set_condition(
            conditions,
            type="Ready",
            status="True" if ok else "False",
            reason=reason,
            message=message,
            generation=generation,
            now=stamp,
        )
        events = [] if ok else [("Warning", reason, message)]
        return Outcome(status=status, events=events, retry_after=retry)

    def target_deleted(message: str, extra: dict[str, Any]) -> Outcome:
        """Failed for good: what the rollout acted on is gone (Degraded says so)."""
        out = ready(False, "TargetDeleted", message, extra)
        out.status["conditions"] = set_condition(
            out.status["conditions"],
            type="Degraded",
            status="True",
            reason="TargetDeleted",
            message=message,
            generation=generation,
            now=stamp,
        )
        return out

    try:
        spec = parse_spec(RolloutSpec, body.get("spec"))
    except InvalidSpec as exc:
        return ready(False, "InvalidSpec", str(exc))
    status = RolloutStatus.model_validate(
        {k: v for k, v in raw_status.items() if k not in ("conditions", "observedGeneration")}
    )
    llmc = read_llmconfig(custom, namespace, spec.target_ref.name)
    if llmc is None:
        if status.phase in ACTIVE_PHASES:
            # The target went away under a running rollout: its ConfigMap went with it
            # (owner reference), so there is nothing to restore; end here, and say so.
            return target_deleted(
                f"LLMConfig {spec.target_ref.name} was deleted while the rollout ran; "
                "nothing left to roll out or back",
                {"phase": "Failed", "canaryWeight": 0},
            )
        return ready(
            False,
            "TargetNotFound",
            f"spec.targetRef.name: LLMConfig {spec.target_ref.name} not found",
        )
    stable = stable_record(llmc)
    llmc_status = llmc.get("status") or {}
    if stable is None:
        return ready(
            False, "TargetNotReady", f"LLMConfig {spec.target_ref.name} has no stable version yet"
        )
    replicas_mode = spec.traffic_routing == "replicas"
    if replicas_mode and not ((llmc.get("spec") or {}).get("target") or {}).get("deployment"):
        return ready(
            False,
            "InvalidSpec",
            f"spec.trafficRouting: replicas needs LLMConfig {spec.target_ref.name}'s "
            "spec.target.deployment to clone (nothing was changed)",
        )
    if replicas_mode and status.phase in ACTIVE_PHASES and not target_exists(apps, llmc):
        # The stable pods are gone: left alone, the canary's pods would take all of the
        # app's traffic with an unvetted config. Remove them and stop.
        removed = remove_canary(core, apps, llmc)
        _release(custom, llmc, name)
        deployment = llmc["spec"]["target"]["deployment"]["name"]
        return target_deleted(
            f"target Deployment {deployment} was deleted while the rollout ran; "
            + ("the canary Deployment was removed" if removed else "no canary was running")
            + " so no unvetted pods serve the app; the stable config is unchanged",
            {"phase": "Failed", "canaryWeight": 0, "canaryReplicas": 0},
        )
    pre_events: list[tuple[str, str, str]] = []
    fresh = retry(spec, status)
    if fresh is not None:
        _lift_quarantine(custom, llmc, spec.candidate.config_hash())
        status = fresh
        pre_events.append(
            ("Normal", "Retried", f"retry {spec.retry} requested by a person; from step 0 again")
        )
    elif spec.retry > status.observed_retry:
        status.observed_retry = spec.retry
    if status.phase in (None, "Pending") and _automatic(spec, meta):
        gate = _gate(spec.candidate.config_hash(), llmc, now)
        if gate is not None:
            reason, message, retry_after = gate
            status.phase, status.message = ("Failed" if retry_after is None else "Pending"), message
            out = ready(True, "Accepted", message, _wire(status), retry=retry_after)
            out.status["conditions"] = _phase_conditions(
                out.status["conditions"], status.phase, reason, message, generation, stamp
            )
            out.events = [*pre_events, ("Warning", reason, message)]
            return out

    resumed: Tick | None = None
    if status.phase not in TERMINAL:
        holder = llmc_status.get("activeRollout")
        if holder and holder != name:
            waiting = status.model_copy(
                update={
                    "phase": "Pending",
                    "message": f"waiting: Rollout {holder} is "
                    f"active on LLMConfig {spec.target_ref.name}",
                }
            )
            out = ready(True, "Accepted", waiting.message or "", _wire(waiting))
            out.status["conditions"] = _phase_conditions(
                out.status["conditions"],
                "Pending",
                "AnotherRolloutActive",
                waiting.message or "",
                generation,
                stamp,
            )
            return out
        candidate_hash = spec.candidate.config_hash()
        if status.candidate_hash is None:
            status.stable_hash, status.stable_variant = (
                stable.hash,
                stable_variant_id(stable.version),
            )
            status.candidate_hash = candidate_hash
            status.canary_variant = canary_variant_id(candidate_hash)
        if status.stable_hash not in (None, stable.hash) and stable.source == f"rollout/{name}":
            # This rollout's promotion reached the LLMConfig, but the tick that made it
            # was cut before the Rollout's own status was written: finish it (the promote
            # action is idempotent), never judge the stable candidate a second time.
            status.phase = "Promoted"
            status.message = (
                f"promotion completed: v{stable.version} was already stable from this rollout "
                "(the tick that promoted it was interrupted)"
            )
            resumed = Tick(
                status,
                actions=[Promote(stable.model_config_part())],
                events=[("Normal", "PromotionCompleted", status.message)],
                reason="PromotionCompleted",
            )
        elif candidate_hash == stable.hash:
            status.phase, status.message = "Aborted", "the candidate is already the stable version"
        elif not holder:
            _patch_llmconfig_status(
                custom, namespace, spec.target_ref.name, {"activeRollout": name}
            )

    def observe(since: float) -> Measurement:
        if source is None:
            raise MetricsUnavailable("no Prometheus configured (LLMOPT_PROMETHEUS_URL)")
        return measure(
            spec.analysis,
            source,
            Variants(
                llm_config=spec.target_ref.name,
                namespace=namespace,
                stable=status.stable_variant or stable_variant_id(stable.version),
                canary=status.canary_variant or canary_variant_id(spec.candidate.config_hash()),
            ),
            since,
        )

    def variants() -> Variants:
        return Variants(
            llm_config=spec.target_ref.name,
            namespace=namespace,
            stable=status.stable_variant or stable_variant_id(stable.version),
            canary=status.canary_variant or canary_variant_id(spec.candidate.config_hash()),
        )

    def watch(since: float) -> list[TriggerResult] | None:
        if source is None:
            raise MetricsUnavailable("no Prometheus configured (LLMOPT_PROMETHEUS_URL)")
        return check_triggers(
            spec.analysis.rollback_triggers, spec.analysis, source, variants(), since
        )

    def decide_ab(since: float) -> ABOutcome | None:
        if source is None:
            raise MetricsUnavailable("no Prometheus configured (LLMOPT_PROMETHEUS_URL)")
        return ab_decide(spec.ab_test or ABTest(), source, variants(), since)

    bandit = (
        _bandit_arms(spec, source, variants(), namespace) if spec.strategy == "bandit" else None
    )
    tick = resumed or (
        progress(
            spec,
            status,
            now,
            observe,
            watch=watch,
            decide_ab=decide_ab,
            pods_ready=(lambda w: canary_ready(apps, llmc, w)) if replicas_mode else None,
            bandit=bandit,
        )
        if status.phase not in TERMINAL
        else Tick(status, reason=status.phase or "")
    )
    events = [*pre_events, *tick.events]
    for action in tick.actions:
        events += _carry_out(
            action, body, spec, tick.status, llmc, core=core, apps=apps, custom=custom, now=stamp
        )
    if not tick.actions and tick.status.phase in ACTIVE_PHASES and not replicas_mode:
        # Drift repair: the split this rollout stands at, written again only if the
        # ConfigMap differs (deleted, or edited by hand).
        current = {
            "metadata": body["metadata"],
            "spec": body.get("spec"),
            "status": _wire(tick.status),
        }
        if render(core, llmc, stable, canary_of(current))[1]:
            events.append(
                ("Warning", "ConfigMapRepaired", "the ConfigMap drifted from the split; rewritten")
            )
    phase = tick.status.phase or "Pending"
    out = ready(True, "Accepted", tick.status.message or phase, _wire(tick.status))
    out.status["conditions"] = _phase_conditions(
        out.status["conditions"],
        phase,
        tick.reason or phase,
        tick.status.message or phase,
        generation,
        stamp,
    )
    out.events = events
    return out


def _carry_out(
    action: Any,
    body: dict[str, Any],
    spec: RolloutSpec,
    status: RolloutStatus,
    llmc: dict[str, Any],
    *,
    core: client.CoreV1Api,
    apps: client.AppsV1Api,
    custom: client.CustomObjectsApi,
    now: str,
) -> list[tuple[str, str, str]]:
    rollout = body["metadata"]["name"]
    meta = llmc["metadata"]
    stable = stable_record(llmc)
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
                    llmc=llmc,
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
    if isinstance(action, RestoreStable):
        render(core, llmc, stable, None)
        _release(custom, llmc, rollout)
        if action.quarantine:
            _quarantine(custom, llmc, spec, rollout, action.reason, now)
        return [*events, ("Normal", "StableRestored", f"all traffic back on v{stable.version}")]
    assert isinstance(action, Promote)
    winner = action.config or spec.candidate
    llmc_spec = LLMConfigSpec.model_validate(llmc.get("spec"))
    history = (llmc.get("status") or {}).get("history") or []
    version = stable.version
    if stable.source == f"rollout/{rollout}" and stable.hash == winner.config_hash():
        _release(custom, llmc, rollout)  # already recorded by an interrupted tick: once only
    else:
        history, version, _ = record_version(
            history, winner, source=f"rollout/{rollout}", now=now, limit=llmc_spec.history_limit
        )
        release = {"activeRollout": None} if _holds(llmc, rollout) else {}
        _patch_llmconfig_status(
            custom,
            meta["namespace"],
            meta["name"],
            {
                "history": history,
                "currentVersion": version,
                "currentHash": winner.config_hash(),
                **release,
            },
        )
    promoted = stable_record({"status": {"history": history}})
    assert promoted is not None
    render(
        core, {**llmc, "status": {**(llmc.get("status") or {}), "history": history}}, promoted, None
    )
    events.append(("Normal", "Promoted", f"{winner.model} is v{version} of {meta['name']}"))
    if llmc_spec.target.deployment is not None:
        try:
            annotate_config_hash(
                apps, meta["namespace"], llmc_spec.target.deployment.name, promoted.hash
            )
        except DeploymentMissing as exc:
            events.append(("Warning", "DeploymentNotFound", str(exc)))
    return events


QUARANTINE_LIMIT = 50


def _bandit_arms(
    spec: RolloutSpec, source: MetricSource | None, v: Variants, namespace: str
) -> BanditArms:
    settings = spec.bandit or Bandit()
    configs: dict[str, ModelConfig | None] = {v.stable: None} if settings.include_stable else {}
    for config in [spec.candidate, *settings.arms]:
        configs[canary_variant_id(config.config_hash())] = config
    template = settings.query or BUILTIN.get(settings.metric, ("", ""))[0]
    builtin = BUILTIN.get(settings.metric, ("", "lowerIsBetter"))[1]
    direction: Direction = settings.direction or (
        "higherIsBetter" if builtin == "higherIsBetter" else "lowerIsBetter"
    )

    def rewards() -> dict[str, ArmReward]:
        if source is None:
            raise MetricsUnavailable("no Prometheus configured (LLMOPT_PROMETHEUS_URL)")
        if not template:
            raise MetricsUnavailable(f"bandit metric {settings.metric} has no query")
        return arm_rewards(
            template,
            source,
            v.llm_config,
            namespace,
            sorted(configs),
            parse_duration(spec.analysis.window),
        )

    critical = [t for t in spec.analysis.rollback_triggers if t.severity == "critical"]

    def guard(arm: str, since: float) -> list[TriggerResult] | None:
        if source is None:
            raise MetricsUnavailable("no Prometheus configured (LLMOPT_PROMETHEUS_URL)")
        return check_triggers(
            critical,
            spec.analysis,
            source,
            Variants(llm_config=v.llm_config, namespace=v.namespace, stable=v.stable, canary=arm),
            since,
        )

    return BanditArms(configs, rewards, direction, guard if critical else None)


def _automatic(spec: RolloutSpec, meta: dict[str, Any]) -> bool:
    """Created by the operator: an optimizer trial or rule, or an LLMConfig's delivery."""
    owners = meta.get("ownerReferences") or []
    return spec.trial is not None or any(
        o.get("kind") in ("LLMConfig", "OptimizationPolicy") for o in owners
    )


def _gate(
    candidate_hash: str, llmc: dict[str, Any], now: datetime
) -> tuple[str, str, float | None] | None:
    """Why an automatic rollout may not start: (reason, message, retry after seconds or
    None for never), or None when it may."""
    llmc_status = llmc.get("status") or {}
    name = llmc["metadata"]["name"]
    for entry in llmc_status.get("quarantine") or []:
        if entry.get("hash") == candidate_hash:
            return (
                "Quarantined",
                f"candidate {candidate_hash[:8]} was rolled back by Rollout "
                f"{entry.get('rollout')} ({entry.get('reason', '')}); not retried automatically "
                "(llm-optimizer rollout retry NAME tries it anyway)",
                None,
            )
    delivery = LLMConfigSpec.model_validate(llmc.get("spec")).delivery
    window = parse_duration(delivery.rollback_window)
    recent = sorted(
        t
        for t in llmc_status.get("rollbacks") or []
        if (now - _parse_ts(t)).total_seconds() < window
    )
    if len(recent) >= delivery.max_rollbacks:
        wait = window - (now - _parse_ts(recent[-delivery.max_rollbacks])).total_seconds()
        return (
            "RollbackRateLimited",
            f"{len(recent)} rollbacks on LLMConfig {name} within {delivery.rollback_window} "
            f"(spec.delivery.maxRollbacks {delivery.max_rollbacks}); waiting {wait:.0f}s",
            max(wait, 1.0),
        )
    return None


def _parse_ts(ts: str) -> datetime:
    return parse_ts(ts)


def _quarantine(
    custom: client.CustomObjectsApi,
    llmc: dict[str, Any],
    spec: RolloutSpec,
    rollout: str,
    reason: str,
    now: str,
) -> None:
    llmc_status = llmc.get("status") or {}
    candidate_hash = spec.candidate.config_hash()
    entries = [e for e in llmc_status.get("quarantine") or [] if e.get("hash") != candidate_hash]
    entries.append(
        QuarantineEntry(
            hash=candidate_hash,
            model=spec.candidate.model,
            rollout=rollout,
            reason=reason[:1024],
            at=now,
        ).to_wire()
    )
    stamp = _parse_ts(now)
    recent = [t for t in llmc_status.get("rollbacks") or [] if (stamp - _parse_ts(t)).days < 1]
    rollbacks = [*recent[-99:], now]
    patch = {"quarantine": entries[-QUARANTINE_LIMIT:], "rollbacks": rollbacks}
    _patch_llmconfig_status(custom, llmc["metadata"]["namespace"], llmc["metadata"]["name"], patch)
    llmc.setdefault("status", {}).update(patch)


def _lift_quarantine(
    custom: client.CustomObjectsApi, llmc: dict[str, Any], candidate_hash: str
) -> None:
    entries = (llmc.get("status") or {}).get("quarantine") or []
    kept = [e for e in entries if e.get("hash") != candidate_hash]
    if len(kept) != len(entries):
        _patch_llmconfig_status(
            custom, llmc["metadata"]["namespace"], llmc["metadata"]["name"], {"quarantine": kept}
        )
        llmc.setdefault("status", {})["quarantine"] = kept


def _holds(llmc: dict[str, Any], rollout: str) -> bool:
    return (llmc.get("status") or {}).get("activeRollout") in (None, rollout)


def _release(custom: client.CustomObjectsApi, llmc: dict[str, Any], rollout: str) -> None:
    if (llmc.get("status") or {}).get("activeRollout") == rollout:
        _patch_llmconfig_status(
            custom, llmc["metadata"]["namespace"], llmc["metadata"]["name"], {"activeRollout": None}
        )


def _wire(status: RolloutStatus) -> dict[str, Any]:
    wire = status.to_wire()
    wire.pop("conditions", None)
    wire.pop("observedGeneration", None)
    return wire


def _phase_conditions(
    conditions: list[dict[str, Any]],
    phase: str,
    reason: str,
    message: str,
    generation: int | None,
    now: str,
) -> list[dict[str, Any]]:
    progressing, paused, degraded = _CONDITION_FOR_PHASE.get(phase, ("False", "False", "False"))
    for ctype, value in (("Progressing", progressing), ("Paused", paused), ("Degraded", degraded)):
        conditions = set_condition(
            conditions,
            type=ctype,
            status=value,  # type: ignore[arg-type]
            reason=reason,
            message=message,
            generation=generation,
            now=now,
        )
    return conditions
