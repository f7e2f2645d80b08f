"""Rollout: one candidate configuration tried against the stable one."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from .common import (
    CONDITIONS_LIST_EXTENSIONS,
    ApiModel,
    Condition,
    DecimalString,
    Duration,
    FieldProblem,
    LocalObjectReference,
)
from .llmconfig import ModelConfig
from .routing import GatewayAPIRouting

# Re-exported: the step and analysis types live in .steps (LLMConfig uses them too).
from .steps import (
    Analysis,
    AnalysisMetric,
    AnalysisStep,
    MetricName,
    PauseStep,
    PostPromotion,
    PromQL,
    QualitySignalStatus,
    RelativeBound,
    RollbackTrigger,
    Step,
    Threshold,
)

__all__ = [
    "Analysis",
    "AnalysisMetric",
    "AnalysisStep",
    "MetricName",
    "PauseStep",
    "PostPromotion",
    "PromQL",
    "RelativeBound",
    "RollbackTrigger",
    "Step",
    "Threshold",
]


class TrialLink(ApiModel):
    """The optimization trial this rollout evaluates, when the optimizer created it."""

    policy: str = Field(description="OptimizationPolicy name.")
    number: int = Field(ge=0, description="Optuna trial number.")


class BlueGreen(ApiModel):
    """Blue-green: preview the candidate, judge it, then switch all traffic at once."""

    preview: Literal["mirror", "split"] = Field(
        default="mirror",
        description="mirror: copies of live requests go to the candidate and its answers are "
        "scored and dropped (users see only stable; doubles the mirrored share's provider "
        "cost); split: the candidate answers previewWeight percent of requests.",
    )
    mirror_percent: int = Field(
        default=100, ge=1, le=100, description="Percent of requests copied (mirror)."
    )
    preview_weight: int = Field(
        default=10, ge=1, le=50, description="Percent answered by the candidate (split)."
    )
    measurements: int = Field(
        default=3, ge=1, le=1000, description="Passing measurements before the switch."
    )
    auto_promote: bool = Field(
        default=True,
        description="Switch as soon as the analysis passes; false waits for promote.",
    )


class ABTest(ApiModel):
    """A/B test: a fixed split until enough evidence, then the winner by a statistical test."""

    weight: int = Field(default=50, ge=1, le=99, description="Percent to the candidate.")
    metric: MetricName = Field(
        default="quality_score", description="The metric that decides the winner."
    )
    query: PromQL | None = Field(default=None, description="PromQL template, if not built in.")
    direction: Literal["lowerIsBetter", "higherIsBetter"] | None = Field(
        default=None, description="Which way is better (built-ins know theirs)."
    )
    min_samples: int = Field(
        default=500, ge=10, description="Requests per variant before the test. Default: 500."
    )
    min_duration: Duration = Field(default="10m", description="Shortest test. Default: 10m.")
    max_duration: Duration = Field(
        default="24h", description="Give up (stable kept) when the sample is not reached."
    )
    alpha: DecimalString = Field(
        default="0.05", description="Significance level of the one test. Default: 0.05."
    )


class Bandit(ApiModel):
    """Several candidates at once; traffic follows each arm's chance of being best."""

    arms: list[ModelConfig] = Field(
        default_factory=list,
        max_length=7,
        description="Candidates besides spec.candidate (which is always an arm).",
    )
    metric: MetricName = Field(default="quality_score", description="The reward.")
    query: PromQL | None = Field(default=None, description="PromQL template, if not built in.")
    direction: Literal["lowerIsBetter", "higherIsBetter"] | None = Field(
        default=None, description="Which way is better (built-ins know theirs)."
    )
    include_stable: bool = Field(default=True, description="Stable competes as an arm.")
    min_weight: int = Field(
        default=5, ge=0, le=20, description="Percent every arm keeps while it competes."
    )
    min_samples: int = Field(
        default=100, ge=10, description="Requests per arm before re-balancing. Default: 100."
    )
    confidence: DecimalString = Field(
        default="0.95", description="Chance of being best at which an arm wins."
    )
    max_duration: Duration = Field(default="24h", description="No winner by then: stable kept.")


