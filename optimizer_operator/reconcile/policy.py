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

import contextlib
import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import optuna
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from ..act import rollouts
from ..act.llmconfigs import read_llmconfig
from ..act.outcome import Outcome
from ..act.variants import stable_record
from ..analysis.baselines import observe_stable
from ..analysis.measurement import Variants, check_triggers
from ..analysis.orient import detect_anomaly
from ..api.common import GROUP, parse_decimal, parse_duration
from ..api.conditions import set_condition
from ..api.llmconfig import ModelConfig, Parameters
from ..api.policy import (
    BaselineResult,
    OptimizationPolicySpec,
    OptimizationPolicyStatus,
    Rule,
    RuleCondition,
    RuleEvaluation,
    TrialRecord,
    request_bounds,
)
from ..api.rollout import Step
from ..api.timestamps import format_ts as _ts
from ..api.timestamps import parse_optional as _parse
from ..api.validation import InvalidSpec, parse_spec
from ..api.variants import canary_variant_id, stable_variant_id
from ..decide import gates, optimizer, predictor, rules, trials
from ..decide.triggers import due
from ..observe.prometheus import (
    BUILTIN,
    REQUESTS,
    REQUESTS_RATE,
    MetricSource,
    MetricsUnavailable,
    render,
)
from ..providers.catalog import list_price
from ..store import StoreUnavailable
from ..tracing import Tracer

if TYPE_CHECKING:
    from ..store.postgres import HistoryStore

RECORDS_KEPT = 200
BANDIT_ARMS = 8  # the Rollout's candidate plus its 7 arms


