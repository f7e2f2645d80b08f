"""Rollout: one candidate configuration tried against the stable one."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints, model_validator

from .common import (
    CONDITIONS_LIST_EXTENSIONS,
    ApiModel,
    Condition,
    DecimalString,
    Duration,
    LocalObjectReference,
)
from .llmconfig import ModelConfig

MetricName = Annotated[str, StringConstraints(pattern=r"^[a-zA-Z_][a-zA-Z0-9_]{0,62}$")]
PromQL = Annotated[str, StringConstraints(min_length=1, max_length=8192)]


class Threshold(ApiModel):
    """Absolute bounds on a metric's value for the candidate."""

    max: DecimalString | None = Field(default=None, description="Fail above this value.")
    min: DecimalString | None = Field(default=None, description="Fail below this value.")


class RelativeBound(ApiModel):
    """Bounds on the candidate relative to stable, as a fraction of stable's value."""

    max_increase: DecimalString | None = Field(
        default=None,
        description='Fail if candidate exceeds stable by more than this ("0.1" = 10%).',
    )
    max_decrease: DecimalString | None = Field(
        default=None, description="Fail if candidate falls below stable by more than this."
    )


class AnalysisMetric(ApiModel):
    """One metric judged during analysis."""

    name: MetricName = Field(
        description="Metric name; built-ins (error_rate, latency_p95_seconds, "
        "cost_per_request_usd, quality_score) need no query."
    )
    query: PromQL | None = Field(
        default=None,
        description="PromQL template over {{llm_config}}, {{variant}}, {{namespace}}, {{window}}.",
    )
    direction: Literal["lowerIsBetter", "higherIsBetter"] = Field(
        default="lowerIsBetter", description="Which way is better."
    )
    threshold: Threshold | None = Field(default=None, description="Absolute bounds.")
    relative: RelativeBound | None = Field(default=None, description="Bounds relative to stable.")
    comparison: Literal["mannWhitney", "sequential", "none"] = Field(
        default="mannWhitney",
        description="Statistical comparison with stable: Mann-Whitney U with an effect-size "
        "gate, an anytime-valid sequential test (for guardrails), or none.",
    )
    dry_run: bool = Field(default=False, description="Evaluate and report, never act on it.")


class Analysis(ApiModel):
    """How canary evidence is gathered and judged."""

    interval: Duration = Field(default="1m", description="How often to measure. Default: 1m.")
    window: Duration = Field(default="5m", description="Metric window per measurement.")
    metrics: list[AnalysisMetric] = Field(
        default_factory=list, max_length=32, description="Metrics judged."
    )
    min_sample_size: int = Field(
        default=50, ge=1, description="Requests per variant before any verdict. Default: 50."
    )
    failure_limit: int = Field(default=0, ge=0, description="Failed measurements tolerated.")
    inconclusive_limit: int = Field(
        default=3, ge=0, description="Inconclusive measurements tolerated before a hold."
    )


class PauseStep(ApiModel):
    """Wait for a duration, or until promoted when no duration is given."""

    duration: Duration | None = Field(default=None, description="How long; empty = until promoted.")


class AnalysisStep(ApiModel):
    """Run the analysis for a number of measurements before going on."""

    measurements: int = Field(default=3, ge=1, le=1000, description="Measurements to take.")


class Step(ApiModel):
    """One step of a rollout; exactly one of setWeight, pause, analysis."""

    set_weight: int | None = Field(
        default=None, ge=0, le=100, description="Percent of traffic to the candidate."
    )
    pause: PauseStep | None = Field(default=None, description="Wait.")
    analysis: AnalysisStep | None = Field(default=None, description="Measure and judge.")

    @model_validator(mode="after")
    def _exactly_one(self) -> Step:
        chosen = [k for k in ("set_weight", "pause", "analysis") if getattr(self, k) is not None]
        if len(chosen) != 1:
            raise ValueError("a step sets exactly one of setWeight, pause, analysis")
        return self


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
