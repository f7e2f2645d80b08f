"""One cycle of an OptimizationPolicy's control loop, closed through Rollouts — the glue.

Order of a cycle (the seed's decision order, safety first):

1. the rules, evaluated and applied every cycle — also while a trial runs and while the
   circuit breaker is open (``policy_rules``): safety does not wait for experiments;
2. settle running trials (``trial_settle``): a trial's Rollout walks the policy's steps
   and then pauses at a final gate; there the candidate and stable are measured side by
   side over the same span, and the policy promotes the candidate only when it meets
   every constraint and improves the weighted objectives by more than
   ``budgets.minImprovement`` — otherwise it aborts it. A Rollout that rolled back is
   told to the study as infeasible (or failed when nothing could be measured), never
   dropped;
3. triggers due and cooldown satisfied; the circuit breaker closed; budgets left
   (``decide.gates``);
4. the system stable: no Rollout active on the LLMConfig, no anomaly on stable;
5. ask the study for a candidate (the stable config first, as the baseline);
   validate it before any traffic moves (``decide.proposal``: quarantine, predicted
   infeasibility, projected daily cost);
6. ``recommend``: write it to status; ``auto``: record the trial, then create its
   Rollout (``<policy>-t<number>``, so a restart never creates two) (``trial_start``).

Missing metrics never decide anything: the cycle waits (state Collecting).
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from ..act.llmconfigs import read_llmconfig
from ..act.outcome import Outcome
from ..analysis.baselines import observe_stable, stable_anomaly
from ..api.common import parse_duration
from ..api.conditions import set_condition
from ..api.llmconfig import LLMConfigObject
from ..api.policy import OptimizationPolicySpec, OptimizationPolicyStatus
from ..api.timestamps import format_ts, parse_optional
from ..api.validation import InvalidSpec, parse_spec
from ..api.variants import stable_variant_id
from ..decide import gates, optimizer, proposal, router_retrain
from ..decide.triggers import due
from ..observe.policy_metrics import PolicyMetrics
from ..observe.prometheus import MetricSource, MetricsUnavailable
from ..providers.catalog import list_price
from ..store.session import HistorySession
from ..tracing import Tracer
from . import policy_quality
from . import router_retrain as retrain_step
from .cycle_state import CycleState
from .policy_rules import DONE, apply_rules
from .router_retrain import Training
from .trial_settle import settle
from .trial_start import propose

if TYPE_CHECKING:
    from ..store.postgres import HistoryStore

RECORDS_KEPT = 200


class Cycle:
    """The state one cycle works on; ``run`` returns the Outcome to write."""

    def __init__(self, body: dict[str, Any], now: datetime, store: HistoryStore | None) -> None:
        self.body, self.now = body, now
        self.meta = body["metadata"]
        self.namespace, self.name = self.meta["namespace"], self.meta["name"]
        raw = dict(body.get("status") or {})
        self.conditions = raw.get("conditions")
        self.status = OptimizationPolicyStatus.model_validate(
            {k: v for k, v in raw.items() if k not in ("conditions", "observedGeneration")}
        )
        self.events: list[tuple[str, str, str]] = []
        self.history = HistorySession(store, self.namespace, self.name, self.status, self.events)
        self.state: CycleState | None = None

    def out(self, ok: bool, reason: str, message: str) -> Outcome:
        s, c = self.status, self.state
        self.history.save(
            llmconfig=None if c is None else c.target.name,
            versions=[] if c is None else c.target.status.history,
            baselines=[] if c is None else c.fresh_baselines,
            rules=[] if c is None else c.fresh_rules,
        )
        s.trial_records = s.trial_records[-RECORDS_KEPT:]
        s.message = message
        s.last_decision = s.last_decision or message
        wire = s.to_wire()
        generation = self.meta.get("generation")
        wire["observedGeneration"] = generation
        wire["conditions"] = set_condition(
            self.conditions,
            type="Ready",
            status="True" if ok else "False",
            reason=reason,
            message=message,
            generation=generation,
            now=format_ts(self.now),
        )
        signal = s.quality_signal
        if signal is not None:
            wire["conditions"] = set_condition(
                wire["conditions"],
                type="QualitySignal",
                status=signal.status,
                reason={"True": "QualityData", "False": "NoQualityData"}.get(
                    signal.status, "WaitingForQualityData"
                ),
                message=signal.message,
                generation=generation,
                now=format_ts(self.now),
            )
        events = self.events if ok else [*self.events, ("Warning", reason, message)]
        return Outcome(status=wire, events=events)

    def ready(self) -> Outcome:
        return self.out(True, "Accepted", self.status.message or self.status.state or "")

    def run(
        self,
        custom: client.CustomObjectsApi,
        source: MetricSource | None,
        tracer: Tracer | None,
        training: Training,
    ) -> Outcome:
        try:
            spec = parse_spec(OptimizationPolicySpec, self.body.get("spec"))
        except InvalidSpec as exc:
            return self.out(False, "InvalidSpec", str(exc))
        name = spec.target_ref.name
        body = read_llmconfig(custom, self.namespace, name)
        if body is None:
            return self.out(
                False, "TargetNotFound", f"spec.targetRef.name: LLMConfig {name} not found"
            )
        try:
            target = LLMConfigObject.parse(body)
        except InvalidSpec as exc:
            return self.out(False, "TargetNotReady", f"LLMConfig {name}: {exc}")
        if target.stable is None:
            return self.out(False, "TargetNotReady", "the LLMConfig has no stable version yet")
        if (
            spec.strategy == "bandit"
            and proposal.bandit_points(spec, target.stable.model_config_part()) is None
        ):
            return self.out(
                False,
                "InvalidSpec",
                f"spec.strategy: bandit needs a discrete search space (categorical or stepped "
                f"parameters) of at most {proposal.BANDIT_ARMS + 1} configurations",
            )
        stable_config = target.stable.model_config_part()
        spec = router_retrain.effective_spec(spec, stable_config, self.name)
        history = self.history
        c = self.state = CycleState(
            body=self.body,
            spec=spec,
            target=target,
            stable=target.stable,
            status=self.status,
            custom=custom,
            metrics=PolicyMetrics(source, spec, self.namespace),
            history=history,
            now=self.now,
            events=self.events,
        )
        history.load()
        phase = _phases(tracer, self.name, self.namespace)
        self.status.state = "Collecting"
        forced = None
        with phase("observe"):
            _observe(c)
            if spec.rules:  # safety first: the rules run every cycle, whatever else runs
                with phase("rules"):
                    forced = apply_rules(c, c.target.status.active_rollout)
            if forced == DONE or settle(c):
                return self.ready()
        if retrain_step.due_now(c):
            with phase("retrain"):
                if retrain_step.retrain(c, training):
                    return self.ready()
        with phase("orient"):
            _summarize(c)
        with phase("decide"):
            trigger = _gates(c, forced)
        if trigger is not None:
            with phase("act"):
                _act(c, trigger)
        return self.ready()


def _phases(tracer: Tracer | None, policy: str, namespace: str) -> Any:
    """A span per loop phase (observe, orient, decide, act) when tracing is on."""

    def phase(name: str) -> Any:
        if tracer is None:
            return contextlib.nullcontext()
        attributes = {"llmopt.policy": policy, "llmopt.namespace": namespace}
        return tracer.span(f"loop.{name}", attributes)

    return phase


def _observe(c: CycleState) -> None:
    """Refresh the stable config's windowed aggregates and baselines every
    ``spec.observe.every``; Prometheus trouble is noted, never fatal."""
    s, source = c.status, c.metrics.source
    if source is None:
        return
    last = parse_optional(s.observation.observed_at) if s.observation else None
    if last is not None and (c.now - last).total_seconds() < parse_duration(c.spec.observe.every):
        return
    try:
        s.observation, s.baselines = observe_stable(
            source,
            c.spec,
            s,
            namespace=c.namespace,
            history=c.target.status.history,
            now=c.now,
            price_of=list_price,
        )
        c.fresh_baselines = list(s.baselines)
    except MetricsUnavailable as exc:
        if s.observation is not None:
            s.observation.message = f"refresh failed: {exc}"


def _summarize(c: CycleState) -> None:
    s = c.status
    records = s.trial_records
    finished = len([r for r in records if r.state != "Running"])
    changed = finished != s.trials
    s.trials = finished
    s.pareto_front = optimizer.pareto_front(records, c.spec.objectives)
    s.best = optimizer.choose(records, c.spec.objectives, s.pareto_front)
    s.best_hash = s.best.hash if s.best else None
    if changed and len(records) >= 3:  # fANOVA is not cheap: only when a trial ended
        s.importance = optimizer.importance(c.study.study())


def _stop(c: CycleState, stop: gates.Stop) -> None:
    """The cycle ends at a gate: its state and message (and Decision, if it just closed)."""
    c.status.state = stop.state
    if stop.decision is not None:
        c.decide(stop.decision, stop.message)
    c.status.message = stop.message


def _gates(c: CycleState, forced: str | None) -> str | None:
    """The seed's decision order; the trigger that lets the optimizer propose, or None.
    ``forced``: a rule that asked for a trial now (the rules ran before)."""
    s, spec = c.status, c.spec
    stop = gates.breaker(spec, s, c.now)
    if stop is not None:
        _stop(c, stop)
        return None
    active = c.target.status.active_rollout
    arrived = policy_quality.quality_arrived(c)
    if arrived is False:
        return None  # no trial could be judged without quality scores; said why
    created = parse_optional(c.body["metadata"].get("creationTimestamp"))
    trigger = due(spec.schedule, s, c.target, c.metrics.source, c.now, c.namespace, created)
    if forced is not None:
        trigger = forced
    if arrived and trigger is None:
        trigger = "quality scores arrived"
    if trigger is None:
        _stop(c, gates.Stop("Idle", "waiting for a trigger"))
        return None
    stop = gates.budgets(spec, s, c.now, active)
    if stop is not None:
        _stop(c, stop)
        return None
    anomaly = stable_anomaly(c.metrics, stable_variant_id(c.stable.version))
    if anomaly:
        c.say("Idle", f"not stable: {anomaly}; no experiment while the baseline is disturbed")
        return None
    return trigger


def _act(c: CycleState, trigger: str) -> None:
    s = c.status
    s.last_cycle_time = format_ts(c.now)
    try:
        propose(c, trigger)
    except (ApiException, ValueError, RuntimeError) as exc:
        # Graceful degradation: the rules ran first; keep the current config and say why.
        s.state = "Idle"
        c.decide("OptimizerFailed", f"optimizer step failed, current config kept: {exc}")
        s.message = s.last_decision


def run_cycle(
    body: dict[str, Any],
    *,
    custom: client.CustomObjectsApi,
    source: MetricSource | None,
    now: datetime | None = None,
    tracer: Tracer | None = None,
    store: HistoryStore | None = None,
    training: Training | None = None,
) -> Outcome:
    """One cycle of the policy's loop."""
    now = now or datetime.now(UTC)
    training = training or Training()
    try:
        cycle = Cycle(body, now, store)
        if tracer is None:
            return cycle.run(custom, source, tracer, training)
        with tracer.span("policy.cycle", {"llmopt.policy": cycle.name}):
            return cycle.run(custom, source, tracer, training)
    except optimizer.SamplerUnavailable as exc:
        return Cycle(body, now, None).out(False, "SamplerUnavailable", str(exc))