class Cycle:
    """The state one cycle works on; ``run`` returns the Outcome to write."""

    def __init__(
        self,
        body: dict[str, Any],
        *,
        custom: client.CustomObjectsApi,
        source: MetricSource | None,
        now: datetime,
        tracer: Tracer | None = None,
        store: HistoryStore | None = None,
    ) -> None:
        self.body, self.custom, self.source, self.now = body, custom, source, now
        self.tracer, self.store = tracer, store
        self._store_error: str | None = None
        # What this cycle adds to the history store besides trials and decisions.
        self._llmc: dict[str, Any] = {}
        self._fresh_rules: list[RuleEvaluation] = []
        self._fresh_baselines: list[BaselineResult] = []
        self._built: optuna.Study | None = None
        self._persistent = False  # _built lives in Optuna's RDBStorage
        self.meta = body["metadata"]
        self.namespace, self.name = self.meta["namespace"], self.meta["name"]
        raw = dict(body.get("status") or {})
        self.conditions = raw.get("conditions")
        self.status = OptimizationPolicyStatus.model_validate(
            {k: v for k, v in raw.items() if k not in ("conditions", "observedGeneration")}
        )
        self.events: list[tuple[str, str, str]] = []

    # -- outcome ----------------------------------------------------------

    def _load_history(self) -> None:
        """Merge the trials PostgreSQL holds (all of them) with those in status (the
        recent ones, freshest for the numbers both have)."""
        if self.store is None:
            return
        try:
            stored = self.store.load(self.namespace, self.name)
        except StoreUnavailable as exc:
            self._store_down(str(exc))
            return
        mine = {r.number: r for r in self.status.trial_records}
        merged = {r.number: r for r in stored}
        merged.update(mine)
        self.status.trial_records = [merged[n] for n in sorted(merged)]

    def _save_history(self) -> None:
        s = self.status
        if self.store is None or self._store_error is not None:
            return  # none configured, or it failed already this cycle
        try:
            self.store.save(
                self.namespace,
                self.name,
                s.trial_records,
                [(reason, message) for _, reason, message in self.events],
                llmconfig=(self._llmc.get("metadata") or {}).get("name"),
                versions=(self._llmc.get("status") or {}).get("history") or [],
                baselines=self._fresh_baselines,
                rules=self._fresh_rules,
            )
        except StoreUnavailable as exc:
            self._store_down(str(exc))
            return
        if (s.history_store or "").startswith("unavailable"):
            self.events.append(("Normal", "HistoryStoreAvailable", "PostgreSQL history is back"))
        s.history_store = "ok"

    def _store_down(self, why: str) -> None:
        s = self.status
        if self._store_error is None and not (s.history_store or "").startswith("unavailable"):
            self.events.append(
                (
                    "Warning",
                    "HistoryStoreUnavailable",
                    f"PostgreSQL history unavailable, carrying on from status: {why}",
                )
            )
        self._store_error = why
        s.history_store = f"unavailable: {why}"

    def _out(self, ok: bool, reason: str, message: str) -> Outcome:
        s = self.status
        self._save_history()
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
        bounded = [c.metric for c, _ in request_bounds(spec.constraints)]
        if spec.constraints.max_daily_cost_usd is not None:
            bounded.append("cost_per_request_usd")  # the daily projection needs it
        wanted += [m for m in dict.fromkeys(bounded) if m not in wanted]
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
        record.metrics = {k: f"{v:.6g}" for k, v in values.items()}
        cons = {**optimizer.constraint_values(spec.constraints, values, daily), **(extra or {})}
        record.constraints = {k: f"{v:.6g}" for k, v in cons.items()}

    # -- rollouts ---------------------------------------------------------

    def _rollout(self, name: str) -> dict[str, Any] | None:
        return rollouts.read_rollout(self.custom, self.namespace, name)

    def _patch_rollout(self, name: str, spec: dict[str, Any]) -> None:
        rollouts.patch_rollout_spec(self.custom, self.namespace, name, spec)

    def _create_rollout(
        self,
        spec: OptimizationPolicySpec,
        record: TrialRecord,
        config: ModelConfig,
        divisor: int,
    ) -> None:
        """Created after the record is written, so a restart in between finds the record
        and creates the same Rollout once."""
        assert record.rollout is not None
        self._create(
            spec,
            record.rollout,
            config,
            steps=trials.trial_steps(spec, divisor),
            trial={"policy": self.name, "number": record.number},
            annotations={
                f"{GROUP}/prediction": json.dumps(record.prediction, sort_keys=True),
                f"{GROUP}/prediction-confidence": record.confidence or "low",
            },
        )

    def _create(
        self,
        spec: OptimizationPolicySpec,
        name: str,
        config: ModelConfig,
        *,
        steps: list[Step] | None,
        trial: dict[str, Any] | None,
        annotations: dict[str, str] | None = None,
        bandit: dict[str, Any] | None = None,
    ) -> None:
        template = spec.rollout_template
        rollout_spec: dict[str, Any] = {
            "targetRef": {"name": spec.target_ref.name},
            "candidate": config.to_wire(),
            "strategy": template.strategy if steps is None or trial else "canary",
            "analysis": trials.trial_analysis(spec).to_wire(),
        }
        if trial is not None:
            rollout_spec["trial"] = trial
        if bandit is not None:
            rollout_spec["strategy"], rollout_spec["bandit"] = "bandit", bandit
        if rollout_spec["strategy"] == "canary":
            rollout_spec["steps"] = [
                s.to_wire() for s in (steps or template.steps or trials.DEFAULT_STEPS)
            ]
        body = rollouts.build_rollout(
            name,
            self.namespace,
            rollout_spec,
            labels={f"{GROUP}/policy": self.name},
            annotations=annotations or {},
            owner=self.body,
        )
        rollouts.create_rollout(self.custom, body)

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
                variant = stable_variant_id(stable.version)
                try:
                    # As a canary step would: no judgement on fewer than minSampleSize
                    # requests in the window (a fresh version's first seconds are noise).
                    if self.source is not None:
                        seen = self.source.value(
                            render(
                                REQUESTS,
                                llm_config=llm_config,
                                variant=variant,
                                namespace=self.namespace,
                                window=f"{int(window)}s",
                            )
                        )
                        needed = spec.rollout_template.analysis.min_sample_size
                        if seen < needed:
                            raise MetricsUnavailable(
                                f"{seen:.0f} of {needed} requests in the window"
                            )
                    values = self._values(spec, llm_config, variant, window)
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
            if not self._settle_rollout(spec, record, llmc):
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

    def _settle_rollout(
        self, spec: OptimizationPolicySpec, record: TrialRecord, llmc: dict[str, Any]
    ) -> bool:
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
        if (ro.get("spec") or {}).get("strategy") == "bandit":
            return self._settle_arm(spec, record, ro, span, llmc)
        canary, stable = st.get("canaryVariant"), st.get("stableVariant")
        steps = (ro.get("spec") or {}).get("steps") or []
        at_gate = (
            phase == "Paused"
            and (ro.get("spec") or {}).get("strategy", "canary") == "canary"
            and st.get("currentStepIndex") == len(steps) - 1
        )
        if at_gate and record.values is None and canary and stable:
            return self._gate(spec, record, st, canary, stable, span)
        if phase == "Promoted":
            if record.values is None:
                self._measure_after(spec, record, canary, span, {})
            if record.values is None:
                self._finish(record, "Failed", "Failed", "promoted before it could be measured")
            else:
                self._finish(record, "Complete", "Promoted", record.reason or st.get("message", ""))
            return True
        if phase in ("RolledBack", "Aborted", "Failed"):
            self._settle_ended(spec, record, st, canary, span)
            return True
        self.status.state = "Monitoring"
        self.status.message = f"trial {record.number}: Rollout {record.rollout} is {phase}"
        return False

    def _settle_ended(
        self,
        spec: OptimizationPolicySpec,
        record: TrialRecord,
        st: dict[str, Any],
        canary: str | None,
        span: float,
    ) -> None:
        """A trial whose Rollout ended without promotion: inconclusive (no verdict),
        aborted at our gate (infeasible or not better), or rolled back on evidence."""
        phase = str(st.get("phase"))
        if record.outcome == "Inconclusive" or trials.ended_inconclusive(st):
            # Neither side of a bound was shown: told as what it is (Optuna FAIL, no
            # verdict), never as infeasible; the config may be tried again later.
            if record.values is None:
                self._measure_after(spec, record, canary, span, {})
            why = record.reason or st.get("message") or phase
            self._finish(record, "Failed", "Inconclusive", why)
            return
        if record.values is not None and record.reason:  # aborted by us at the gate
            infeasible = any(float(v) > 0 for v in record.constraints.values())
            self._finish(
                record, "Complete", "Infeasible" if infeasible else "NotBetter", record.reason
            )
            return
        why = st.get("message") or phase
        extra = {"rollout": 1.0}  # rolled back on evidence: infeasible, never dropped
        self._measure_after(spec, record, canary, span, extra)
        if record.values is None:
            self._finish(record, "Failed", "Failed", f"{phase}: {why}; not measurable")
        else:
            self._finish(record, "Complete", "RolledBack", why)

    def _gate(
        self,
        spec: OptimizationPolicySpec,
        record: TrialRecord,
        st: dict[str, Any],
        canary: str,
        stable: str,
        span: float,
    ) -> bool:
        """The final gate: promote only when every per-request constraint confidently
        holds and the weighted objectives improve enough; abort when one is confidently
        broken (or the daily cost projection is over) or no improvement; keep collecting
        while a bound is undecided, up to the template's ``bounds.maxUndecided``."""
        assert record.rollout is not None
        analysis = spec.rollout_template.analysis
        variants = Variants(spec.target_ref.name, self.namespace, stable=stable, canary=canary)
        try:
            c_values = self._values(spec, spec.target_ref.name, canary, span)
            s_values = self._values(spec, spec.target_ref.name, stable, span)
            assert self.source is not None  # _values raised otherwise
            bounds = check_triggers(
                trials.constraint_triggers(spec), analysis, self.source, variants, span
            )
            if bounds is None:
                raise MetricsUnavailable(
                    f"fewer than {analysis.min_sample_size} candidate requests"
                )
        except MetricsUnavailable as exc:
            self.status.state = "Collecting"
            self.status.message = f"trial {record.number}: waiting for data ({exc})"
            return False
        gate_since = _parse(st.get("stepStartedAt")) or self.now
        waited = (self.now - gate_since).total_seconds()
        limit = analysis.bounds.max_undecided
        if trials.collecting(bounds, waited, limit):
            self.status.state = "Collecting"
            self.status.message = (
                f"trial {record.number}: at the final gate, collecting evidence "
                f"({'; '.join(r.reason for r in bounds if not r.decided)})"
            )
            return False
        self._judge(spec, record, c_values, self._daily_requests(spec.target_ref.name, span))
        gain = optimizer.improvement(spec.objectives, c_values, s_values)
        record.score = f"{gain:.4g}"
        verdict = trials.gate_verdict(
            bounds,
            daily_over=float(record.constraints.get("maxDailyCostUsd", "0")) > 0,
            gain=gain,
            threshold=float(parse_decimal(spec.budgets.min_improvement)),
            limit=limit,
        )
        record.reason = verdict.reason
        if verdict.inconclusive:
            record.outcome = "Inconclusive"
        self._patch_rollout(
            record.rollout, {"promote": True} if verdict.promote else {"abort": True}
        )
        self.status.state = "Deploying"
        return False

    def _settle_arm(
        self,
        spec: OptimizationPolicySpec,
        record: TrialRecord,
        ro: dict[str, Any],
        span: float,
        llmc: dict[str, Any],
    ) -> bool:
        """A bandit arm: measured on its own share once the Rollout has ended."""
        st = ro.get("status") or {}
        phase = st.get("phase")
        if phase not in ("Promoted", "RolledBack", "Aborted", "Failed"):
            self.status.state = "Monitoring"
            self.status.message = f"bandit Rollout {record.rollout} is {phase}"
            return False
        history = (llmc.get("status") or {}).get("history") or [{}]
        won = (
            phase == "Promoted"
            and history[-1].get("hash") == record.hash
            and history[-1].get("source") == f"rollout/{record.rollout}"
        )
        variant = canary_variant_id(record.hash)
        dropped = (st.get("excludedArms") or {}).get(variant)
        self._measure_after(spec, record, variant, span, {"rollout": 1.0} if dropped else {})
        why = f"bandit {phase}: " + (f"dropped ({dropped})" if dropped else st.get("message", ""))
        if record.values is None:
            self._finish(record, "Failed", "Failed", f"{why[:300]}; no measurable data")
        elif won:
            self._finish(record, "Complete", "Promoted", why[:300])
        else:
            infeasible = any(float(v) > 0 for v in record.constraints.values())
            self._finish(record, "Complete", "Infeasible" if infeasible else "NotBetter", why[:300])
        return True

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

    def _phase(self, name: str) -> Any:
        """A span per loop phase (observe, orient, decide, act) when tracing is on."""
        if self.tracer is None:
            return contextlib.nullcontext()
        return self.tracer.span(
            f"loop.{name}", {"llmopt.policy": self.name, "llmopt.namespace": self.namespace}
        )

    def run(self) -> Outcome:
        if self.tracer is None:
            return self._run()
        with self.tracer.span("policy.cycle", {"llmopt.policy": self.name}):
            return self._run()

    def _run(self) -> Outcome:
        try:
            spec = parse_spec(OptimizationPolicySpec, self.body.get("spec"))
        except InvalidSpec as exc:
            return self._out(False, "InvalidSpec", str(exc))
        llmc = read_llmconfig(self.custom, self.namespace, spec.target_ref.name)
        self._llmc = llmc or {}
        if llmc is None:
            return self._out(
                False,
                "TargetNotFound",
                f"spec.targetRef.name: LLMConfig {spec.target_ref.name} not found",
            )
        stable = stable_record(llmc)
        if stable is None:
            return self._out(False, "TargetNotReady", "the LLMConfig has no stable version yet")
        if (
            spec.strategy == "bandit"
            and self._bandit_points(spec, stable.model_config_part()) is None
        ):
            return self._out(
                False,
                "InvalidSpec",
                f"spec.strategy: bandit needs a discrete search space (categorical or stepped "
                f"parameters) of at most {BANDIT_ARMS + 1} configurations",
            )
        self._load_history()
        s = self.status
        s.state = "Collecting"
        with self._phase("observe"):
            self._observe(spec, llmc)
            settling = self._settle(spec, llmc)
        if settling:
            return self._ready(spec)
        with self._phase("orient"):
            self._summarize(spec, stable.model_config_part())
        with self._phase("decide"):
            proceed = self._gates(spec, llmc)
        if proceed is not None:
            with self._phase("act"):
                self._act(spec, llmc, stable.model_config_part(), proceed)
        return self._ready(spec)

    def _observe(self, spec: OptimizationPolicySpec, llmc: dict[str, Any]) -> None:
        """Refresh the stable config's windowed aggregates and baselines every
        ``spec.observe.every``; Prometheus trouble is noted, never fatal."""
        s = self.status
        history = (llmc.get("status") or {}).get("history") or []
        if self.source is None or not history:
            return
        last = _parse(s.observation.observed_at) if s.observation else None
        every = parse_duration(spec.observe.every)
        if last is not None and (self.now - last).total_seconds() < every:
            return
        try:
            s.observation, s.baselines = observe_stable(
                self.source,
                spec,
                s,
                namespace=self.namespace,
                history=history,
                now=self.now,
                price_of=list_price,
            )
            self._fresh_baselines = list(s.baselines)
        except MetricsUnavailable as exc:
            if s.observation is not None:
                s.observation.message = f"refresh failed: {exc}"

    def _gates(self, spec: OptimizationPolicySpec, llmc: dict[str, Any]) -> str | None:
        """The seed's decision order; the trigger that lets the optimizer propose, or None."""
        s = self.status

        # Gates, in the seed's order.
        stop = gates.breaker(spec, s, self.now)
        if stop is not None:
            self._stop(stop)
            return None
        active = (llmc.get("status") or {}).get("activeRollout")
        forced = self._rules(spec, llmc, active) if spec.rules else None
        if forced == "done":
            return None
        trigger = due(spec.schedule, s, llmc, self.source, self.now, self.namespace)
        if forced is not None:
            trigger = forced
        if trigger is None:
            self._stop(gates.Stop("Idle", "waiting for a trigger"))
            return None
        stop = gates.budgets(spec, s, self.now, active)
        if stop is not None:
            self._stop(stop)
            return None
        anomaly = self._stable_anomaly(spec, llmc)
        if anomaly:
            s.state = "Idle"
            s.message = f"not stable: {anomaly}; no experiment while the baseline is disturbed"
            return None
        return trigger

    def _stop(self, stop: gates.Stop) -> None:
        """The cycle ends at a gate: its state and message (and Decision, if it just
        closed)."""
        self.status.state = stop.state
        if stop.decision is not None:
            self._decide(stop.decision, stop.message)
        self.status.message = stop.message

    def _stable_anomaly(self, spec: OptimizationPolicySpec, llmc: dict[str, Any]) -> str | None:
        """A high-severity anomaly on stable's error rate or p95 latency over the last 10
        minutes (no data: nothing to say)."""
        if self.source is None:
            return None
        stable = stable_record(llmc)
        assert stable is not None
        for metric in ("error_rate", "latency_p95_seconds"):
            try:
                series = self.source.series(
                    render(
                        BUILTIN[metric][0],
                        llm_config=spec.target_ref.name,
                        variant=stable_variant_id(stable.version),
                        namespace=self.namespace,
                        window="1m",
                    ),
                    600,
                    30,
                )
            except MetricsUnavailable:
                continue
            found = detect_anomaly(series)
            if found is not None and found.severity == "high":
                return f"{metric} anomaly ({found.value:.4g}, robust z {found.score:.1f})"
        return None

    def _act(
        self, spec: OptimizationPolicySpec, llmc: dict[str, Any], stable: ModelConfig, trigger: str
    ) -> None:
        s = self.status
        s.last_cycle_time = _ts(self.now)
        try:
            self._propose(spec, llmc, stable, trigger)
        except (ApiException, ValueError, RuntimeError) as exc:
            # Graceful degradation: the rules ran first; keep the current config and say why.
            s.state = "Idle"
            self._decide("OptimizerFailed", f"optimizer step failed, current config kept: {exc}")
            s.message = s.last_decision

    # -- rules ------------------------------------------------------------

    def _rule_series(
        self, spec: OptimizationPolicySpec, rule: Rule | RuleCondition, variant: str
    ) -> float | None:
        if self.source is None:
            return None
        span = parse_duration(rule.for_ or "5m")
        step = max(span / 20.0, 5.0)
        try:
            template = self._metric_template(spec, rule.metric)
            series = self.source.series(
                render(
                    template,
                    llm_config=spec.target_ref.name,
                    variant=variant,
                    namespace=self.namespace,
                    window=f"{int(2 * step)}s",
                ),
                span,
                step,
            )
        except MetricsUnavailable:
            return None
        return rules.signal_value(rule, series, step)

    def _rules(
        self, spec: OptimizationPolicySpec, llmc: dict[str, Any], active: str | None
    ) -> str | None:
        """Evaluate the rules and apply the winner. Returns "done" when the rule acted
        for this cycle, a trigger description when it asks for an optimizer trial now."""
        s = self.status
        stable = stable_record(llmc)
        assert stable is not None
        variant = stable_variant_id(stable.version)
        decision = rules.evaluate(
            spec.rules, lambda r: self._rule_series(spec, r, variant), s.rule_firings, self.now
        )
        s.rule_evaluations = decision.evaluations
        self._fresh_rules = list(decision.evaluations)
        rule = decision.applied
        if rule is None:
            s.rule_firings = decision.firings
            return None
        action = rule.action
        ev = next(e for e in decision.evaluations if e.rule == rule.name)
        what = (
            f"rule {rule.name}: {rule.metric} {rule.signal} {ev.value} {rule.operator} {rule.value}"
        )
        if action.type == "alert":
            s.rule_firings = decision.firings
            self.events.append(("Warning", "RuleAlert", what))
            s.last_decision = f"{what} -> alert"
            return None
        if action.type == "experiment":
            s.rule_firings = decision.firings
            self._decide("RuleExperiment", f"{what} -> an optimizer trial now")
            return f"rule {rule.name}"
        if action.type == "rollback" and active:
            s.rule_firings = decision.firings
            self._patch_rollout(active, {"abort": True})
            self._decide("RuleRollback", f"{what} -> Rollout {active} aborted")
            return "done"
        if active:
            ev.outcome = f"Deferred: Rollout {active} is active"
            return None  # not counted as fired: it applies when the system is stable
        candidate = self._rule_candidate(rule, llmc)
        if candidate is None:
            ev.outcome = "NothingToDo"
            return None
        s.rule_firings = decision.firings
        if spec.mode == "recommend":
            self._decide("RuleRecommendation", f"{what} -> recommend {candidate.model}")
            return "done"
        name = f"{self.name}-rule-{rule.name.replace('_', '-').lower()}-{self.now:%H%M%S}"
        urgent = action.type == "rollback"
        self._create(
            spec,
            name,
            candidate,
            steps=[Step(set_weight=100)] if urgent else None,
            trial=None,
        )
        self._decide("RuleApplied", f"{what} -> {action.type}: Rollout {name}")
        s.state = "Deploying"
        return "done"

    def _rule_candidate(self, rule: Rule, llmc: dict[str, Any]) -> ModelConfig | None:
        history = (llmc.get("status") or {}).get("history") or []
        stable = stable_record(llmc)
        assert stable is not None
        config = stable.model_config_part()
        action = rule.action
        if action.type == "rollback":
            if len(history) < 2:
                return None
            previous = dict(history[-2])
            return ModelConfig.model_validate(
                {
                    k: previous[k]
                    for k in ("provider", "model", "parameters", "endpoint")
                    if k in previous
                }
            )
        if action.type == "modelSwitch" and action.model is not None:
            return config.model_copy(
                update={
                    "provider": action.model.provider,
                    "model": action.model.model,
                    "endpoint": action.model.endpoint or config.endpoint,
                }
            )
        if action.type == "configChange" and action.parameters:
            merged = {**config.parameters.to_wire(), **action.parameters}
            return config.model_copy(update={"parameters": Parameters.model_validate(merged)})
        return None

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
        baseline = optimizer.baseline_params(spec, stable) if not s.trial_records else None
        if baseline is not None:  # warm start: trial 0 is the stable config, as it runs
            self._start_baseline(
                TrialRecord(
                    number=0,
                    params=baseline,
                    hash=stable.config_hash(),
                    state="Running",
                    started_at=_ts(self.now),
                ),
                trigger,
            )
            return
        if self._bandit_points(spec, stable) is not None:
            self._bandit(spec, llmc, stable, trigger)
            return
        screen = optimizer.screening_params(spec, stable, s.trial_records, list_price)
        proposal = self._ask(spec, stable, screen)
        number = proposal.trial.number
        record = TrialRecord(
            number=number,
            params=proposal.params,
            hash=proposal.config.config_hash(),
            state="Running",
            started_at=_ts(self.now),
        )
        record.explanation = trials.explain(spec, s.trial_records, record.params, screen)
        if record.hash == stable.config_hash():
            self._start_baseline(record, trigger)  # stable again: measured on its own traffic
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
        missing = trials.unavailable(spec, proposal.config)
        if missing:
            self._record(record, "Failed", "Unavailable", missing)
            return
        s.state = "Validating"
        forecast = predictor.predict(spec.search_space, s.trial_records, record.params)
        record.prediction, record.confidence = forecast.summary(), forecast.confidence
        if self._predicted_infeasible(spec, record, forecast):
            return
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
        chance = predictor.violation_chance(forecast, trials.request_bounds_of(spec))
        divisor = trials.first_weight_divisor(forecast.confidence, chance)
        self._create_rollout(spec, record, proposal.config, divisor)
        s.state = "Deploying"
        self._decide(
            "TrialStarted",
            f"trial {number}: Rollout {record.rollout} for {proposal.config.model} "
            f"{record.params} ({trigger})",
        )
        s.message = s.last_decision

    def _start_baseline(self, record: TrialRecord, trigger: str) -> None:
        """A trial of the stable config: measured on its own traffic, no Rollout."""
        s = self.status
        s.trial_records.append(record)
        self._decide(
            "TrialStarted", f"trial {record.number}: baseline, the stable config ({trigger})"
        )
        s.state = "Collecting"
        s.message = s.last_decision

    def _predicted_infeasible(
        self, spec: OptimizationPolicySpec, record: TrialRecord, forecast: predictor.Prediction
    ) -> bool:
        """Recorded without a Rollout when a measured neighbour proves the candidate
        infeasible (monotone in maxTokens), or the prediction is confident it is."""
        s = self.status
        bound = predictor.bounded_violation(
            s.trial_records, record.params, trials.monotone_bounds(spec)
        )
        if bound is not None:
            evidence, why = bound
            known = {m: float(v) for m, v in evidence.metrics.items()}
            if all(o.metric in known for o in spec.objectives):
                self._judge(spec, record, known, None, {"predicted": 1.0})
                self._record(record, "Complete", "PredictedInfeasible", why)
                return True
        doomed = self._predicted_violations(spec, forecast)
        if doomed:
            # Confident it breaks a constraint: tell the study the prediction, skip the rollout.
            predicted = {m: p.mean for m, p in forecast.metrics.items()}
            if all(o.metric in predicted for o in spec.objectives):
                self._judge(spec, record, predicted, None, {"predicted": 1.0})
                self._record(record, "Complete", "PredictedInfeasible", "; ".join(doomed))
                return True
        return False

    def _bandit_points(
        self, spec: OptimizationPolicySpec, stable: ModelConfig
    ) -> list[dict[str, str]] | None:
        """The space's points when the policy serves them all as one bandit, else None."""
        if spec.strategy == "trials":
            return None
        return optimizer.grid_points(spec, stable, BANDIT_ARMS + 1)

    def _bandit(
        self,
        spec: OptimizationPolicySpec,
        llmc: dict[str, Any],
        stable: ModelConfig,
        trigger: str,
    ) -> None:
        """Every candidate of a small discrete space at once, in one bandit Rollout whose
        arms are each guarded by the policy's constraints; each is a trial of the study,
        measured on its own share when the Rollout ends."""
        s = self.status
        if any((r.rollout or "").startswith(f"{self.name}-bandit") for r in s.trial_records):
            s.state = "Idle"
            s.message = "bandit finished: every candidate of the space was served and measured"
            return
        quarantined = {e.get("hash") for e in (llmc.get("status") or {}).get("quarantine") or []}
        study = self._study(spec, stable)
        proposals = []
        for point in self._bandit_points(spec, stable) or []:
            proposal = optimizer.ask(study, spec, stable, first=point)
            h = proposal.config.config_hash()
            if h == stable.config_hash() or h in quarantined:
                study.tell(proposal.trial, state=optuna.trial.TrialState.FAIL)
                continue
            proposals.append(proposal)
        if not proposals:
            s.state, s.message = "Idle", "bandit: no candidate besides stable and quarantine"
            return
        name = f"{self.name}-bandit-t{proposals[0].trial.number}"
        for p in proposals:
            s.trial_records.append(
                TrialRecord(
                    number=p.trial.number,
                    params=p.params,
                    hash=p.config.config_hash(),
                    state="Running",
                    started_at=_ts(self.now),
                    rollout=name,
                    explanation=f"bandit arm of {len(proposals)} (small discrete space)",
                )
            )
        top = max(spec.objectives, key=lambda o: float(parse_decimal(o.weight)))
        self._create(
            spec,
            name,
            proposals[0].config,
            steps=None,
            trial={"policy": self.name, "number": proposals[0].trial.number},
            bandit={
                "arms": [p.config.to_wire() for p in proposals[1:]],
                "metric": top.metric,
                "includeStable": True,
            },
        )
        s.state = "Deploying"
        self._decide(
            "BanditStarted",
            f"Rollout {name}: {len(proposals)} candidates and stable served at once, traffic "
            f"by Thompson sampling on {top.metric}, each arm held to the constraints ({trigger})",
        )
        s.message = s.last_decision

    def _predicted_violations(
        self, spec: OptimizationPolicySpec, forecast: predictor.Prediction
    ) -> list[str]:
        """Constraints the prediction is confident the config breaks."""
        c = spec.constraints
        out = []
        cost = forecast.metrics.get("cost_per_request_usd")
        daily = self._daily_requests(spec.target_ref.name, 3600)
        if c.max_daily_cost_usd is not None and cost is not None and daily is not None:
            projected = predictor.Predicted(cost.mean * daily, cost.stddev * daily, cost.neighbours)
            budget = float(parse_decimal(c.max_daily_cost_usd))
            if predictor.confident_violation(projected, budget, upper=True):
                out.append(f"daily cost predicted ${projected.mean:.2f}, budget ${budget:g}")
        for metric, (limit, upper) in trials.request_bounds_of(spec).items():
            p = forecast.metrics.get(metric)
            if p is not None and predictor.confident_violation(p, limit, upper):
                out.append(f"{metric} predicted {p.mean:.4g} ± {p.stddev:.2g}, bound {limit:g}")
        return out

    def _record(self, record: TrialRecord, state: str, outcome: str, reason: str) -> None:
        self.status.trial_records.append(record)
        record.state, record.outcome, record.reason = state, outcome, reason  # type: ignore[assignment]
        record.finished_at = _ts(self.now)
        self._decide(f"Trial{outcome}", f"trial {record.number}: {outcome}: {reason}")
        self.status.message = self.status.last_decision

    def _study(self, spec: OptimizationPolicySpec, stable: ModelConfig) -> optuna.Study:
        """The study rebuilt from the records, once per cycle (summary and ask share it)."""
        if (
            self._built is None
            and self.store is not None
            and spec.mode == "auto"
            and self._store_error is None  # failed already this cycle: no second timeout
        ):
            # With PostgreSQL the study itself lives in Optuna's RDBStorage; if that is
            # unreachable the loop carries on with the study rebuilt from the records.
            # (Mode recommend asks without recording a trial, so it keeps the in-memory
            # study: a stored trial per cycle would only pile up.)
            from sqlalchemy.exc import SQLAlchemyError  # only with a database configured

            try:
                self._built = optimizer.persistent_study(
                    spec,
                    self.status.trial_records,
                    stable,
                    self.store.url,
                    f"{self.namespace}.{self.name}.{self.meta.get('uid', '')}",
                )
                self._persistent = True
            except SQLAlchemyError as exc:
                self._storage_down(exc)
        if self._built is None:
            self._built = optimizer.build_study(spec, self.status.trial_records, stable)
        return self._built

    def _ask(
        self, spec: OptimizationPolicySpec, stable: ModelConfig, first: dict[str, str] | None
    ) -> optimizer.Proposal:
        """The next trial from the cycle's study; if the RDB study's database fails between
        loading and asking, the study is rebuilt from the records and asked instead."""
        study = self._study(spec, stable)
        if not self._persistent:
            return optimizer.ask(study, spec, stable, first=first)
        from sqlalchemy.exc import SQLAlchemyError

        try:
            return optimizer.ask(study, spec, stable, first=first)
        except SQLAlchemyError as exc:
            self._storage_down(exc)
            self._persistent = False
            self._built = optimizer.build_study(spec, self.status.trial_records, stable)
            return optimizer.ask(self._built, spec, stable, first=first)

    def _storage_down(self, exc: Exception) -> None:
        """Optuna's RDBStorage failed: said like any history-store outage (first line)."""
        self._store_down(f"optuna storage: {str(exc).strip().splitlines()[0][:200]}")

    def _summarize(self, spec: OptimizationPolicySpec, stable: ModelConfig) -> None:
        records = self.status.trial_records
        finished = len([r for r in records if r.state != "Running"])
        changed = finished != self.status.trials
        self.status.trials = finished
        front = optimizer.pareto_front(records, spec.objectives)
        self.status.pareto_front = front
        best = optimizer.choose(records, spec.objectives, front)
        self.status.best = best
        self.status.best_hash = best.hash if best else None
        if changed and len(records) >= 3:  # fANOVA is not cheap: only when a trial ended
            self.status.importance = optimizer.importance(self._study(spec, stable))


def run_cycle(
    body: dict[str, Any],
    *,
    custom: client.CustomObjectsApi,
    source: MetricSource | None,
    now: datetime | None = None,
    tracer: Tracer | None = None,
    store: HistoryStore | None = None,
) -> Outcome:
    """One cycle of the policy's loop."""
    try:
        return Cycle(
            body,
            custom=custom,
            source=source,
            now=now or datetime.now(UTC),
            tracer=tracer,
            store=store,
        ).run()
    except optimizer.SamplerUnavailable as exc:
        cycle = Cycle(body, custom=custom, source=source, now=now or datetime.now(UTC))
        return cycle._out(False, "SamplerUnavailable", str(exc))
