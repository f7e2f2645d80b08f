"""What one cycle of a policy works on and hands between its steps: the parsed policy and
target, the status being built, the Events to post, and the cycle's reads and writes
(metrics, Rollouts, history, study)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kubernetes import client

from .. import faults
from ..act import rollouts
from ..api.common import GROUP
from ..api.llmconfig import LLMConfigObject, ModelConfig, VersionRecord
from ..api.names import label_value
from ..api.policy import (
    BaselineResult,
    OptimizationPolicySpec,
    OptimizationPolicyStatus,
    RuleEvaluation,
    TrialRecord,
)
from ..api.rollout import Step
from ..api.timestamps import format_ts
from ..decide import trials
from ..decide.study import StudySession
from ..observe.policy_metrics import PolicyMetrics
from ..store.session import HistorySession

STARTING = "Starting"  # a trial's record written, its Rollout perhaps not yet created


@dataclass
class CycleState:
    """One cycle of ``body`` (an OptimizationPolicy) against ``target`` (its LLMConfig)."""

    body: dict[str, Any]
    spec: OptimizationPolicySpec
    target: LLMConfigObject
    stable: VersionRecord
    status: OptimizationPolicyStatus
    custom: client.CustomObjectsApi
    metrics: PolicyMetrics
    history: HistorySession
    now: datetime
    events: list[tuple[str, str, str]]
    fresh_rules: list[RuleEvaluation] = field(default_factory=list)
    fresh_baselines: list[BaselineResult] = field(default_factory=list)
    _study: StudySession | None = None

    @property
    def name(self) -> str:
        return str(self.body["metadata"]["name"])

    @property
    def namespace(self) -> str:
        return str(self.body["metadata"]["namespace"])

    @property
    def stable_config(self) -> ModelConfig:
        return self.stable.model_config_part()

    @property
    def study(self) -> StudySession:
        """The cycle's study, built at most once."""
        if self._study is None:
            self._study = StudySession(
                self.spec,
                self.status,
                self.stable_config,
                url=lambda: self.history.url,
                name=f"{self.namespace}.{self.name}.{self.body['metadata'].get('uid', '')}",
                on_down=self.history.down,
            )
        return self._study

    # -- what the cycle says ------------------------------------------------

    def decide(self, reason: str, message: str, event: bool = True) -> None:
        self.status.last_decision = message
        if event:
            self.events.append(("Normal", reason, message))

    def say(self, state: str, message: str) -> None:
        self.status.state = state  # type: ignore[assignment]
        self.status.message = message

    def finish(self, record: TrialRecord, state: str, outcome: str, reason: str) -> None:
        """A running trial ends (state, outcome, why)."""
        record.state, record.outcome, record.reason = state, outcome, reason  # type: ignore[assignment]
        record.finished_at = format_ts(self.now)
        failed = outcome in ("RolledBack", "Failed")
        self.status.consecutive_failures = self.status.consecutive_failures + 1 if failed else 0
        self.decide(
            f"Trial{outcome}", f"trial {record.number} ({record.params}): {outcome}: {reason}"
        )

    def record(self, record: TrialRecord, state: str, outcome: str, reason: str) -> None:
        """A proposal settled without a Rollout, added to the records."""
        self.status.trial_records.append(record)
        record.state, record.outcome, record.reason = state, outcome, reason  # type: ignore[assignment]
        record.finished_at = format_ts(self.now)
        self.decide(f"Trial{outcome}", f"trial {record.number}: {outcome}: {reason}")
        self.status.message = self.status.last_decision

    # -- Rollouts -------------------------------------------------------------

    def patch_rollout(self, name: str, spec: dict[str, Any]) -> None:
        rollouts.patch_rollout_spec(self.custom, self.namespace, name, spec)

    def create_rollout(
        self,
        name: str,
        config: ModelConfig,
        *,
        steps: list[Step] | None,
        trial: TrialRecord | None = None,
        annotations: dict[str, str] | None = None,
        bandit: dict[str, Any] | None = None,
        labels: dict[str, str] | None = None,
    ) -> None:
        """A Rollout of the policy (owned by it, labelled with it) for ``config``."""
        template = self.spec.rollout_template
        rollout_spec: dict[str, Any] = {
            "targetRef": {"name": self.spec.target_ref.name},
            "candidate": config.to_wire(),
            "strategy": template.strategy if steps is None or trial else "canary",
            "analysis": trials.trial_analysis(self.spec).to_wire(),
        }
        if trial is not None:
            rollout_spec["trial"] = {"policy": self.name, "number": trial.number}
            if template.post_promotion is not None:  # a trial's promotion is baked
                rollout_spec["postPromotion"] = template.post_promotion.to_wire()
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
            labels={f"{GROUP}/policy": label_value(self.name), **(labels or {})},
            annotations=annotations or {},
            owner=self.body,
        )
        rollouts.create_rollout(self.custom, body)

    def write_records_first(self, records: list[TrialRecord]) -> None:
        """Record-first: ``records`` (appended to status) are written to the policy's
        status marked ``Starting`` before their Rollout is created, so an operator that
        stops in between finds them after the restart (settled by ``trial_settle``:
        the Rollout adopted if it was created, else the trial failed with that reason)
        and never creates a second Rollout or forgets the first."""
        for r in records:
            r.outcome = STARTING
        wire = [r.to_wire() for r in self.status.trial_records]
        rollouts.patch_policy_status(self.custom, self.namespace, self.name, {"trialRecords": wire})
        faults.point(faults.TRIAL_RECORDED)

    def started(self, records: list[TrialRecord]) -> None:
        """Their Rollout exists: no longer ``Starting``."""
        faults.point(faults.TRIAL_ROLLOUT_CREATED)
        for r in records:
            r.outcome = ""

    def create_trial_rollout(self, record: TrialRecord, config: ModelConfig, divisor: int) -> None:
        """Created after the record is written (``write_records_first``), so a restart
        in between finds the record and never a second Rollout."""
        assert record.rollout is not None
        self.write_records_first([record])
        self.create_rollout(
            record.rollout,
            config,
            steps=trials.trial_steps(self.spec, divisor),
            trial=record,
            annotations={
                f"{GROUP}/prediction": json.dumps(record.prediction, sort_keys=True),
                f"{GROUP}/prediction-confidence": record.confidence or "low",
            },
        )
        self.started([record])
