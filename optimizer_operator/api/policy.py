"""OptimizationPolicy: what "better" means for one LLMConfig, and how to search for it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import Field, StringConstraints, ValidationError, model_validator

from .common import (
    BUILTIN_METRICS,
    CONDITIONS_LIST_EXTENSIONS,
    PAIRED_METRICS,
    ApiModel,
    Condition,
    DecimalString,
    Duration,
    FieldProblem,
    LocalObjectReference,
    parse_decimal,
    parse_duration,
)
from .llmconfig import Endpoint, ModelName, Parameters, ProviderName, RouterConfig
from .rollout import Analysis, MetricName, PostPromotion, PromQL, Step
from .steps import QualitySignalStatus, QualitySource

ParameterName = Literal[
    "temperature", "topP", "topK", "maxTokens", "presencePenalty", "frequencyPenalty",
    "routerThreshold",
]


class Objective(ApiModel):
    """One objective: a metric, a direction, and its weight in the scalarized choice."""

    metric: MetricName = Field(
        description="Built-in (cost_per_request_usd, latency_p95_seconds, quality_score, "
        "error_rate) or a name from spec.metrics."
    )
    direction: Literal["minimize", "maximize"] = Field(description="Which way is better.")
    weight: DecimalString = Field(default="1", description='Weight, e.g. "0.5". Default: "1".')


class Constraints(ApiModel):
    """Hard constraints: a configuration violating any is infeasible."""

    max_latency_p95_seconds: DecimalString | None = Field(default=None, description="p95 SLA.")
    max_error_rate: DecimalString | None = Field(default=None, description='e.g. "0.02".')
    min_quality: DecimalString | None = Field(default=None, description="Quality floor, 0..1.")
    min_win_rate: DecimalString | None = Field(
        default=None,
        description="Floor on a trial's win rate against stable (pairwise judging: the mean "
        'pair score, a win 1 and a tie 1/2), 0..1; e.g. "0.45": not worse than stable by more '
        "than 0.05. Needs the gateway's pairwise evaluator; stable's own is 0.5.",
    )
    max_cost_per_request_usd: DecimalString | None = Field(default=None)
    max_daily_cost_usd: DecimalString | None = Field(
        default=None, description="Projected daily cost ceiling."
    )


@dataclass(frozen=True)
class RequestConstraint:
    """One per-request constraint: its spec key, the Constraints field, the metric it
    bounds and which side (``upper``: a maximum)."""

    key: str
    attr: str
    metric: str
    upper: bool

    @property
    def side(self) -> Literal["min", "max"]:
        return "max" if self.upper else "min"


# The one table of per-request constraints (maxDailyCostUsd is a projection of the
# measured cost per request, not a per-request bound).
REQUEST_CONSTRAINTS = (
    RequestConstraint(
        "maxLatencyP95Seconds", "max_latency_p95_seconds", "latency_p95_seconds", True
    ),
    RequestConstraint("maxErrorRate", "max_error_rate", "error_rate", True),
    RequestConstraint("minQuality", "min_quality", "quality_score", False),
    RequestConstraint("minWinRate", "min_win_rate", "win_rate", False),
    RequestConstraint(
        "maxCostPerRequestUsd", "max_cost_per_request_usd", "cost_per_request_usd", True
    ),
)


def request_bounds(constraints: Constraints) -> list[tuple[RequestConstraint, str]]:
    """The per-request constraints a policy sets, with their bounds (decimal strings)."""
    return [
        (c, value)
        for c in REQUEST_CONSTRAINTS
        if (value := getattr(constraints, c.attr)) is not None
    ]


class ModelChoice(ApiModel):
    """A model the search may choose."""

    provider: ProviderName
    model: ModelName
    endpoint: Endpoint | None = Field(
        default=None, description="Endpoint and key (default: stable's, same provider)."
    )
    router: RouterConfig | None = Field(
        default=None,
        description="A router choice: this (cheap) model or router.strong per request, by "
        "a trained router; a routerThreshold parameter, when the space has one, sets its "
        "threshold (else router.threshold).",
    )


class ModelCondition(ApiModel):
    """Make a parameter active only when the model is one of these."""

    models: list[ModelName] = Field(min_length=1, description="Models for which it applies.")


class ParameterRange(ApiModel):
    """The range of one parameter in the search space."""

    name: ParameterName = Field(description="Which generation parameter.")
    type: Literal["float", "int", "categorical"] = Field(description="Distribution kind.")
    low: DecimalString | None = Field(default=None, description="Lower bound (float, int).")
    high: DecimalString | None = Field(default=None, description="Upper bound (float, int).")
    step: DecimalString | None = Field(default=None, description="Grid step, optional.")
    log: bool = Field(default=False, description="Sample on a log scale.")
    choices: list[DecimalString] | None = Field(default=None, description="For categorical.")
    when: ModelCondition | None = Field(default=None, description="Conditional parameter.")

    @model_validator(mode="after")
    def _bounds(self) -> ParameterRange:
        if self.type == "categorical":
            if not self.choices:
                raise FieldProblem("choices", f"{self.name}: categorical needs choices")
            return self
        if self.low is None or self.high is None:
            raise FieldProblem("low", f"{self.name}: {self.type} needs low and high")
        if parse_decimal(self.low) >= parse_decimal(self.high):
            raise FieldProblem("low", f"{self.name}: low must be below high")
        if self.log and parse_decimal(self.low) <= 0:
            raise FieldProblem("low", f"{self.name}: log scale needs low > 0")
        if self.name == "routerThreshold" and (
            self.type != "float" or parse_decimal(self.low) < 0 or parse_decimal(self.high) > 1
        ):
            raise FieldProblem("type", "routerThreshold: a float range within 0 to 1")
        return self


class SearchSpace(ApiModel):
    """Where the optimizer may look."""

    models: list[ModelChoice] = Field(
        default_factory=list, max_length=64, description="Candidate models (categorical)."
    )
    parameters: list[ParameterRange] = Field(default_factory=list, max_length=16)


class MetricQuery(ApiModel):
    """A named PromQL template the policy can use as objective, constraint or rule input."""

    name: MetricName
    query: PromQL = Field(
        description="PromQL over {{llm_config}}, {{variant}}, {{namespace}}, {{window}}."
    )


class Sampler(ApiModel):
    """The Optuna sampler, pinned by name."""

    name: Literal["tpe", "gp", "nsga2", "random"] = Field(default="tpe")
    seed: int | None = Field(default=None, ge=0, description="Seed for reproducible search.")
    screen_models: bool = Field(
        default=True,
        description=(
            "Before the sampler explores on its own, measure each model of the search space "
            "once at the stable configuration's parameters (pricier models first while the "
            "stable config misses a constraint, cheaper ones first otherwise). Not for random."
        ),
    )


class Trigger(ApiModel):
    """When a cycle runs. Several triggers combine with spec.schedule.combine."""

    type: Literal["interval", "cron", "threshold", "event"]
    every: Duration | None = Field(default=None, description="For interval.")
    cron: Annotated[str, StringConstraints(max_length=128)] | None = Field(
        default=None,
        description='For cron: five fields, e.g. "0 9-17 * * MON-FRI", or @hourly, @daily, '
        "@weekly, @monthly, @yearly. Standard semantics: names, ranges, steps; day-of-month "
        "and day-of-week both restricted means either. Fires once per scheduled time that "
        "has passed since the last cycle (a late tick still fires).",
    )
    time_zone: Annotated[str, StringConstraints(max_length=64)] | None = Field(
        default=None,
        description='For cron: the IANA time zone the schedule is read in, e.g. '
        '"Europe/Berlin". Default: UTC.',
    )
    metric: MetricName | None = Field(default=None, description="For threshold.")
    operator: Literal["gt", "gte", "lt", "lte"] | None = Field(default=None)
    value: DecimalString | None = Field(default=None)
    for_: Duration | None = Field(default=None, alias="for", description="Held for this long.")
    event: Literal["llmConfigChanged", "rolloutFinished"] | None = Field(default=None)

    @model_validator(mode="after")
    def _shape(self) -> Trigger:
        needed = {
            "interval": ["every"],
            "cron": ["cron"],
            "threshold": ["metric", "operator", "value"],
            "event": ["event"],
        }[self.type]
        missing = [n for n in needed if getattr(self, n) is None]
        if missing:
            raise FieldProblem(missing[0], f"{self.type} trigger needs {', '.join(missing)}")
        if self.cron is not None:
            from .cron import CronError, parse_cron, zone

            try:
                parse_cron(self.cron)
            except CronError as exc:
                raise FieldProblem("cron", str(exc)) from None
            try:
                zone(self.time_zone)
            except CronError as exc:
                raise FieldProblem("timeZone", str(exc)) from None
        elif self.time_zone is not None:
            raise FieldProblem("timeZone", "only for a cron trigger")
        return self


class Schedule(ApiModel):
    """When the loop runs."""

    triggers: list[Trigger] = Field(
        default_factory=lambda: [Trigger(type="interval", every="15m")],
        max_length=16,
        description="Default: every 15m.",
    )
    combine: Literal["any", "all"] = Field(default="any", description="OR (any) or AND (all).")
    cooldown: Duration = Field(
        default="1h", description="Minimum time between two rollouts. Default: 1h."
    )


class RouterTraining(ApiModel):
    """Retrain the stable router on the LLMConfig's own recorded traffic on a schedule,
    and canary the retrained one against it like any change."""

    every: Duration | None = Field(default=None, description='e.g. "24h".')
    cron: Annotated[str, StringConstraints(max_length=128)] | None = Field(
        default=None, description='Five fields, e.g. "0 3 * * *", or @daily and the like.'
    )
    time_zone: Annotated[str, StringConstraints(max_length=64)] | None = Field(
        default=None, description="For cron: the IANA time zone. Default: UTC."
    )
    min_requests: int = Field(
        default=300,
        ge=20,
        le=1_000_000,
        description="Labelled answers of the router's cheap model needed to retrain. "
        "Default: 300.",
    )
    max_requests: int = Field(
        default=20_000,
        ge=20,
        le=1_000_000,
        description="The newest this many labelled answers are used. Default: 20000.",
    )
    min_auc_gain: DecimalString = Field(
        default="0.01",
        description="How much better the retrained router must tell good cheap answers "
        "from bad on held-out recordings (AUC, 0.5 to 1) before it is canaried. "
        'Default: "0.01".',
    )

    @model_validator(mode="after")
    def _when(self) -> RouterTraining:
        if (self.every is None) == (self.cron is None):
            raise FieldProblem("every", "give one of every or cron")
        if self.cron is not None:
            from .cron import CronError, parse_cron, zone

            try:
                parse_cron(self.cron)
                zone(self.time_zone)
            except CronError as exc:
                raise FieldProblem("cron", str(exc)) from None
        elif self.time_zone is not None:
            raise FieldProblem("timeZone", "only with cron")
        if self.max_requests < self.min_requests:
            raise FieldProblem("maxRequests", "must be at least minRequests")
        return self


class Budgets(ApiModel):
    """Limits on how much the optimizer may try."""

    max_trials: int | None = Field(default=None, ge=1, description="Trials in the study.")
    max_rollouts_per_day: int = Field(default=6, ge=0, description="Default: 6.")
    max_consecutive_failures: int = Field(
        default=3,
        ge=1,
        description="Circuit breaker: after this many failed trials in a row the policy stops "
        "proposing for coolOff. Default: 3.",
    )
    cool_off: Duration = Field(default="6h", description="Circuit breaker pause. Default: 6h.")
    min_improvement: DecimalString = Field(
        default="0",
        description="Promote a trial only when its weighted relative improvement over stable "
        'exceeds this ("0.02" = 2%). Default: "0".',
    )


class RuleAction(ApiModel):
    """What a rule does when it fires."""

    type: Literal["configChange", "modelSwitch", "rollback", "alert", "experiment"]
    parameters: dict[str, DecimalString] | None = Field(
        default=None, description="For configChange: parameter values to set."
    )
    model: ModelChoice | None = Field(default=None, description="For modelSwitch.")


class RuleCondition(ApiModel):
    """A further condition of a composite rule."""

    metric: MetricName
    signal: Literal["value", "trend", "anomaly"] = Field(default="value")
    operator: Literal["gt", "gte", "lt", "lte"]
    value: DecimalString
    for_: Duration | None = Field(default=None, alias="for", description="Window. Default: 5m.")


class Rule(ApiModel):
    """A condition on a metric and an action, with priority and limits."""

    name: MetricName
    metric: MetricName
    signal: Literal["value", "trend", "anomaly"] = Field(
        default="value",
        description="value: the metric's mean over `for`; trend: its Theil-Sen slope per "
        "minute over `for` (counted only when Mann-Kendall finds it significant); anomaly: "
        "the robust z-score of its latest point against `for` of history.",
    )
    operator: Literal["gt", "gte", "lt", "lte"]
    value: DecimalString
    for_: Duration | None = Field(default=None, alias="for", description="Window. Default: 5m.")
    also: list[RuleCondition] = Field(
        default_factory=list, max_length=8, description="Further conditions (composite rule)."
    )
    combine: Literal["all", "any"] = Field(
        default="all", description="How the condition and `also` combine: AND (all) or OR (any)."
    )
    action: RuleAction
    priority: int = Field(default=100, ge=0, le=10000, description="Lower runs first.")
    cooldown: Duration = Field(default="1h")
    max_per_day: int = Field(default=3, ge=0)


class RolloutTemplate(ApiModel):
    """How the optimizer's candidates are rolled out."""

    strategy: Literal["canary", "blueGreen", "abTest"] = Field(default="canary")
    steps: list[Step] | None = Field(default=None, min_length=1, max_length=64)
    analysis: Analysis = Field(default_factory=Analysis)
    post_promotion: PostPromotion | None = Field(
        default_factory=lambda: PostPromotion(bake="10m"),
        description="The bake after a trial's promotion (its constraints watched at full "
        "traffic; a breach reverts it). Default: 10m; null turns it off.",
    )


