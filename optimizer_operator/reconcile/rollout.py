"""Carry out a rollout: claim the LLMConfig, move weights, promote or restore stable.

One active Rollout per LLMConfig: a Rollout claims its LLMConfig through
``status.activeRollout`` and waits while another holds it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from kubernetes import client

from ..act.httproute import Route, RouteProblem, backend_exists, read_route, set_split, weights
from ..act.llmconfigs import (
    StableMoved,
    claim,
    lift_quarantine,
    read_llmconfig,
    release,
)
from ..act.outcome import Outcome
from ..act.replicas import canary_ready, remove_canary, target_exists
from ..act.rollouts import LABEL_SAFETY
from ..act.router_artifacts import RouterArtifactProblem, read_artifact
from ..act.variants import (
    ACTIVE_PHASES,
    canary_of,
    render,
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
from ..api.common import parse_duration
from ..api.conditions import set_condition
from ..api.llmconfig import LLMConfigObject, ModelConfig, VersionRecord
from ..api.rollout import ABTest, Bandit, RolloutSpec, RolloutStatus
from ..api.timestamps import format_ts
from ..api.validation import InvalidSpec, parse_spec
from ..api.variants import canary_variant_id, stable_variant_id
from ..decide.actions import TERMINAL, Promote, RestoreStable, Tick
from ..decide.admission import admission
from ..decide.bake import start_bake
from ..decide.bandit import BanditArms
from ..decide.rollout import progress, retry
from ..observe.prometheus import BUILTIN, MetricSource, MetricsUnavailable, chosen_evaluators
from .rollout_actions import carry_out

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


def reconcile_rollout(
    body: dict[str, Any],
    *,
    core: client.CoreV1Api,
    apps: client.AppsV1Api,
    custom: client.CustomObjectsApi,
    source: MetricSource | None,
    now: datetime | None = None,
) -> Outcome:
    """One tick of a Rollout: validate, check the target, admit, claim, progress, act;
    returns its new status."""
    return _Reconcile(body, core, apps, custom, source, now or datetime.now(UTC)).run()


class _Reconcile:
    """One tick's context, as Argo Rollouts' rolloutContext: each step a method."""

    def __init__(
        self,
        body: dict[str, Any],
        core: client.CoreV1Api,
        apps: client.AppsV1Api,
        custom: client.CustomObjectsApi,
        source: MetricSource | None,
        now: datetime,
    ) -> None:
        self.body, self.core, self.apps, self.custom = body, core, apps, custom
        self.source, self.now, self.stamp = source, now, format_ts(now)
        meta = body["metadata"]
        self.meta, self.name, self.namespace = meta, meta["name"], meta["namespace"]
        self.generation = meta.get("generation")
        self.raw_status = dict(body.get("status") or {})
        self.events: list[tuple[str, str, str]] = []
        self.route: Route | None = None  # trafficRouting gatewayAPI: the route as read

    def run(self) -> Outcome:
        try:
            spec = parse_spec(RolloutSpec, self.body.get("spec"))
        except InvalidSpec as exc:
            return self.ready(False, "InvalidSpec", str(exc))
        status = RolloutStatus.model_validate(
            {
                k: v
                for k, v in self.raw_status.items()
                if k not in ("conditions", "observedGeneration")
            }
        )
        found = read_llmconfig(self.custom, self.namespace, spec.target_ref.name)
        try:
            llmc = None if found is None else LLMConfigObject.parse(found)
        except InvalidSpec as exc:
            return self.ready(False, "TargetNotReady", f"LLMConfig {spec.target_ref.name}: {exc}")
        problem = self.check_target(spec, status, llmc)
        if problem is not None:
            return problem
        assert llmc is not None
        stable = llmc.stable
        assert stable is not None
        status = self.take_retry(spec, status, llmc)
        refused = self.admit(spec, status, llmc)
        if refused is not None:
            return refused
        tick: Tick | None = None
        if status.phase == "Baking":
            tick = self.baking(spec, status, stable)
        elif status.phase not in TERMINAL:
            waiting = self.wait_for_other(spec, status, llmc)
            if waiting is not None:
                return waiting
            tick = self.resume(spec, status, llmc, stable)
        if tick is None:
            tick = self.progress(spec, status, llmc, stable)
        return self.act(spec, tick, llmc, stable)

    # -- outcome ------------------------------------------------------------

    def ready(
        self,
        ok: bool,
        reason: str,
        message: str,
        extra: dict[str, Any] | None = None,
        retry_after: float | None = None,
    ) -> Outcome:
        status = {**(extra or {}), "observedGeneration": self.generation, "message": message}
        status["conditions"] = set_condition(
            self.raw_status.get("conditions"),
            type="Ready",
            status="True" if ok else "False",
            reason=reason,
            message=message,
            generation=self.generation,
            now=self.stamp,
        )
        events = [] if ok else [("Warning", reason, message)]
        return Outcome(status=status, events=events, retry_after=retry_after)

    def accepted(
        self, status: RolloutStatus, reason: str, retry_after: float | None = None
    ) -> Outcome:
        """Ready=True with the phase conditions for ``status``."""
        phase, message = status.phase or "Pending", status.message or status.phase or ""
        out = self.ready(True, "Accepted", message, _wire(status), retry_after)
        out.status["conditions"] = _phase_conditions(
            out.status["conditions"], phase, reason or phase, message, self.generation, self.stamp
        )
        signal = status.quality_signal
        if signal is not None:
            out.status["conditions"] = set_condition(
                out.status["conditions"],
                type="QualitySignal",
                status=signal.status,
                reason={"True": "QualityData", "False": "NoQualityData"}.get(
                    signal.status, "WaitingForQualityData"
                ),
                message=signal.message,
                generation=self.generation,
                now=self.stamp,
            )
        return out

    def target_deleted(self, message: str, extra: dict[str, Any]) -> Outcome:
        """Failed for good: what the rollout acted on is gone (Degraded says so)."""
        out = self.ready(False, "TargetDeleted", message, extra)
        out.status["conditions"] = set_condition(
            out.status["conditions"],
            type="Degraded",
            status="True",
            reason="TargetDeleted",
            message=message,
            generation=self.generation,
            now=self.stamp,
        )
        return out

    # -- steps --------------------------------------------------------------

    def check_target(
        self, spec: RolloutSpec, status: RolloutStatus, llmc: LLMConfigObject | None
    ) -> Outcome | None:
        """The LLMConfig (and, for a replica canary, its Deployment) exists and is ready."""
        target = spec.target_ref.name
        if llmc is None:
            if status.phase in ACTIVE_PHASES:
                # The target went away under a running rollout: its ConfigMap went with it
                # (owner reference), so there is nothing to restore; end here, and say so.
                return self.target_deleted(
                    f"LLMConfig {target} was deleted while the rollout ran; "
                    "nothing left to roll out or back",
                    {"phase": "Failed", "canaryWeight": 0},
                )
            return self.ready(
                False, "TargetNotFound", f"spec.targetRef.name: LLMConfig {target} not found"
            )
        if llmc.stable is None:
            return self.ready(
                False, "TargetNotReady", f"LLMConfig {target} has no stable version yet"
            )
        if spec.candidate.router is not None and status.phase not in TERMINAL:
            try:
                read_artifact(self.core, self.namespace, spec.candidate)
            except RouterArtifactProblem as exc:
                return self.ready(
                    False,
                    "InvalidSpec",
                    f"spec.candidate.router.artifact: {exc} (nothing was changed)",
                )
        if spec.traffic_routing == "gatewayAPI":
            return self.check_route(spec, status)
        if spec.traffic_routing != "replicas":
            return None
        deployment = llmc.spec.target.deployment
        if deployment is None:
            return self.ready(
                False,
                "InvalidSpec",
                f"spec.trafficRouting: replicas needs LLMConfig {target}'s "
                "spec.target.deployment to clone (nothing was changed)",
            )
        if status.phase in ACTIVE_PHASES and not target_exists(self.apps, llmc):
            # The stable pods are gone: left alone, the canary's pods would take all of
            # the app's traffic with an unvetted config. Remove them and stop.
            removed = remove_canary(self.core, self.apps, llmc)
            release(self.custom, llmc, self.name)
            return self.target_deleted(
                f"target Deployment {deployment.name} was deleted while the rollout ran; "
                + ("the canary Deployment was removed" if removed else "no canary was running")
                + " so no unvetted pods serve the app; the stable config is unchanged",
                {"phase": "Failed", "canaryWeight": 0, "canaryReplicas": 0},
            )
        return None

    def check_route(self, spec: RolloutSpec, status: RolloutStatus) -> Outcome | None:
        """The HTTPRoute exists and can carry the split; before the start, both backends
        exist and the stable one carries the route's traffic."""
        routing = spec.gateway_api
        assert routing is not None
        self.route = read_route(self.custom, self.namespace, routing.http_route)
        try:
            if self.route is None:
                raise RouteProblem(
                    "gatewayAPI.httpRoute",
                    f"HTTPRoute {routing.http_route} not found in {self.namespace}",
                )
            split = weights(self.route, routing)
            if status.stable_hash is None and status.phase in (None, "Pending"):
                for field, backend in (
                    ("gatewayAPI.stableBackend", routing.stable_backend),
                    ("gatewayAPI.canaryBackend", routing.canary_backend),
                ):
                    if not backend_exists(self.core, self.custom, self.namespace, backend):
                        raise RouteProblem(field, f"{backend.describe()} not found")
                if all(stable == 0 for stable, _ in split):
                    raise RouteProblem(
                        "gatewayAPI.stableBackend",
                        f"HTTPRoute {routing.http_route} sends no traffic to "
                        f"{routing.stable_backend.describe()}: name the backend that serves "
                        "the stable version (after a promotion that kept the canary "
                        "backend, that one)",
                    )
        except RouteProblem as problem:
            return self.ready(
                False, "InvalidSpec", f"spec.{problem.field}: {problem} (nothing was changed)"
            )
        return None

    def take_retry(
        self, spec: RolloutSpec, status: RolloutStatus, llmc: LLMConfigObject
    ) -> RolloutStatus:
        """A person's retry starts the rollout again and lifts the candidate's quarantine."""
        fresh = retry(spec, status)
        if fresh is not None:
            lift_quarantine(self.custom, llmc, spec.candidate.config_hash())
            self.events.append(
                (
                    "Normal",
                    "Retried",
                    f"retry {spec.retry} requested by a person; from step 0 again",
                )
            )
            return fresh
        if spec.retry > status.observed_retry:
            status.observed_retry = spec.retry
        return status

    def admit(
        self, spec: RolloutSpec, status: RolloutStatus, llmc: LLMConfigObject
    ) -> Outcome | None:
        """An automatic rollout that may not start waits (rate limit) or fails (quarantine)."""
        if status.phase not in (None, "Pending") or not _automatic(spec, self.meta):
            return None
        safety = (self.meta.get("labels") or {}).get(LABEL_SAFETY) == "rollback"
        limited = not safety and spec.trial is None
        refusal = admission(spec.candidate.config_hash(), llmc, self.now, rate_limited=limited)
        if refusal is None:
            return None
        reason, message, retry_after = refusal
        status.phase, status.message = ("Failed" if retry_after is None else "Pending"), message
        out = self.accepted(status, reason, retry_after)
        out.events = [*self.events, ("Warning", reason, message)]
        return out

    def wait_for_other(
        self, spec: RolloutSpec, status: RolloutStatus, llmc: LLMConfigObject
    ) -> Outcome | None:
        """One Rollout per LLMConfig at a time: the first to claim it (compare-and-set)
        runs; another's claim makes this one wait."""
        holder = llmc.status.active_rollout
        if holder is None and self.claims(spec, status, llmc):
            holder = claim(self.custom, llmc, self.name)
        if not holder or holder == self.name:
            return None
        waiting = status.model_copy(
            update={
                "phase": "Pending",
                "message": f"waiting: Rollout {holder} is "
                f"active on LLMConfig {spec.target_ref.name}",
            }
        )
        return self.accepted(waiting, "AnotherRolloutActive")

    def baking(
        self, spec: RolloutSpec, status: RolloutStatus, stable: VersionRecord
    ) -> Tick | None:
        """While baking the candidate is stable (and holds no claim: others may start). A
        stable changed since by someone else (a person's edit, an undo) ends the bake:
        the person's change wins, nothing is reverted over it."""
        if stable.hash == spec.candidate.config_hash():
            return None
        status.phase = "Promoted"
        status.message = (
            f"bake ended: stable changed to {stable_variant_id(stable.version)} "
            f"({stable.source}) during it; nothing reverted"
        )
        return Tick(status, events=[("Normal", "BakeEnded", status.message)], reason="BakeEnded")

    def claims(self, spec: RolloutSpec, status: RolloutStatus, llmc: LLMConfigObject) -> bool:
        """Whether this rollout is to claim the LLMConfig now: it runs (or starts), and
        has something to roll out (a candidate already stable only ends)."""
        stable = llmc.stable
        if stable is None or status.phase in TERMINAL:
            return False
        if status.stable_hash is not None:
            return True  # started before: it held the claim (a restart, a lost write)
        return spec.candidate.config_hash() != stable.hash

    def resume(
        self,
        spec: RolloutSpec,
        status: RolloutStatus,
        llmc: LLMConfigObject,
        stable: VersionRecord,
    ) -> Tick | None:
        """Pin the variants at the start and claim the LLMConfig; a tick when an
        interrupted promotion is to be finished rather than judged again."""
        candidate_hash = spec.candidate.config_hash()
        if status.candidate_hash is None:
            status.stable_hash = stable.hash
            status.stable_variant = stable_variant_id(stable.version)
            status.candidate_hash = candidate_hash
            status.canary_variant = canary_variant_id(candidate_hash)
        if (
            status.stable_hash not in (None, stable.hash)
            and stable.source == f"rollout/{self.name}"
        ):
            # This rollout's promotion reached the LLMConfig, but the tick that made it
            # was cut before the Rollout's own status was written: finish it (the promote
            # action is idempotent), never judge the stable candidate a second time.
            status.phase = "Promoted"
            status.message = (
                f"promotion completed: {stable_variant_id(stable.version)} was already stable "
                "from this rollout (the tick that promoted it was interrupted)"
            )
            done = Tick(
                status,
                actions=[Promote(stable.model_config_part())],
                events=[("Normal", "PromotionCompleted", status.message)],
                reason="PromotionCompleted",
            )
            return start_bake(spec, done, self.now)
        if status.stable_hash not in (None, stable.hash):
            return self.stable_changed(status, stable)
        if candidate_hash == stable.hash:
            status.phase, status.message = "Aborted", "the candidate is already the stable version"
            release(self.custom, llmc, self.name)
        return None

    def stable_changed(self, status: RolloutStatus, stable: VersionRecord) -> Tick:
        """The LLMConfig's stable version changed under this rollout, not by it (a
        person's edit with ``delivery: immediate``, an undo): the person's change wins.
        The rollout ends, the new stable serves all traffic, and the candidate (judged
        against a stable that no longer runs) is not promoted over it."""
        was = status.stable_variant or (status.stable_hash or "")[:8]
        status.phase = "Aborted"
        status.canary_weight = 0
        status.mirror_percent = 0
        status.message = (
            f"stable changed under the rollout: {stable_variant_id(stable.version)} "
            f"({stable.source}) replaced {was}, which it was compared with; aborted, "
            f"{stable_variant_id(stable.version)} serves all traffic"
        )
        return Tick(
            status,
            actions=[RestoreStable(reason=status.message)],
            events=[("Warning", "StableChanged", status.message)],
            reason="StableChanged",
        )

    def progress(
        self,
        spec: RolloutSpec,
        status: RolloutStatus,
        llmc: LLMConfigObject,
        stable: VersionRecord,
    ) -> Tick:
        if status.phase in TERMINAL:
            return Tick(status, reason=status.phase or "")
        canary = status.canary_variant or canary_variant_id(spec.candidate.config_hash())
        if status.phase == "Baking":  # the candidate runs as the stable version now
            canary = stable_variant_id(stable.version)
        evidence = _Evidence(
            spec,
            self.source,
            Variants(
                llm_config=spec.target_ref.name,
                namespace=self.namespace,
                stable=status.stable_variant or stable_variant_id(stable.version),
                canary=canary,
                evaluators=spec.analysis.quality.weights() if spec.analysis.quality else (),
                **_placeholders(spec, status, llmc, canary),
            ),
        )
        replicas_mode = spec.traffic_routing == "replicas"
        return progress(
            spec,
            status,
            self.now,
            evidence.observe,
            watch=evidence.watch,
            decide_ab=evidence.decide_ab,
            pods_ready=(lambda w: canary_ready(self.apps, llmc, w)) if replicas_mode else None,
            bandit=evidence.bandit_arms() if spec.strategy == "bandit" else None,
        )

    def carry_out_all(
        self, spec: RolloutSpec, tick: Tick, llmc: LLMConfigObject
    ) -> list[tuple[str, str, str]]:
        events: list[tuple[str, str, str]] = []
        for action in tick.actions:
            events += carry_out(
                action,
                self.body,
                spec,
                tick.status,
                llmc,
                core=self.core,
                apps=self.apps,
                custom=self.custom,
                now=self.stamp,
                route=self.route,
            )
            self.route = None  # written: the next write reads it again
        return events

    def act(
        self, spec: RolloutSpec, tick: Tick, llmc: LLMConfigObject, stable: VersionRecord
    ) -> Outcome:
        """Carry out the tick's actions (or repair a drifted split), then the status."""
        events = [*self.events, *tick.events]
        try:
            events += self.carry_out_all(spec, tick, llmc)
        except StableMoved as moved:
            # A newer stable came in between this tick's read and its promotion: the
            # promotion is not written; the rollout ends as for any stable change.
            newer = moved.target.stable
            assert newer is not None
            llmc, stable = moved.target, newer
            tick = self.stable_changed(tick.status, newer)
            events += [*tick.events, *self.carry_out_all(spec, tick, llmc)]
        replicas_mode = spec.traffic_routing == "replicas"
        if not tick.actions and tick.status.phase in ACTIVE_PHASES and spec.gateway_api:
            # Drift repair of the route: the weights this rollout stands at.
            weight = tick.status.canary_weight or 0
            if set_split(self.custom, self.namespace, spec.gateway_api, weight, self.route):
                events.append(
                    (
                        "Warning",
                        "HTTPRouteRepaired",
                        f"HTTPRoute {spec.gateway_api.http_route} drifted from the split; "
                        f"weights set back to {100 - weight}/{weight} (stable/canary)",
                    )
                )
        elif not tick.actions and tick.status.phase in ACTIVE_PHASES and not replicas_mode:
            # Drift repair: the split this rollout stands at, written again only if the
            # ConfigMap differs (deleted, or edited by hand).
            current = canary_of(self.name, spec, tick.status)
            if render(self.core, llmc, stable, current)[1]:
                events.append(
                    (
                        "Warning",
                        "ConfigMapRepaired",
                        "the ConfigMap drifted from the split; rewritten",
                    )
                )
        tick.status.message = tick.status.message or tick.status.phase or "Pending"
        out = self.accepted(tick.status, tick.reason)
        out.events = events
        return out


