"""What one cycle of a policy works on and hands between its steps: the parsed policy and
target, the status being built, the Events to post, and the cycle's reads and writes
(metrics, Rollouts, history, study)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kubernetes import client

from ..act import rollouts
from ..api.common import GROUP
from ..api.llmconfig import LLMConfigObject, ModelConfig, VersionRecord
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

    def create_trial_rollout(self, record: TrialRecord, config: ModelConfig, divisor: int) -> None:
        """Created after the record is written, so a restart in between finds the record
        and creates the same Rollout once."""
        assert record.rollout is not None
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