class Observe(ApiModel):
    """What the loop observes of the stable configuration, besides its trials."""

    windows: list[Duration] = Field(
        default_factory=lambda: ["5m", "1h", "1d"],
        max_length=6,
        description="Windows of the aggregates in status.observation, 1m to 7d each.",
    )
    every: Duration = Field(default="5m", description="How often the aggregates are refreshed.")
    golden: int | None = Field(
        default=None,
        ge=0,
        description="A trial number whose measured config is the golden baseline.",
    )

    @model_validator(mode="after")
    def _windows(self) -> Observe:
        for i, w in enumerate(self.windows):
            if not 60 <= parse_duration(w) <= 7 * 86400:
                raise FieldProblem(f"windows[{i}]", f"{w} is outside 1m..7d")
        return self


def _check_action(path: str, action: RuleAction) -> None:
    """The fields a rule's action type needs, and parameters that are valid ones."""
    if action.type == "modelSwitch" and action.model is None:
        raise FieldProblem(f"{path}.model", "modelSwitch needs the model to switch to")
    if action.type == "configChange":
        if not action.parameters:
            raise FieldProblem(f"{path}.parameters", "configChange needs parameters to set")
        try:
            Parameters.model_validate(action.parameters)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise FieldProblem(f"{path}.parameters.{where}", first["msg"]) from None