class _Evidence:
    """Where a Rollout's tick reads its numbers: one Prometheus (or none, which holds)."""

    def __init__(self, spec: RolloutSpec, source: MetricSource | None, variants: Variants) -> None:
        self.spec, self._source, self.variants = spec, source, variants

    def source(self) -> MetricSource:
        if self._source is None:
            raise MetricsUnavailable("no Prometheus configured (LLMOPT_PROMETHEUS_URL)")
        return self._source

    def observe(self, since: float) -> Measurement:
        return measure(self.spec.analysis, self.source(), self.variants, since)

    def watch(self, since: float) -> list[TriggerResult] | None:
        analysis = self.spec.analysis
        return check_triggers(
            analysis.rollback_triggers, analysis, self.source(), self.variants, since
        )

    def decide_ab(self, since: float) -> ABOutcome | None:
        return ab_decide(self.spec.ab_test or ABTest(), self.source(), self.variants, since)

    def bandit_arms(self) -> BanditArms:
        return _bandit_arms(self.spec, self, self.variants)


def _bandit_arms(spec: RolloutSpec, evidence: _Evidence, v: Variants) -> BanditArms:
    settings = spec.bandit or Bandit()
    configs: dict[str, ModelConfig | None] = {v.stable: None} if settings.include_stable else {}
    for config in [spec.candidate, *settings.arms]:
        configs[canary_variant_id(config.config_hash())] = config
    template = settings.query or chosen_evaluators(
        BUILTIN.get(settings.metric, ("", ""))[0], v.evaluators
    )
    builtin = BUILTIN.get(settings.metric, ("", "lowerIsBetter"))[1]
    direction: Direction = settings.direction or (
        "higherIsBetter" if builtin == "higherIsBetter" else "lowerIsBetter"
    )

    def rewards() -> dict[str, ArmReward]:
        source = evidence.source()
        if not template:
            raise MetricsUnavailable(f"bandit metric {settings.metric} has no query")
        return arm_rewards(
            template,
            source,
            v.llm_config,
            v.namespace,
            sorted(configs),
            parse_duration(spec.analysis.window),
        )

    critical = [t for t in spec.analysis.rollback_triggers if t.severity == "critical"]

    def guard(arm: str, since: float) -> list[TriggerResult] | None:
        return check_triggers(
            critical,
            spec.analysis,
            evidence.source(),
            Variants(
                llm_config=v.llm_config,
                namespace=v.namespace,
                stable=v.stable,
                canary=arm,
                evaluators=v.evaluators,
            ),
            since,
        )

    return BanditArms(configs, rewards, direction, guard if critical else None)