class RolloutSpec(ApiModel):
    """Desired rollout of a candidate configuration."""

    target_ref: LocalObjectReference = Field(description="The LLMConfig to change.")
    candidate: ModelConfig = Field(description="The configuration to try.")
    strategy: Literal["canary", "blueGreen", "abTest", "bandit"] = Field(
        default="canary", description="canary (default), blueGreen, abTest or bandit."
    )
    traffic_routing: Literal["configMap", "replicas", "gatewayAPI"] = Field(
        default="configMap",
        description="configMap: exact per-request split in the gateway; replicas: a canary "
        "Deployment scaled to the weight, for apps that read config only at start; "
        "gatewayAPI: the backend weights of an HTTPRoute (spec.gatewayAPI).",
    )
    gateway_api: GatewayAPIRouting | None = Field(
        default=None,
        alias="gatewayAPI",
        description="trafficRouting gatewayAPI: the HTTPRoute and its stable and canary "
        "backends (Services or InferencePools).",
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
    post_promotion: PostPromotion | None = Field(
        default=None,
        description="A bake after promotion (phase Baking): the new stable at full traffic, "
        "its rollback triggers watched; a breach reverts to the previous version "
        "(RolledBack/BakeFailed) and quarantines the candidate. Default: none (the "
        "optimizer's trials carry their policy's rolloutTemplate.postPromotion).",
    )
    paused: bool = Field(default=False, description="Manual pause: freeze at the current step.")
    abort: bool = Field(default=False, description="Manual abort: restore stable weights now.")
    promote: bool = Field(
        default=False, description="Manual full promotion: make the candidate stable now."
    )
    blue_green: BlueGreen | None = Field(
        default=None, description="blueGreen settings (defaults apply when omitted)."
    )
    ab_test: ABTest | None = Field(
        default=None, description="abTest settings (defaults apply when omitted)."
    )
    bandit: Bandit | None = Field(
        default=None, description="bandit settings (defaults apply when omitted)."
    )
    step_promotions: int = Field(
        default=0,
        ge=0,
        description="Raise by one to skip the current pause or analysis step "
        "(`llm-optimizer rollout promote`); spec.promote skips all of them.",
    )
    retry: int = Field(
        default=0,
        ge=0,
        description="Raise by one to restart a rolled-back or aborted rollout from step 0; "
        "lifts the candidate's quarantine (`llm-optimizer rollout retry`).",
    )
    trial: TrialLink | None = Field(default=None, description="Optimization trial, if any.")

    @model_validator(mode="after")
    def _strategy_settings(self) -> RolloutSpec:
        if self.strategy != "canary" and "steps" in self.model_fields_set:
            raise FieldProblem(
                "steps", f"{self.strategy} takes no steps; configure spec.{self.strategy}"
            )
        if self.blue_green is not None and self.strategy != "blueGreen":
            raise FieldProblem("blueGreen", "only valid with strategy blueGreen")
        if self.ab_test is not None and self.strategy != "abTest":
            raise FieldProblem("abTest", "only valid with strategy abTest")
        if self.bandit is not None and self.strategy != "bandit":
            raise FieldProblem("bandit", "only valid with strategy bandit")
        if self.strategy == "bandit" and self.traffic_routing != "configMap":
            raise FieldProblem("trafficRouting", "bandit needs the per-request split (configMap)")
        routers = [c for c in [self.candidate, *(self.bandit.arms if self.bandit else [])]
                   if c.router is not None]  # fmt: skip
        if routers and self.traffic_routing != "configMap":
            raise FieldProblem(
                "trafficRouting", "a router config routes in the gateway: use configMap"
            )
        if self.traffic_routing == "gatewayAPI" and self.gateway_api is None:
            raise FieldProblem("gatewayAPI", "trafficRouting gatewayAPI needs spec.gatewayAPI")
        if self.gateway_api is not None and self.traffic_routing != "gatewayAPI":
            raise FieldProblem("gatewayAPI", "only valid with trafficRouting gatewayAPI")
        mirrored = self.blue_green is not None and self.blue_green.preview == "mirror"
        if (
            self.traffic_routing == "gatewayAPI"
            and self.strategy == "blueGreen"
            and (mirrored or self.blue_green is None)
        ):
            raise FieldProblem(
                "blueGreen.preview",
                "mirroring is the gateway's (configMap); with gatewayAPI preview by weight",
            )
        return self


RolloutPhase = Literal[
    "Pending",
    "Progressing",
    "Paused",
    "Holding",
    "Baking",
    "Promoted",
    "RolledBack",
    "Aborted",
    "Failed",
]
Verdict = Literal["Pass", "Marginal", "Fail", "Inconclusive"]
# A Rollout in one of these phases has ended (a person's retry may start it again).
TERMINAL_PHASES = frozenset({"Promoted", "RolledBack", "Aborted", "Failed"})


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


class BoundStatus(ApiModel):
    """A rollback trigger's absolute bound (min/max) at the last check: the evidence and
    how sure it is."""

    trigger: str
    severity: Literal["critical", "warning"] = "critical"
    state: Literal["violated", "holds", "undecided"]
    message: str = Field(default="", description="Estimate, interval, bound and sample.")


class StepResult(ApiModel):
    """How one analysis step (or the A/B decision) ended."""

    step: int = Field(ge=0)
    verdict: Verdict
    measurements: int = Field(default=0, ge=0)
    finished_at: str
    results: list[MetricResultStatus] = Field(default_factory=list)


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
    step_results: list[StepResult] = Field(
        default_factory=list, description="Outcome of each finished analysis step."
    )
    mirror_percent: int | None = Field(
        default=None, ge=0, le=100, description="Percent of requests mirrored to the candidate."
    )
    canary_replicas: int | None = Field(
        default=None, ge=0, description="Canary Deployment replicas (trafficRouting replicas)."
    )
    triggers_checked_at: str | None = None
    bounds: list[BoundStatus] = Field(
        default_factory=list,
        description="Rollback triggers with min/max at the last check: violated, holds or "
        "undecided, with the evidence. A step passes only when every critical one holds.",
    )
    baking_since: str | None = Field(
        default=None, description="When the bake after promotion began (phase Baking)."
    )
    undecided_since: str | None = Field(
        default=None, description="When the current step began waiting for a bound's evidence."
    )
    quality_signal: QualitySignalStatus | None = Field(
        default=None,
        description="Quality scores present for both variants (analysis judging "
        "quality_score only); the QualitySignal condition.",
    )
    breached_triggers: list[str] = Field(
        default_factory=list, description="Warning-severity triggers breached at the last check."
    )
    arm_weights: dict[str, int] = Field(
        default_factory=dict, description="bandit: percent of traffic per arm (variant id)."
    )
    arm_rewards: dict[str, str] = Field(
        default_factory=dict, description="bandit: reward per arm (mean ± se, requests, P(best))."
    )
    excluded_arms: dict[str, str] = Field(
        default_factory=dict,
        description="bandit: arms dropped because they broke a critical rollback trigger "
        "(variant id -> why); they get no traffic and cannot win.",
    )
    observed_step_promotions: int = Field(default=0, ge=0)
    observed_retry: int = Field(default=0, ge=0)
    retries: int = Field(default=0, ge=0, description="Times a person retried this rollout.")
