"""Carry out a rollout: claim the LLMConfig, move weights, promote or restore stable.

One active Rollout per LLMConfig: a Rollout claims its LLMConfig through
``status.activeRollout`` and waits while another holds it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from kubernetes import client

from ..analysis.measurement import Measurement, Variants, measure
from ..api.common import GROUP, VERSION
from ..api.conditions import set_condition
from ..api.llmconfig import LLMConfigSpec
from ..api.rollout import RolloutSpec, RolloutStatus
from ..api.validation import InvalidSpec, parse_spec
from ..decide.rollout import TERMINAL, Promote, RestoreStable, SetWeight, Tick, progress
from ..observe.prometheus import MetricSource, MetricsUnavailable
from ..store.history import record_version
from .configmap import REQUEST_TIMEOUT
from .deployment import DeploymentMissing, annotate_config_hash
from .llmconfig import Outcome
from .targets import read_llmconfig
from .variants import Canary, canary_variant_id, render, stable_record, stable_variant_id

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
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")

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

    try:
        spec = parse_spec(RolloutSpec, body.get("spec"))
    except InvalidSpec as exc:
        return ready(False, "InvalidSpec", str(exc))
    # Accepted by the API (the schema is the full design) but not built yet: refuse
    # plainly rather than run them as something else.
    if spec.strategy != "canary":
        return ready(
            False,
            "NotSupported",
            f"spec.strategy: {spec.strategy} is not "
            "implemented yet; use canary (nothing was changed)",
        )
    if spec.traffic_routing != "configMap":
        return ready(
            False,
            "NotSupported",
            "spec.trafficRouting: replicas is not implemented "
            "yet; use configMap (nothing was changed)",
        )
    status = RolloutStatus.model_validate(
        {k: v for k, v in raw_status.items() if k not in ("conditions", "observedGeneration")}
    )
    llmc = read_llmconfig(custom, namespace, spec.target_ref.name)
    if llmc is None:
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
        if candidate_hash == stable.hash:
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

    tick = (
        progress(spec, status, now, observe)
        if status.phase not in TERMINAL
        else Tick(status, reason=status.phase or "")
    )
    events = list(tick.events)
    for action in tick.actions:
        events += _carry_out(
            action, name, spec, llmc, core=core, apps=apps, custom=custom, now=stamp
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
    rollout: str,
    spec: RolloutSpec,
    llmc: dict[str, Any],
    *,
    core: client.CoreV1Api,
    apps: client.AppsV1Api,
    custom: client.CustomObjectsApi,
    now: str,
) -> list[tuple[str, str, str]]:
    meta = llmc["metadata"]
    stable = stable_record(llmc)
    assert stable is not None
    if isinstance(action, SetWeight):
        render(
            core,
            llmc,
            stable,
            Canary(rollout, spec.candidate, action.weight) if action.weight > 0 else None,
        )
        return []
    if isinstance(action, RestoreStable):
        render(core, llmc, stable, None)
        _release(custom, llmc, rollout)
        return [("Normal", "StableRestored", f"all traffic back on v{stable.version}")]
    assert isinstance(action, Promote)
    llmc_spec = LLMConfigSpec.model_validate(llmc.get("spec"))
    history, version, _ = record_version(
        (llmc.get("status") or {}).get("history"),
        spec.candidate,
        source=f"rollout/{rollout}",
        now=now,
        limit=llmc_spec.history_limit,
    )
    promoted = stable_record({"status": {"history": history}})
    assert promoted is not None
    release = {"activeRollout": None} if _holds(llmc, rollout) else {}
    _patch_llmconfig_status(
        custom,
        meta["namespace"],
        meta["name"],
        {"history": history, "currentVersion": version, "currentHash": promoted.hash, **release},
    )
    render(
        core, {**llmc, "status": {**(llmc.get("status") or {}), "history": history}}, promoted, None
    )
    events = [("Normal", "Promoted", f"{spec.candidate.model} is v{version} of {meta['name']}")]
    if llmc_spec.target.deployment is not None:
        try:
            annotate_config_hash(
                apps, meta["namespace"], llmc_spec.target.deployment.name, promoted.hash
            )
        except DeploymentMissing as exc:
            events.append(("Warning", "DeploymentNotFound", str(exc)))
    return events


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