class OptimizationPolicySpec(ApiModel):
    """Desired optimization of one LLMConfig."""

    target_ref: LocalObjectReference = Field(description="The LLMConfig optimized.")
    mode: Literal["auto", "recommend"] = Field(
        default="recommend",
        description="auto: roll out candidates; recommend: only record them. Default: recommend.",
    )
    objectives: list[Objective] = Field(min_length=1, max_length=8)
    constraints: Constraints = Field(default_factory=Constraints)
    search_space: SearchSpace = Field(default_factory=SearchSpace)
    metrics: list[MetricQuery] = Field(default_factory=list, max_length=32)
    sampler: Sampler = Field(default_factory=Sampler)
    schedule: Schedule = Field(default_factory=Schedule)
    budgets: Budgets = Field(default_factory=Budgets)
    rules: list[Rule] = Field(default_factory=list, max_length=64)
    rollout_template: RolloutTemplate = Field(default_factory=RolloutTemplate)
    observe: Observe = Field(default_factory=Observe)
    quality: QualitySource | None = Field(
        default=None,
        description="Which evaluators make quality_score (with weights) for the "
        "objectives, the constraints and every Rollout of the policy. Default: all.",
    )
    router_training: RouterTraining | None = Field(
        default=None,
        description="Retrain the stable router (an LLMConfig whose config has a router) "
        "on the gateway's recordings of this LLMConfig on a schedule; a retrained router "
        "better on held-out recordings is canaried against the current one.",
    )
    strategy: Literal["trials", "bandit", "auto"] = Field(
        default="trials",
        description="trials: one canary Rollout per Optuna trial. bandit: after the "
        "baseline, every point of a small discrete space (at most 8 besides stable) at once "
        "in one bandit Rollout, traffic by Thompson sampling on the top-weighted objective, "
        "each arm guarded by the constraints. auto: bandit when the space is that small, "
        "else trials.",
    )

    def quality_weights(self) -> tuple[tuple[str, float], ...]:
        """The evaluators that make quality_score, with weights (spec.quality, else the
        Rollout template's analysis.quality); empty: all of them."""
        chosen = self.quality or self.rollout_template.analysis.quality
        return chosen.weights() if chosen else ()

    @model_validator(mode="after")
    def _objectives_known(self) -> OptimizationPolicySpec:
        known = {*BUILTIN_METRICS, *(m.name for m in self.metrics)}
        for i, obj in enumerate(self.objectives):
            if obj.metric not in known:
                raise FieldProblem(
                    f"objectives[{i}].metric",
                    f"{obj.metric!r} is neither built-in nor in spec.metrics",
                )
            if obj.metric in PAIRED_METRICS:
                raise FieldProblem(
                    f"objectives[{i}].metric",
                    f"{obj.metric!r} compares a candidate with stable, so stable (the "
                    "baseline) has none: use it in rolloutTemplate.analysis (a threshold or "
                    "a rollback trigger with min) instead",
                )
            if obj.metric in [o.metric for o in self.objectives[:i]]:
                raise FieldProblem(f"objectives[{i}].metric", f"{obj.metric!r} is listed twice")
            if parse_decimal(obj.weight) <= 0:
                raise FieldProblem(f"objectives[{i}].weight", "must be above 0")
        return self

    @model_validator(mode="after")
    def _rules_measurable(self) -> OptimizationPolicySpec:
        """Every metric a rule or trigger reads has a query (a typo would be NoData
        forever), and every rule's action can be carried out."""
        known = {*BUILTIN_METRICS, *(m.name for m in self.metrics)}

        def measurable(path: str, metric: str) -> None:
            if metric not in known:
                raise FieldProblem(
                    path, f"{metric!r} is neither built-in nor in spec.metrics: no query reads it"
                )

        for i, t in enumerate(self.schedule.triggers):
            if t.metric is not None:
                measurable(f"schedule.triggers[{i}].metric", t.metric)
        names = [r.name for r in self.rules]
        for i, rule in enumerate(self.rules):
            if rule.name in names[:i]:
                raise FieldProblem(f"rules[{i}].name", f"{rule.name} listed twice")
            measurable(f"rules[{i}].metric", rule.metric)
            for j, cond in enumerate(rule.also):
                measurable(f"rules[{i}].also[{j}].metric", cond.metric)
            _check_action(f"rules[{i}].action", rule.action)
        return self

    @model_validator(mode="after")
    def _space_searchable(self) -> OptimizationPolicySpec:
        if not self.search_space.models and not self.search_space.parameters:
            raise FieldProblem(
                "searchSpace", "is empty: give models, parameters, or both to search over"
            )
        seen = [
            (m.provider, m.model, m.router.strong.model if m.router else None)
            for m in self.search_space.models
        ]  # a router on a model is a choice of its own beside the plain model
        if len(set(seen)) != len(seen):
            raise FieldProblem("searchSpace.models", "lists a model twice")
        names = [p.name for p in self.search_space.parameters]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise FieldProblem(f"searchSpace.parameters[{i}].name", f"{name} listed twice")
        for i, p in enumerate(self.search_space.parameters):
            limits = _PARAMETER_LIMITS.get(p.name)
            values = [v for v in (p.low, p.high, *(p.choices or [])) if v is not None]
            if limits and any(not limits[0] <= parse_decimal(v) <= limits[1] for v in values):
                raise FieldProblem(
                    f"searchSpace.parameters[{i}]",
                    f"{p.name} must stay within {limits[0]}..{limits[1]}",
                )
        return self

    @model_validator(mode="after")
    def _constraints_satisfiable(self) -> OptimizationPolicySpec:
        c = self.constraints
        for field, value, lo, hi in (
            ("minQuality", c.min_quality, 0, 1),
            ("minWinRate", c.min_win_rate, 0, 1),
            ("maxErrorRate", c.max_error_rate, 0, 1),
            ("maxLatencyP95Seconds", c.max_latency_p95_seconds, 0, None),
            ("maxCostPerRequestUsd", c.max_cost_per_request_usd, 0, None),
            ("maxDailyCostUsd", c.max_daily_cost_usd, 0, None),
        ):
            if value is None:
                continue
            v = parse_decimal(value)
            if v < lo or (hi is not None and v > hi) or (hi is None and v == 0):
                bound = f"between {lo} and {hi}" if hi is not None else "above 0"
                raise FieldProblem(
                    f"constraints.{field}", f"{value} cannot be met: must be {bound}"
                )
        return self


