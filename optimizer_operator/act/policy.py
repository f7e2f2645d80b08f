"""One cycle of an OptimizationPolicy's control loop, closed through Rollouts.

Order of a cycle (the seed's decision order):

1. settle running trials: a trial's Rollout walks the policy's steps and then
   pauses at a final gate; there the candidate and stable are measured side by
   side over the same span, and the policy promotes the candidate only when it
   meets every constraint and improves the weighted objectives by more than
   ``budgets.minImprovement`` — otherwise it aborts it. A Rollout that rolled
   back is told to the study as infeasible (or failed when nothing could be
   measured), never dropped;
2. triggers due and cooldown satisfied; the circuit breaker closed; budgets left;
3. the system stable: no Rollout active on the LLMConfig;
4. ask the study for a candidate (the stable config first, as the baseline);
   validate it before any traffic moves (quarantine, projected daily cost);
5. ``recommend``: write it to status; ``auto``: record the trial, then create
   its Rollout (``<policy>-t<number>``, so a restart never creates two).

Missing metrics never decide anything: the cycle waits (state Collecting).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from ..api.common import GROUP, VERSION, parse_decimal, parse_duration
from ..api.conditions import set_condition
from ..api.llmconfig import ModelConfig
from ..api.policy import OptimizationPolicySpec, OptimizationPolicyStatus, TrialRecord
from ..api.rollout import AnalysisStep, PauseStep, Step
from ..api.validation import InvalidSpec, parse_spec
from ..decide import optimizer
from ..decide.triggers import due
from ..observe.prometheus import BUILTIN, MetricSource, MetricsUnavailable, render
from .configmap import REQUEST_TIMEOUT
from .llmconfig import Outcome
from .ownership import owner_reference
from .targets import read_llmconfig
from .variants import stable_record, stable_variant_id

RECORDS_KEPT = 200
DEFAULT_STEPS = [
    Step(set_weight=10),
    Step(analysis=AnalysisStep(measurements=3)),
    Step(set_weight=50),
    Step(analysis=AnalysisStep(measurements=3)),
]
REQUESTS_RATE = 'sum(rate(llmopt_requests_total{llm_config="{{llm_config}}"}[{{window}}]))'


def _ts(now: datetime) -> str:
    return now.strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(ts: str | None) -> datetime | None:
    return None if ts is None else datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


class Cycle:
    """The state one cycle works on; ``run`` returns the Outcome to write."""

    def __init__(
        self,
        body: dict[str, Any],
        *,
        custom: client.CustomObjectsApi,
        source: MetricSource | None,
        now: datetime,
    ) -> None:
        self.body, self.custom, self.source, self.now = body, custom, source, now
        self.meta = body["metadata"]
        self.namespace, self.name = self.meta["namespace"], self.meta["name"]
        raw = dict(body.get("status") or {})
        self.conditions = raw.get("conditions")
        self.status = OptimizationPolicyStatus.model_validate(
            {k: v for k, v in raw.items() if k not in ("conditions", "observedGeneration")}
        )
        self.events: list[tuple[str, str, str]] = []

    # -- outcome ----------------------------------------------------------

    def _out(self, ok: bool, reason: str, message: str) -> Outcome:
        s = self.status
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
            now=_ts(self.now),
        )
        events = self.events if ok else [*self.events, ("Warning", reason, message)]
        return Outcome(status=wire, events=events)

    def _decide(self, reason: str, message: str, event: bool = True) -> None:
        self.status.last_decision = message
        if event:
            self.events.append(("Normal", reason, message))

    # -- metrics ----------------------------------------------------------

    def _metric_template(self, spec: OptimizationPolicySpec, metric: str) -> str:
        custom = {m.name: m.query for m in spec.metrics}
        template = custom.get(metric) or BUILTIN.get(metric, ("", ""))[0]
        if not template:
            raise MetricsUnavailable(f"no query for metric {metric}")
        return template

    def _values(
        self, spec: OptimizationPolicySpec, llm_config: str, variant: str, seconds: float
    ) -> dict[str, float]:
        """Objective and constraint metrics of one variant over the last ``seconds``."""
        if self.source is None:
            raise MetricsUnavailable("no Prometheus configured (LLMOPT_PROMETHEUS_URL)")
        wanted = [o.metric for o in spec.objectives]
        c = spec.constraints
        for metric, bound in (
            ("latency_p95_seconds", c.max_latency_p95_seconds),
            ("error_rate", c.max_error_rate),
            ("quality_score", c.min_quality),
            ("cost_per_request_usd", c.max_cost_per_request_usd or c.max_daily_cost_usd),
        ):
            if bound is not None and metric not in wanted:
                wanted.append(metric)
        window = f"{max(int(seconds), 10)}s"
        return {
            m: self.source.value(
                render(
                    self._metric_template(spec, m),
                    llm_config=llm_config,
                    variant=variant,
                    namespace=self.namespace,
                    window=window,
                )
            )
            for m in wanted
        }

    def _daily_requests(self, llm_config: str, seconds: float) -> float | None:
        if self.source is None:
            return None
        try:
            rate = self.source.value(
                render(
                    REQUESTS_RATE,
                    llm_config=llm_config,
                    variant="",
                    namespace=self.namespace,
                    window=f"{max(int(seconds), 10)}s",
                )
            )
        except MetricsUnavailable:
            return None
        return rate * 86400

    def _judge(
        self,
        spec: OptimizationPolicySpec,
        record: TrialRecord,
        values: dict[str, float],
        daily: float | None,
        extra: dict[str, float] | None = None,
    ) -> None:
        record.values = [f"{values[o.metric]:.6g}" for o in spec.objectives]
        cons = {**optimizer.constraint_values(spec.constraints, values, daily), **(extra or {})}
        record.constraints = {k: f"{v:.6g}" for k, v in cons.items()}

    # -- rollouts ---------------------------------------------------------

    def _rollout(self, name: str) -> dict[str, Any] | None:
        try:
            obj: dict[str, Any] = self.custom.get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, "rollouts", name, _request_timeout=REQUEST_TIMEOUT
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return obj

    def _patch_rollout(self, name: str, spec: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            self.namespace,
            "rollouts",
            name,
            {"spec": spec},
            _request_timeout=REQUEST_TIMEOUT,
        )

    def _create_rollout(
        self, spec: OptimizationPolicySpec, record: TrialRecord, config: ModelConfig
    ) -> None:
        template = spec.rollout_template
        rollout_spec: dict[str, Any] = {
            "targetRef": {"name": spec.target_ref.name},
            "candidate": config.to_wire(),
            "strategy": template.strategy,
            "analysis": template.analysis.to_wire(),
            "trial": {"policy": self.name, "number": record.number},
        }
        if template.strategy == "canary":
            steps = list(template.steps or DEFAULT_STEPS)
            # The final gate: the policy judges the objectives here, then promotes or aborts.
            rollout_spec["steps"] = [s.to_wire() for s in [*steps, Step(pause=PauseStep())]]
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Rollout",
            "metadata": {
                "name": record.rollout,
                "namespace": self.namespace,
                "labels": {f"{GROUP}/policy": self.name},
                "ownerReferences": [owner_reference(self.body)],
            },
            "spec": rollout_spec,
        }
        try:
            self.custom.create_namespaced_custom_object(
                GROUP, VERSION, self.namespace, "rollouts", body, _request_timeout=REQUEST_TIMEOUT
            )
        except ApiException as exc:
            if exc.status != 409:  # 409: created before a restart; the same trial
                raise

    # -- settle -----------------------------------------------------------

    def _settle(self, spec: OptimizationPolicySpec, llmc: dict[str, Any]) -> bool:
        """Bring running trials forward; True while one still runs."""
        running = False
        llm_config = spec.target_ref.name
        for record in self.status.trial_records:
            if record.state != "Running":
                continue
            if record.rollout is None:  # the baseline: stable measured as it runs
                window = parse_duration(spec.rollout_template.analysis.window)
                stable = stable_record(llmc)
                assert stable is not None
                try:
                    values = self._values(
                        spec, llm_config, stable_variant_id(stable.version), window
                    )
                except MetricsUnavailable as exc:
                    self.status.state = "Collecting"
                    self.status.message = (
                        f"baseline trial {record.number}: waiting for data ({exc})"
                    )
                    running = True
                    continue
                self._judge(spec, record, values, self._daily_requests(llm_config, window))
                self._finish(record, "Complete", "Baseline", "the stable configuration, measured")
                continue
            if not self._settle_rollout(spec, record):
                running = True
        return running

    def _finish(self, record: TrialRecord, state: str, outcome: str, reason: str) -> None:
        record.state, record.outcome, record.reason = state, outcome, reason  # type: ignore[assignment]
        record.finished_at = _ts(self.now)
        failed = outcome in ("RolledBack", "Failed")
        self.status.consecutive_failures = self.status.consecutive_failures + 1 if failed else 0
        self._decide(
            f"Trial{outcome}", f"trial {record.number} ({record.params}): {outcome}: {reason}"
        )

    def _settle_rollout(self, spec: OptimizationPolicySpec, record: TrialRecord) -> bool:
        """True when the trial is settled (or just decided)."""
        assert record.rollout is not None
        ro = self._rollout(record.rollout)
        if ro is None:
            self._finish(record, "Failed", "Failed", f"Rollout {record.rollout} was deleted")
            return True
        st = ro.get("status") or {}
        phase = st.get("phase")
        started = _parse(st.get("startedAt")) or self.now
        span = max((self.now - started).total_seconds(), 10.0)
        canary, stable = st.get("canaryVariant"), st.get("stableVariant")
        steps = (ro.get("spec") or {}).get("steps") or []
        at_gate = (
            phase == "Paused"
            and (ro.get("spec") or {}).get("strategy", "canary") == "canary"
            and st.get("currentStepIndex") == len(steps) - 1
        )
        if at_gate and record.values is None and canary and stable:
            try:
                c_values = self._values(spec, spec.target_ref.name, canary, span)
                s_values = self._values(spec, spec.target_ref.name, stable, span)
            except MetricsUnavailable as exc:
                self.status.state = "Collecting"
                self.status.message = f"trial {record.number}: waiting for data ({exc})"
                return False
            daily = self._daily_requests(spec.target_ref.name, span)
            self._judge(spec, record, c_values, daily)
            gain = optimizer.improvement(spec.objectives, c_values, s_values)
            record.score = f"{gain:.4g}"
            threshold = float(parse_decimal(spec.budgets.min_improvement))
            broken = [k for k, v in record.constraints.items() if float(v) > 0]
            if broken:
                record.reason = f"violates {', '.join(broken)}"
                self._patch_rollout(record.rollout, {"abort": True})
            elif gain <= threshold:
                record.reason = f"improvement {gain:+.2%} not above {threshold:.2%}"
                self._patch_rollout(record.rollout, {"abort": True})
            else:
                record.reason = f"improvement {gain:+.2%} over stable, all constraints hold"
                self._patch_rollout(record.rollout, {"promote": True})
            self.status.state = "Deploying"
            return False
        if phase == "Promoted":
            if record.values is None:
                self._measure_after(spec, record, canary, span, {})
            if record.values is None:
                self._finish(record, "Failed", "Failed", "promoted before it could be measured")
            else:
                self._finish(record, "Complete", "Promoted", record.reason or st.get("message", ""))
            return True
        if phase in ("RolledBack", "Aborted", "Failed"):
            if record.values is not None and record.reason:  # aborted by us at the gate
                infeasible = any(float(v) > 0 for v in record.constraints.values())
                self._finish(
                    record, "Complete", "Infeasible" if infeasible else "NotBetter", record.reason
                )
                return True
            why = st.get("message") or phase
            extra = {"rollout": 1.0}  # rolled back on evidence: infeasible, never dropped
            self._measure_after(spec, record, canary, span, extra)
            if record.values is None:
                self._finish(record, "Failed", "Failed", f"{phase}: {why}; not measurable")
            else:
                self._finish(record, "Complete", "RolledBack", why)
            return True
        self.status.state = "Monitoring"
        self.status.message = f"trial {record.number}: Rollout {record.rollout} is {phase}"
        return False

    def _measure_after(
        self,
        spec: OptimizationPolicySpec,
        record: TrialRecord,
        variant: str | None,
        span: float,
        extra: dict[str, float],
    ) -> None:
        if variant is None:
            return
        try:
            values = self._values(spec, spec.target_ref.name, variant, span)
        except MetricsUnavailable:
            return
        self._judge(spec, record, values, self._daily_requests(spec.target_ref.name, span), extra)

    # -- the cycle --------------------------------------------------------

    def run(self) -> Outcome:
        try:
            spec = parse_spec(OptimizationPolicySpec, self.body.get("spec"))
        except InvalidSpec as exc:
            return self._out(False, "InvalidSpec", str(exc))
        llmc = read_llmconfig(self.custom, self.namespace, spec.target_ref.name)
        if llmc is None:
            return self._out(
                False,
                "TargetNotFound",
                f"spec.targetRef.name: LLMConfig {spec.target_ref.name} not found",
            )
        stable = stable_record(llmc)
        if stable is None:
            return self._out(False, "TargetNotReady", "the LLMConfig has no stable version yet")
        s = self.status
        s.state = "Collecting"
        if self._settle(spec, llmc):
            return self._ready(spec)
        self._summarize(spec, stable.model_config_part())

        # Gates, in the seed's order.
        breaker = _parse(s.breaker_open_until)
        if breaker is not None and self.now < breaker:
            s.state = "Idle"
            s.message = f"circuit breaker open until {s.breaker_open_until}"
            return self._ready(spec)
        if s.consecutive_failures >= spec.budgets.max_consecutive_failures:
            s.breaker_open_until = _ts(
                self.now + timedelta(seconds=parse_duration(spec.budgets.cool_off))
            )
            s.consecutive_failures = 0
            s.state = "Idle"
            self._decide(
                "CircuitBreakerOpen",
                f"{spec.budgets.max_consecutive_failures} failed trials in a row: no proposals "
                f"until {s.breaker_open_until}",
            )
            s.message = s.last_decision
            return self._ready(spec)
        s.breaker_open_until = None
        trigger = due(spec.schedule, s, llmc, self.source, self.now, self.namespace)
        if trigger is None:
            s.state = "Idle"
            s.message = "waiting for a trigger"
            return self._ready(spec)
        ends = [_parse(r.finished_at) for r in s.trial_records if r.rollout and r.finished_at]
        last_end = max((e for e in ends if e is not None), default=None)
        cooldown = parse_duration(spec.schedule.cooldown)
        if last_end is not None and (self.now - last_end).total_seconds() < cooldown:
            s.state = "Idle"
            s.message = f"cooldown {spec.schedule.cooldown} since the last trial's rollout"
            return self._ready(spec)
        if spec.budgets.max_trials is not None and len(s.trial_records) >= spec.budgets.max_trials:
            s.state = "Idle"
            s.message = f"budget spent: {len(s.trial_records)} of {spec.budgets.max_trials} trials"
            return self._ready(spec)
        today = [
            r
            for r in s.trial_records
            if r.rollout and (self.now - (_parse(r.started_at) or self.now)).days < 1
        ]
        if spec.mode == "auto" and len(today) >= spec.budgets.max_rollouts_per_day:
            s.state = "Idle"
            s.message = f"{len(today)} rollouts in the last day (budgets.maxRolloutsPerDay)"
            return self._ready(spec)
        active = (llmc.get("status") or {}).get("activeRollout")
        if active:
            s.state = "Monitoring"
            s.message = f"not stable: Rollout {active} is active on the LLMConfig"
            return self._ready(spec)
        s.last_cycle_time = _ts(self.now)
        self._propose(spec, llmc, stable.model_config_part(), trigger)
        return self._ready(spec)

    def _ready(self, spec: OptimizationPolicySpec) -> Outcome:
        return self._out(True, "Accepted", self.status.message or self.status.state or "")

    def _propose(
        self,
        spec: OptimizationPolicySpec,
        llmc: dict[str, Any],
        stable: ModelConfig,
        trigger: str,
    ) -> None:
        s = self.status
        s.state = "Deciding"
        study = optimizer.build_study(spec, s.trial_records, stable)
        optimizer.warm_start(study, spec, stable)
        proposal = optimizer.ask(study, spec, stable)
        number = proposal.trial.number
        record = TrialRecord(
            number=number,
            params=proposal.params,
            hash=proposal.config.config_hash(),
            state="Running",
            started_at=_ts(self.now),
        )
        if record.hash == stable.config_hash():
            s.trial_records.append(record)  # the baseline: measured on stable's traffic
            self._decide("TrialStarted", f"trial {number}: baseline, the stable config ({trigger})")
            s.state = "Collecting"
            s.message = s.last_decision
            return
        seen = next(
            (r for r in s.trial_records if r.hash == record.hash and r.state == "Complete"), None
        )
        if seen is not None:  # the sampler asked again for a config already measured
            record.values, record.constraints = seen.values, dict(seen.constraints)
            record.state, record.outcome = "Complete", "Duplicate"
            record.reason = f"same config as trial {seen.number}"
            record.finished_at = _ts(self.now)
            s.trial_records.append(record)
            s.message = f"trial {number}: {record.reason}; told its result again"
            return
        quarantined = {e.get("hash") for e in (llmc.get("status") or {}).get("quarantine") or []}
        if record.hash in quarantined:
            self._record(
                record, "Failed", "Quarantined", "rolled back before (LLMConfig quarantine)"
            )
            return
        s.state = "Validating"
        if spec.mode == "recommend":
            record.outcome, record.reason = "Recommended", f"mode recommend ({trigger})"
            s.recommendation = record
            s.state = "Idle"
            self._decide(
                "Recommendation",
                f"recommend {proposal.config.model} {record.params} (mode recommend: no rollout)",
            )
            s.message = s.last_decision
            return
        record.rollout = f"{self.name}-t{number}"
        s.trial_records.append(record)
        s.trial_records = s.trial_records[-RECORDS_KEPT:]
        self._create_rollout(spec, record, proposal.config)  # after the record: restart-safe
        s.state = "Deploying"
        self._decide(
            "TrialStarted",
            f"trial {number}: Rollout {record.rollout} for {proposal.config.model} "
            f"{record.params} ({trigger})",
        )
        s.message = s.last_decision

    def _record(self, record: TrialRecord, state: str, outcome: str, reason: str) -> None:
        self.status.trial_records.append(record)
        record.state, record.outcome, record.reason = state, outcome, reason  # type: ignore[assignment]
        record.finished_at = _ts(self.now)
        self._decide(f"Trial{outcome}", f"trial {record.number}: {outcome}: {reason}")
        self.status.message = self.status.last_decision

    def _summarize(self, spec: OptimizationPolicySpec, stable: ModelConfig) -> None:
        records = self.status.trial_records
        self.status.trials = len([r for r in records if r.state != "Running"])
        front = optimizer.pareto_front(records, spec.objectives)
        self.status.pareto_front = front
        best = optimizer.choose(records, spec.objectives, front)
        self.status.best = best
        self.status.best_hash = best.hash if best else None
        if len(records) >= 3:
            study = optimizer.build_study(spec, records, stable)
            self.status.importance = optimizer.importance(study)


def run_cycle(
    body: dict[str, Any],
    *,
    custom: client.CustomObjectsApi,
    source: MetricSource | None,
    now: datetime | None = None,
) -> Outcome:
    """One cycle of the policy's loop."""
    try:
        return Cycle(body, custom=custom, source=source, now=now or datetime.now(UTC)).run()
    except optimizer.SamplerUnavailable as exc:
        cycle = Cycle(body, custom=custom, source=source, now=now or datetime.now(UTC))
        return cycle._out(False, "SamplerUnavailable", str(exc))
