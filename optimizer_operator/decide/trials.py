"""A trial's pure choices: whether a candidate can be tried at all, how small its first
canary step is, which constraints ride on its Rollout, and the final gate's verdict."""

from __future__ import annotations

from dataclasses import dataclass

from ..analysis.measurement import DEFAULT_METRICS, TriggerResult
from ..api.common import parse_decimal, parse_duration
from ..api.llmconfig import ModelConfig
from ..api.policy import OptimizationPolicySpec, TrialRecord, request_bounds
from ..api.rollout import (
    Analysis,
    AnalysisStep,
    PauseStep,
    RollbackTrigger,
    RolloutSpec,
    RolloutStatus,
    Step,
)
from ..providers.catalog import fleet_models, list_price
from . import optimizer
from .optimizer import similar_trials

# The trial steps when the policy's rolloutTemplate gives none.
DEFAULT_STEPS = [
    Step(set_weight=10),
    Step(analysis=AnalysisStep(measurements=3)),
    Step(set_weight=50),
    Step(analysis=AnalysisStep(measurements=3)),
]


def unavailable(spec: OptimizationPolicySpec, config: ModelConfig) -> str:
    """Why a candidate cannot be tried (empty when it can): a simulator model its fleet
    does not serve, or, when cost is an objective or a constraint, a model the pricing
    catalog has no price for (its cost would read as zero and win unfairly)."""
    key = f"{config.provider}/{config.model}"
    if config.provider == "simulator" and config.model not in fleet_models():
        return f"{key}: not in the simulator fleet"
    c = spec.constraints
    costed = any(o.metric == "cost_per_request_usd" for o in spec.objectives) or any(
        v is not None for v in (c.max_cost_per_request_usd, c.max_daily_cost_usd)
    )
    keys = [key]
    if config.router is not None:  # a router pays for its strong model too
        keys.append(f"{config.router.strong.provider}/{config.router.strong.model}")
    for k in keys:
        if costed and list_price(k) is None:
            return f"{k}: no price in the pricing catalog (add it with LLMOPT_PRICING)"
    return ""


def request_bounds_of(spec: OptimizationPolicySpec) -> dict[str, tuple[float, bool]]:
    """Every per-request constraint as metric -> (limit, upper)."""
    return {
        c.metric: (float(parse_decimal(v)), c.upper) for c, v in request_bounds(spec.constraints)
    }


def monotone_bounds(spec: OptimizationPolicySpec) -> dict[str, tuple[float, bool]]:
    """The constraints a smaller or larger maxTokens moves one way only (quality and cost),
    for ``predictor.bounded_violation``'s proofs."""
    bounds = request_bounds_of(spec)
    return {m: bounds[m] for m in ("quality_score", "cost_per_request_usd") if m in bounds}


def first_weight_divisor(confidence: str, violation_chance: float) -> int:
    """How much smaller the trial's first canary weight is than the template's: a quarter
    when the prediction gives a constraint an even chance or more of breaking (not
    confident enough to skip the config; ``predictor.violation_chance``), half when the
    prediction is low-confidence, else the template's weight."""
    if violation_chance >= 0.5:
        return 4
    return 2 if confidence == "low" else 1


def ended_inconclusive(status: RolloutStatus) -> bool:
    """The Rollout ended because a critical bound stayed undecided."""
    return any(c.reason == "BoundInconclusive" for c in status.conditions)


# Rollout endings that say nothing about the candidate: the stable changed under it (a
# person's edit), nobody ended its final gate in time (the policy stopped looking).
INTERRUPTIONS = ("StableChanged", "PauseDeadline")


def ended_interrupted(status: RolloutStatus) -> str | None:
    """Why the Rollout was stopped for a reason that is not the candidate's, if it was."""
    for c in status.conditions:
        if c.reason in INTERRUPTIONS:
            return f"{c.reason}: {c.message}"
    return None


def reverted_after_bake(status: RolloutStatus) -> bool:
    """The Rollout promoted its candidate, then its bake found a regression."""
    return status.phase == "RolledBack" and any(c.reason == "BakeFailed" for c in status.conditions)


def at_final_gate(spec: RolloutSpec, status: RolloutStatus) -> bool:
    """The trial's canary has walked its steps and pauses at the last one, the gate."""
    return (
        status.phase == "Paused"
        and spec.strategy == "canary"
        and status.current_step_index == len(spec.steps) - 1
    )


def judge(
    spec: OptimizationPolicySpec,
    record: TrialRecord,
    values: dict[str, float],
    daily_requests: float | None,
    extra: dict[str, float] | None = None,
) -> None:
    """Write a measurement into the record: the objectives' values (what the study is
    told), every metric, and each constraint's violation (> 0 breaks it; ``extra`` adds
    e.g. ``rollout: 1`` for a rollback on evidence)."""
    record.values = [f"{values[o.metric]:.6g}" for o in spec.objectives]
    record.metrics = {k: f"{v:.6g}" for k, v in values.items()}
    cons = {
        **optimizer.constraint_values(spec.constraints, values, daily_requests),
        **(extra or {}),
    }
    record.constraints = {k: f"{v:.6g}" for k, v in cons.items()}