_PARAMETER_LIMITS = {
    "temperature": (0, 2),
    "topP": (0, 1),
    "topK": (1, 1000),
    "maxTokens": (1, 1_000_000),
    "presencePenalty": (-2, 2),
    "frequencyPenalty": (-2, 2),
}

LoopState = Literal[
    "Idle",
    "Collecting",
    "Analyzing",
    "Deciding",
    "Validating",
    "Deploying",
    "Monitoring",
    "RollingBack",
]


class TrialRecord(ApiModel):
    """One trial of the study, as kept in status (the study is rebuilt from these)."""

    number: int = Field(ge=0)
    params: dict[str, str] = Field(default_factory=dict, description="Suggested values.")
    hash: str = Field(description="Config hash of the candidate.")
    state: Literal["Running", "Complete", "Failed"]
    outcome: str = Field(
        default="",
        description="Baseline, Promoted, NotBetter, RolledBack, Infeasible, Recommended, ...",
    )
    values: list[str] | None = Field(default=None, description="Objective values, in order.")
    constraints: dict[str, str] = Field(
        default_factory=dict, description="Constraint values; feasible when all <= 0."
    )
    score: str | None = Field(default=None, description="Weighted improvement over stable.")
    metrics: dict[str, str] = Field(
        default_factory=dict, description="Every metric measured for the candidate."
    )
    prediction: dict[str, str] = Field(
        default_factory=dict, description="Predicted metrics before the trial (mean ± sd)."
    )
    confidence: Literal["high", "low"] | None = Field(
        default=None, description="How sure the prediction was."
    )
    rollout: str | None = None
    reason: str = ""
    explanation: str = Field(
        default="", description="The most similar earlier trials and how they ended."
    )
    started_at: str | None = None
    finished_at: str | None = None


