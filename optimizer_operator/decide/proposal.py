"""What becomes of a proposed candidate before any traffic moves — pure choices on the
policy's records and a prediction:

- already measured (the sampler asked again): told its result again, no Rollout;
- quarantined on the LLMConfig, or not servable (not in the fleet, no price): Failed;
- proven infeasible by a measured neighbour, or confidently predicted so: recorded with
  the prediction, no Rollout;
- otherwise tried, on a first canary weight as small as the prediction's risk says.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..api.common import parse_decimal
from ..api.llmconfig import ModelConfig
from ..api.policy import OptimizationPolicySpec, TrialRecord
from . import optimizer, predictor, trials

BANDIT_ARMS = 8  # the Rollout's candidate plus its 7 arms


@dataclass(frozen=True)
class Refusal:
    """A candidate settled without a Rollout."""

    state: str
    outcome: str
    reason: str


def bandit_points(spec: OptimizationPolicySpec, stable: ModelConfig) -> list[dict[str, str]] | None:
    """The space's points when the policy serves them all as one bandit, else None."""
    if spec.strategy == "trials":
        return None
    return optimizer.grid_points(spec, stable, BANDIT_ARMS + 1)


def measured_before(record: TrialRecord, records: list[TrialRecord]) -> TrialRecord | None:
    """The completed trial of the same config, if the sampler asked for it again."""
    return next(
        (
            r
            for r in records
            if r.hash == record.hash and r.state == "Complete" and r.values is not None
        ),
        None,
    )


def recommended_before(record: TrialRecord, records: list[TrialRecord]) -> TrialRecord | None:
    """The earlier recommendation of the same config (mode recommend), if any."""
    return next((r for r in records if r.hash == record.hash and r.outcome == "Recommended"), None)


def refusal(
    spec: OptimizationPolicySpec, record: TrialRecord, config: ModelConfig, quarantined: set[str]
) -> Refusal | None:
    """Why the candidate cannot be tried at all, or None."""
    if record.hash in quarantined:
        return Refusal("Failed", "Quarantined", "rolled back before (LLMConfig quarantine)")
    missing = trials.unavailable(spec, config)
    if missing:
        return Refusal("Failed", "Unavailable", missing)
    return None


def predicted_violations(
    spec: OptimizationPolicySpec, forecast: predictor.Prediction, daily_requests: float | None
) -> list[str]:
    """Constraints the prediction is confident the config breaks (the daily budget with
    the LLMConfig's current request rate, when known)."""
    c = spec.constraints
    out = []
    cost = forecast.metrics.get("cost_per_request_usd")
    if c.max_daily_cost_usd is not None and cost is not None and daily_requests is not None:
        projected = predictor.Predicted(
            cost.mean * daily_requests, cost.stddev * daily_requests, cost.neighbours
        )
        budget = float(parse_decimal(c.max_daily_cost_usd))
        if predictor.confident_violation(projected, budget, upper=True):
            out.append(f"daily cost predicted ${projected.mean:.2f}, budget ${budget:g}")
    for metric, (limit, upper) in trials.request_bounds_of(spec).items():
        p = forecast.metrics.get(metric)
        if p is not None and predictor.confident_violation(p, limit, upper):
            out.append(f"{metric} predicted {p.mean:.4g} ± {p.stddev:.2g}, bound {limit:g}")
    return out


def predicted_infeasible(
    spec: OptimizationPolicySpec,
    records: list[TrialRecord],
    params: dict[str, str],
    forecast: predictor.Prediction,
    daily_requests: float | None,
) -> tuple[dict[str, float], str] | None:
    """The values to tell the study and why, when a measured neighbour proves the
    candidate infeasible (monotone in maxTokens) or the prediction is confident it is;
    None when it must be tried (or the values would not cover every objective)."""
    bound = predictor.bounded_violation(records, params, trials.monotone_bounds(spec))
    if bound is not None:
        evidence, why = bound
        known = {m: float(v) for m, v in evidence.metrics.items()}
        if all(o.metric in known for o in spec.objectives):
            return known, why
    doomed = predicted_violations(spec, forecast, daily_requests)
    if doomed:
        predicted = {m: p.mean for m, p in forecast.metrics.items()}
        if all(o.metric in predicted for o in spec.objectives):
            return predicted, "; ".join(doomed)
    return None


def first_weight_divisor(spec: OptimizationPolicySpec, forecast: predictor.Prediction) -> int:
    """How much smaller the trial's first canary step is (``trials.first_weight_divisor``)."""
    chance = predictor.violation_chance(forecast, trials.request_bounds_of(spec))
    return trials.first_weight_divisor(forecast.confidence, chance)