def infeasible(record: TrialRecord) -> bool:
    """A measured record breaks at least one constraint."""
    return any(float(v) > 0 for v in record.constraints.values())


def constraint_triggers(spec: OptimizationPolicySpec) -> list[RollbackTrigger]:
    """The policy's per-request constraints as critical rollback triggers."""
    return [
        RollbackTrigger.model_validate({"name": c.metric, c.side: bound})
        for c, bound in request_bounds(spec.constraints)
    ]


def collecting(bounds: list[TriggerResult], waited: float, limit: str) -> bool:
    """At the final gate: keep collecting while a constraint is undecided and none is
    broken, up to ``limit`` (``bounds.maxUndecided``)."""
    undecided = any(not r.decided for r in bounds)
    violated = any(r.breached for r in bounds)
    return undecided and not violated and waited <= parse_duration(limit)


@dataclass(frozen=True)
class GateVerdict:
    promote: bool
    reason: str
    inconclusive: bool = False


def gate_verdict(
    bounds: list[TriggerResult],
    *,
    daily_over: bool,
    gain: float,
    threshold: float,
    limit: str,
) -> GateVerdict:
    """Promote only when every per-request constraint confidently holds, the projected
    daily cost is within its limit and the weighted improvement beats ``threshold``;
    abort when a constraint is confidently broken, still undecided after ``limit``
    (inconclusive: no verdict for the study), or the improvement is too small."""
    violated = [r.reason for r in bounds if r.breached]
    undecided = [r.reason for r in bounds if not r.decided]
    if daily_over:
        violated.append("maxDailyCostUsd: projected daily cost over the limit")
    if violated:
        return GateVerdict(False, f"violates {'; '.join(violated)}"[:1000])
    if undecided:
        return GateVerdict(
            False, f"undecided after {limit} at the gate: {'; '.join(undecided)}"[:1000], True
        )
    if gain <= threshold:
        return GateVerdict(False, f"improvement {gain:+.2%} not above {threshold:.2%}")
    return GateVerdict(
        True, f"improvement {gain:+.2%} over stable, all constraints confidently hold"
    )


def explain(
    spec: OptimizationPolicySpec,
    records: list[TrialRecord],
    params: dict[str, str],
    screen: dict[str, str] | None,
    searched: str | None = None,
) -> str:
    """Why this candidate: the model screening it belongs to, or ``searched`` (the
    router threshold search's reason), and the nearest trials measured so far with
    their outcomes."""
    near = "; ".join(
        f"t{r.number} {r.params} {r.outcome or r.state}" + (f" score {r.score}" if r.score else "")
        for r in similar_trials(spec.search_space, records, params)
    )
    if screen is not None:
        searched = (
            f"model screening: {screen['model']} at the stable parameters, before the sampler "
            "explores"
        )
    if searched is None:
        return near
    return searched + ("; similar: " + near if near else "")


def trial_steps(spec: OptimizationPolicySpec, divisor: int) -> list[Step]:
    """A trial Rollout's steps: the template's (or the defaults), the first canary weight
    divided by ``divisor`` (``first_weight_divisor``: a risky or uncertain config starts
    on less traffic), then the final gate, a pause where the policy judges the
    objectives and promotes or aborts."""
    steps = list(spec.rollout_template.steps or DEFAULT_STEPS)
    first = next((i for i, st in enumerate(steps) if st.set_weight), None)
    if divisor > 1 and first is not None:
        weight = steps[first].set_weight or 0
        steps[first] = Step(set_weight=max(1, weight // divisor))
    # The gate's deadline: the policy decides there within maxUndecided once the data is
    # in; three times that (at least an hour) means the policy stopped looking.
    limit = max(3 * parse_duration(spec.rollout_template.analysis.bounds.max_undecided), 3600)
    return [*steps, Step(pause=PauseStep(abort_after=f"{int(limit)}s"))]


def trial_analysis(spec: OptimizationPolicySpec) -> Analysis:
    """The analysis every Rollout of the policy carries: the template's, with the default
    metrics the policy does not trade, and its hard constraints as critical triggers."""
    analysis = spec.rollout_template.analysis.model_copy(deep=True)
    if analysis.quality is None and spec.quality is not None:
        analysis.quality = spec.quality.model_copy(deep=True)
    if not analysis.metrics:
        # The policy trades its objectives against each other (e.g. quality for cost,
        # down to the floor): a canary check "no worse than stable" on those would veto
        # exactly the trade asked for. They are judged at the final gate against the
        # constraints (which also ride as critical triggers); the canary analysis guards
        # the default metrics the policy does not trade.
        traded = {o.metric for o in spec.objectives}
        analysis.metrics = [m.model_copy() for m in DEFAULT_METRICS if m.name not in traded] or [
            DEFAULT_METRICS[0].model_copy()
        ]
    # The constraints guard every Rollout of the policy from the first check on: a
    # candidate confidently breaking one is rolled back at its first step.
    names = {t.name for t in analysis.rollback_triggers}
    analysis.rollback_triggers += [t for t in constraint_triggers(spec) if t.name not in names][
        : 16 - len(analysis.rollback_triggers)
    ]
    return analysis