class RuleEvaluation(ApiModel):
    """One rule, as last evaluated."""

    rule: str
    fired: bool
    value: str | None = None
    outcome: str = Field(default="", description="Applied, Suppressed, Cooldown, NoData, ...")
    at: str


class WindowStats(ApiModel):
    """Aggregates of the stable configuration over one window (numbers as strings)."""

    window: str
    values: dict[str, str] = Field(
        default_factory=dict,
        description="requests, rate_per_second, latency mean/p50/p95/p99, error_rate, "
        "cost_per_request_usd, quality_score, and *_stddev spreads; absent when no data.",
    )


class Observation(ApiModel):
    """What the loop saw of the stable configuration, enriched with the catalog and SLAs."""

    observed_at: str
    variant: str
    model: str
    list_price_per_mtok: str | None = Field(
        default=None, description="Input + output list price (pricing catalog)."
    )
    windows: list[WindowStats] = Field(default_factory=list)
    sla: dict[str, str] = Field(
        default_factory=dict,
        description="Each constraint against the shortest window: value, bound, headroom.",
    )
    message: str = Field(default="", description="Why something is missing, if it is.")


class BaselineResult(ApiModel):
    """The stable configuration now against one baseline."""

    kind: Literal["initial", "rolling", "preChange", "best", "golden"]
    source: str = Field(description="What the baseline is, e.g. trial 0 or version 2.")
    changes: dict[str, str] = Field(
        default_factory=dict, description="Relative change now vs the baseline, per metric."
    )
    p_values: dict[str, str] = Field(
        default_factory=dict,
        description="Welch t / Mann-Whitney U p-values where both sides have samples.",
    )
    significant: list[str] = Field(
        default_factory=list, description="Metrics that changed significantly (p < 0.05)."
    )
    message: str = Field(default="", description="Why a metric could not be compared.")


