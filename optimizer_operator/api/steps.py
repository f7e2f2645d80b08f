"""Canary steps and analysis settings, shared by Rollout and LLMConfig delivery."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints, model_validator

from .common import (
    BUILTIN_METRICS,
    PAIRED_METRICS,
    ApiModel,
    DecimalString,
    Duration,
    FieldProblem,
    parse_decimal,
)

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
        description="PromQL template over {{llm_config}}, {{variant}}, {{namespace}}, "
        "{{window}}; in a Rollout also {{model}} (the variant's model) and {{backend}} (the "
        "backend serving it, trafficRouting gatewayAPI; else the variant id).",
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

    @model_validator(mode="after")
    def _queried(self) -> AnalysisMetric:
        _need_query(self.name, self.query)
        if self.name in PAIRED_METRICS and self.query is None and self.comparison != "none":
            raise FieldProblem(
                "comparison",
                f"{self.name} already compares the candidate with stable (stable has no "
                "series of its own): use comparison none with a threshold, e.g. min",
            )
        if self.comparison == "none" and self.threshold is None:
            raise FieldProblem(
                "comparison",
                f"{self.name}: comparison none and no threshold checks nothing; give a "
                "threshold or a comparison",
            )
        return self


def _need_query(name: str, query: str | None) -> None:
    """A metric that is not built in is measured only by its own query."""
    if query is None and name not in BUILTIN_METRICS:
        raise FieldProblem(
            "query",
            f"{name!r} is not a built-in metric ({', '.join(BUILTIN_METRICS)}): give its query",
        )


class RollbackTrigger(ApiModel):
    """A guardrail checked every interval for the whole rollout, whatever the step."""

    name: MetricName = Field(
        description="Metric: a built-in (error_rate, latency_p95_seconds, "
        "cost_per_request_usd, quality_score) or any name with a query."
    )
    query: PromQL | None = Field(
        default=None, description="PromQL template, as in analysis metrics."
    )
    severity: Literal["critical", "warning"] = Field(
        default="critical",
        description="critical: roll back at once; warning: a Warning Event and Degraded=True.",
    )
    max: DecimalString | None = Field(default=None, description="Breached above this value.")
    min: DecimalString | None = Field(default=None, description="Breached below this value.")
    max_increase: DecimalString | None = Field(
        default=None, description='Breached when canary exceeds stable by this fraction ("0.5").'
    )
    max_decrease: DecimalString | None = Field(
        default=None, description="Breached when canary falls below stable by this fraction."
    )

    @model_validator(mode="after")
    def _some_bound(self) -> RollbackTrigger:
        if not any(
            v is not None for v in (self.max, self.min, self.max_increase, self.max_decrease)
        ):
            raise ValueError("a rollback trigger needs one of max, min, maxIncrease, maxDecrease")
        _need_query(self.name, self.query)
        return self


class BoundDecisions(ApiModel):
    """How absolute bounds (a trigger's min/max, a policy's constraints) are decided:
    on a confidence sequence over every request since the candidate's traffic began,
    valid however often it is checked. Roll back only when the candidate is confidently
    on the wrong side, pass only when it is confidently on the right side, else collect."""

    false_rollback_rate: DecimalString = Field(
        default="0.01",
        description="Chance of rolling back a candidate that meets the bound (the "
        'interval level for a rollback). Default: "0.01".',
    )
    false_pass_rate: DecimalString = Field(
        default="0.05",
        description="Chance of passing a candidate that breaks the bound (the interval "
        'level for passing an analysis step or the promotion). Default: "0.05".',
    )
    max_undecided: Duration = Field(
        default="20m",
        description="How long a step may wait for a critical bound to be decided once its "
        "measurements are done; then the rollout ends Aborted/BoundInconclusive (stable "
        "restored, no quarantine). Default: 20m.",
    )

    @model_validator(mode="after")
    def _rates(self) -> BoundDecisions:
        for name, value in (
            ("falseRollbackRate", self.false_rollback_rate),
            ("falsePassRate", self.false_pass_rate),
        ):
            if not 0 < parse_decimal(value) <= 0.5:
                raise FieldProblem(name, f"must be above 0 and at most 0.5, got {value}")
        return self

    def alphas(self) -> tuple[float, float]:
        """(false-rollback rate, false-pass rate) as floats."""
        return float(parse_decimal(self.false_rollback_rate)), float(
            parse_decimal(self.false_pass_rate)
        )


EvaluatorName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,62}$")]


class ChosenEvaluator(ApiModel):
    """One evaluator whose scores make quality_score, and its weight."""

    name: EvaluatorName = Field(
        description="The evaluator label of llmopt_quality_score (ground_truth, llm_judge, "
        "feedback, human, length, refusal, or one of your own)."
    )
    weight: DecimalString = Field(default="1", description="Its weight (> 0). Default: 1.")

    @model_validator(mode="after")
    def _positive(self) -> ChosenEvaluator:
        if not float(parse_decimal(self.weight)) > 0:
            raise ValueError(f"weight: must be above 0, got {self.weight}")
        return self


class QualitySource(ApiModel):
    """Which evaluators make quality_score. Unset: every evaluator's scores, pooled."""

    evaluators: list[ChosenEvaluator] = Field(
        min_length=1,
        max_length=16,
        description="quality_score is the weighted mean of these evaluators' mean scores "
        "(over those with scores in the window); the others are still exported but not "
        "mixed in. Absolute bounds (minQuality, a threshold) pool these evaluators' "
        "scores.",
    )

    @model_validator(mode="after")
    def _distinct(self) -> QualitySource:
        names = [e.name for e in self.evaluators]
        if len(set(names)) != len(names):
            raise ValueError(f"evaluators: each name once, got {names}")
        return self

    def weights(self) -> tuple[tuple[str, float], ...]:
        return tuple((e.name, float(parse_decimal(e.weight))) for e in self.evaluators)


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
    requests_query: PromQL | None = Field(
        default=None,
        description="PromQL template counting a variant's requests over {{window}}, for "
        "minSampleSize and the evidence since the canary's traffic began. Default: the "
        "gateway's llmopt_requests_total. Set it when the variants are served by backends "
        "the gateway does not front, e.g. vLLM behind an HTTPRoute: "
        'sum(increase(vllm:e2e_request_latency_seconds_count{model_name="{{model}}"}'
        "[{{window}}])).",
    )
    failure_limit: int = Field(default=0, ge=0, description="Failed measurements tolerated.")
    inconclusive_limit: int = Field(
        default=3, ge=0, description="Inconclusive measurements tolerated before a hold."
    )
    rollback_triggers: list[RollbackTrigger] = Field(
        default_factory=list,
        max_length=16,
        description="Guardrails checked every interval during the whole rollout (pauses "
        "included), once the canary has minSampleSize requests: min/max on every request "
        "since its traffic began (see bounds), maxIncrease/maxDecrease on the last window.",
    )
    bounds: BoundDecisions = Field(
        default_factory=BoundDecisions,
        description="Error rates and time limit of the decisions on absolute bounds.",
    )
    quality: QualitySource | None = Field(
        default=None,
        description="Which evaluators make quality_score, with weights. Default: all.",
    )
    quality_signal_timeout: Duration | None = Field(
        default=None,
        description="How long a judged quality_score may have no scores for a variant "
        "before the QualitySignal condition turns False (reason NoQualityData) with an "
        "Event naming what to configure. Default: two windows.",
    )


class PauseStep(ApiModel):
    """Wait for a duration, or until promoted when no duration is given."""

    duration: Duration | None = Field(default=None, description="How long; empty = until promoted.")
    abort_after: Duration | None = Field(
        default=None,
        description="For a pause without duration: abort (stable keeps all traffic) when "
        "nobody promotes or aborts within this long. The operator's own Rollouts set it on "
        "their final gate, so no canary share waits forever on a policy that stopped.",
    )


class PostPromotion(ApiModel):
    """The watch after promotion: the new stable at full traffic for ``bake``, its
    rollback triggers checked as during the canary; a confident breach reverts to the
    version it replaced and quarantines the candidate."""

    bake: Duration = Field(description='How long, e.g. "10m".')


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


class QualitySignalStatus(ApiModel):
    """Whether the quality scores a Rollout's analysis or a policy judges arrive:
    ``False`` once a variant has had none for the analysis's qualitySignalTimeout
    (default two windows), or when a rollout pauses on inconclusive measurements
    without them."""

    status: Literal["True", "False", "Unknown"]
    since: str | None = Field(default=None, description="First measurement without them.")
    message: str = ""
