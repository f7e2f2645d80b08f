"""Rollout: one candidate configuration tried against the stable one."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .common import (
    CONDITIONS_LIST_EXTENSIONS,
    ApiModel,
    Condition,
    Duration,
    LocalObjectReference,
)
from .llmconfig import ModelConfig

# Re-exported: the step and analysis types live in .steps (LLMConfig uses them too).
from .steps import (
    Analysis,
    AnalysisMetric,
    AnalysisStep,
    MetricName,
    PauseStep,
    PromQL,
    RelativeBound,
    Step,
    Threshold,
)

__all__ = [
    "Analysis",
    "AnalysisMetric",
    "AnalysisStep",
    "MetricName",
    "PauseStep",
    "PromQL",
    "RelativeBound",
    "Step",
    "Threshold",
]


class TrialLink(ApiModel):
    """The optimization trial this rollout evaluates, when the optimizer created it."""

    policy: str = Field(description="OptimizationPolicy name.")
    number: int = Field(ge=0, description="Optuna trial number.")


class RolloutSpec(ApiModel):
    """Desired rollout of a candidate configuration."""

    target_ref: LocalObjectReference = Field(description="The LLMConfig to change.")
    candidate: ModelConfig = Field(description="The configuration to try.")
    strategy: Literal["canary", "blueGreen", "abTest"] = Field(
        default="canary", description="canary (default), blueGreen or abTest."
    )
    traffic_routing: Literal["configMap", "replicas"] = Field(
        default="configMap",
        description="configMap: exact per-request split in the gateway; replicas: a canary "
        "Deployment scaled to the weight, for apps that read config only at start.",
    )
    steps: list[Step] = Field(
        default_factory=lambda: [
            Step(set_weight=5),
            Step(analysis=AnalysisStep()),
            Step(set_weight=25),
            Step(analysis=AnalysisStep()),
            Step(set_weight=50),
            Step(analysis=AnalysisStep()),
        ],
        min_length=1,
        max_length=64,
        description="Steps in order. Default: 5% / analysis / 25% / analysis / 50% / analysis.",
    )
    analysis: Analysis = Field(default_factory=Analysis, description="Analysis settings.")
    progress_deadline: Duration = Field(
        default="1h", description="Abort when no step completes within this. Default: 1h."
    )
    hold_deadline: Duration = Field(
        default="30m",
        description="Abort (back to stable) after holding this long for missing metrics. "
        "Missing data never promotes or rolls back. Default: 30m.",
    )
    paused: bool = Field(default=False, description="Manual pause: freeze at the current step.")
    abort: bool = Field(default=False, description="Manual abort: restore stable weights now.")
    promote: bool = Field(
        default=False, description="Manual full promotion: make the candidate stable now."
    )
    trial: TrialLink | None = Field(default=None, description="Optimization trial, if any.")


RolloutPhase = Literal[
    "Pending", "Progressing", "Paused", "Holding", "Promoted", "RolledBack", "Aborted", "Failed"
]
Verdict = Literal["Pass", "Marginal", "Fail", "Inconclusive"]


class MetricResultStatus(ApiModel):
    """One metric of the latest measurement."""

    metric: str
    canary: str | None = Field(default=None, description="Canary value.")
    stable: str | None = Field(default=None, description="Stable value.")
    effect: str | None = Field(default=None, description="Relative change vs stable.")
    p_value: str | None = Field(default=None, description="p-value (always-valid for sequential).")
    classification: Literal["High", "Low", "Pass", "NoData"]
    verdict: Literal["Pass", "Marginal", "Fail", "NoData"]
    reason: str = ""
    dry_run: bool = False


class RolloutStatus(ApiModel):
    """Observed state of a Rollout."""

    observed_generation: int | None = None
    conditions: list[Condition] = Field(
        default_factory=list, json_schema_extra=CONDITIONS_LIST_EXTENSIONS
    )
    phase: RolloutPhase | None = Field(default=None, description="Summary for printer columns.")
    current_step_index: int | None = Field(default=None, ge=0)
    canary_weight: int | None = Field(default=None, ge=0, le=100, description="Percent.")
    verdict: Verdict | None = Field(default=None, description="Latest analysis verdict.")
    stable_hash: str | None = Field(default=None, description="Stable config hash at start.")
    candidate_hash: str | None = Field(default=None, description="Candidate config hash.")
    stable_variant: str | None = Field(default=None, description="Stable variant id.")
    canary_variant: str | None = Field(default=None, description="Candidate variant id.")
    message: str | None = Field(default=None, description="Summary for people.")
    started_at: str | None = None
    step_started_at: str | None = None
    last_measured_at: str | None = None
    holding_since: str | None = None
    measurements: int = Field(default=0, ge=0, description="Decisive measurements this step.")
    failures: int = Field(default=0, ge=0, description="Failed measurements this rollout.")
    inconclusives: int = Field(default=0, ge=0, description="Inconclusive, this step.")
    results: list[MetricResultStatus] = Field(
        default_factory=list, description="Latest measurement, per metric."
    )