def _placeholders(
    spec: RolloutSpec, status: RolloutStatus, llmc: LLMConfigObject, canary: str
) -> dict[str, Any]:
    """{{model}}, {{backend}} and the request count for the variants' queries."""
    stable = llmc.stable
    assert stable is not None
    old = status.stable_variant or stable_variant_id(stable.version)
    was = next((r for r in llmc.status.history if r.hash == status.stable_hash), stable)
    models = {old: was.model, canary: spec.candidate.model}
    backends: dict[str, str] = {}
    routing = spec.gateway_api
    if routing is not None:
        promoted_on = (
            routing.canary_backend
            if routing.after_promotion == "canaryBackend"
            else routing.stable_backend
        )
        backends = {
            old: routing.stable_backend.name,
            canary: promoted_on.name if status.phase == "Baking" else routing.canary_backend.name,
        }
    out: dict[str, Any] = {"models": models, "backends": backends}
    if spec.analysis.requests_query:
        out["requests"] = spec.analysis.requests_query
    return out


def _automatic(spec: RolloutSpec, meta: dict[str, Any]) -> bool:
    """Created by the operator: an optimizer trial or rule, or an LLMConfig's delivery."""
    owners = meta.get("ownerReferences") or []
    return spec.trial is not None or any(
        o.get("kind") in ("LLMConfig", "OptimizationPolicy") for o in owners
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