class RouterTrainingStatus(ApiModel):
    """What the latest retraining did and why."""

    last_run: str | None = Field(default=None, description="When it last ran.")
    outcome: str | None = Field(
        default=None,
        description="Canaried, Recommended, NotBetter, NotEnoughData, NotARouter, "
        "NoRecordings, Waiting or Failed.",
    )
    message: str | None = None
    requests: int | None = Field(default=None, description="Labelled answers used.")
    auc: dict[str, str] = Field(
        default_factory=dict, description="Held-out AUC: current and retrained."
    )
    digest: str | None = Field(default=None, description="The retrained artifact's digest.")
    config_map: str | None = Field(default=None, description="Where it was written.")
    threshold: str | None = Field(
        default=None,
        description="The retrained router's threshold: where it escalates the share of the "
        "recorded requests the current router escalates at its own.",
    )
    rollout: str | None = Field(default=None, description="Its canary Rollout.")


class OptimizationPolicyStatus(ApiModel):
    """Observed state of an OptimizationPolicy."""

    observed_generation: int | None = None
    conditions: list[Condition] = Field(
        default_factory=list, json_schema_extra=CONDITIONS_LIST_EXTENSIONS
    )
    state: LoopState | None = Field(default=None, description="Where the control loop is.")
    trials: int | None = Field(default=None, ge=0, description="Trials told to the study.")
    best_hash: str | None = Field(default=None, description="Best feasible config hash so far.")
    last_decision: str | None = Field(default=None, description="Last decision and why.")
    last_cycle_time: str | None = Field(default=None)
    message: str | None = None
    quality_signal: QualitySignalStatus | None = Field(
        default=None,
        description="Quality scores present for stable, when an objective or constraint "
        "needs quality_score; the QualitySignal condition. False: no trial runs until "
        "they arrive.",
    )
    trial_records: list[TrialRecord] = Field(default_factory=list, description="Oldest first.")
    best: TrialRecord | None = Field(default=None, description="Chosen point of the front.")
    pareto_front: list[int] = Field(default_factory=list, description="Trial numbers.")
    recommendation: TrialRecord | None = Field(
        default=None, description="mode recommend: what would be rolled out."
    )
    seen_config_hash: str | None = Field(
        default=None, description="LLMConfig stable hash at the last cycle (event triggers)."
    )
    history_store: str | None = Field(
        default=None, description='PostgreSQL history: "ok", or "unavailable: why".'
    )
    consecutive_failures: int = Field(default=0, ge=0)
    breaker_open_until: str | None = Field(default=None, description="Circuit breaker.")
    rule_evaluations: list[RuleEvaluation] = Field(
        default_factory=list, description="The latest evaluation of each rule."
    )
    rule_firings: dict[str, list[str]] = Field(
        default_factory=dict, description="When each rule fired in the last day."
    )
    importance: dict[str, str] = Field(
        default_factory=dict, description="Parameter importance (Optuna's evaluator)."
    )
    observation: Observation | None = Field(
        default=None, description="Windowed aggregates of the stable configuration."
    )
    baselines: list[BaselineResult] = Field(
        default_factory=list, description="The stable configuration against its baselines."
    )
    router_training: RouterTrainingStatus | None = Field(
        default=None, description="The latest retraining of the stable router."
    )
