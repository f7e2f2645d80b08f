"""The predictor: kernel regression over measured trials, with honest uncertainty."""

from __future__ import annotations

from optimizer_operator.api.policy import SearchSpace, TrialRecord
from optimizer_operator.decide.predictor import (
    bounded_violation,
    predict,
    violation_chance,
    violation_probability,
)

SPACE = SearchSpace.model_validate(
    {
        "models": [
            {"provider": "simulator", "model": "sim-small"},
            {"provider": "simulator", "model": "sim-medium"},
        ],
        "parameters": [{"name": "temperature", "type": "float", "low": "0", "high": "1"}],
    }
)


def _r(n: int, model: str, temp: str, quality: str) -> TrialRecord:
    return TrialRecord(
        number=n,
        params={"model": f"simulator/{model}", "temperature": temp},
        hash=f"h{n}",
        state="Complete",
        values=[quality],
        metrics={"quality_score": quality},
    )


RECORDS = [
    _r(0, "sim-small", "0.3", "0.66"),
    _r(1, "sim-small", "0.4", "0.67"),
    _r(2, "sim-small", "0.5", "0.66"),
    _r(3, "sim-medium", "0.3", "0.82"),
]


def test_near_measured_trials_give_a_confident_prediction() -> None:
    p = predict(SPACE, RECORDS, {"model": "simulator/sim-small", "temperature": "0.45"})
    q = p.metrics["quality_score"]
    assert abs(q.mean - 0.665) < 0.01 and p.confidence == "high"
    assert violation_probability(q, 0.75, upper=False) > 0.9  # below a 0.75 floor


def test_far_from_any_trial_the_prediction_is_unsure() -> None:
    p = predict(SPACE, RECORDS, {"model": "simulator/sim-medium", "temperature": "0.9"})
    assert p.confidence == "low"
    assert predict(SPACE, [], {"model": "simulator/sim-small"}).confidence == "low"


def _budget(n: int, tokens: str, quality: str, cost: str, outcome: str = "") -> TrialRecord:
    return TrialRecord(
        number=n,
        params={"model": "simulator/sim-medium", "maxTokens": tokens},
        hash=f"h{n}",
        state="Complete",
        outcome=outcome,  # type: ignore[arg-type]
        values=[quality],
        metrics={"quality_score": quality, "cost_per_request_usd": cost},
    )


def test_a_smaller_answer_budget_than_one_below_the_floor_is_proven_infeasible() -> None:
    records = [_budget(1, "256", "0.70", "0.002")]
    floor = {"quality_score": (0.75, False)}
    found = bounded_violation(records, {"model": "simulator/sim-medium", "maxTokens": "128"}, floor)
    assert found is not None and found[0].number == 1 and "maxTokens 256 >= 128" in found[1]
    # A larger budget, another model, or a prediction proves nothing.
    assert (
        bounded_violation(records, {"model": "simulator/sim-medium", "maxTokens": "512"}, floor)
        is None
    )
    assert (
        bounded_violation(records, {"model": "simulator/sim-small", "maxTokens": "128"}, floor)
        is None
    )
    predicted = [_budget(1, "256", "0.70", "0.002", outcome="PredictedInfeasible")]
    assert (
        bounded_violation(predicted, {"model": "simulator/sim-medium", "maxTokens": "128"}, floor)
        is None
    )
    # A cost cap works the other way: a larger budget than one already over it.
    cap = {"cost_per_request_usd": (0.001, True)}
    assert bounded_violation(records, {"model": "simulator/sim-medium", "maxTokens": "512"}, cap)
    assert (
        bounded_violation(records, {"model": "simulator/sim-medium", "maxTokens": "128"}, cap)
        is None
    )


def test_the_first_canary_weight_shrinks_with_the_risk_the_prediction_sees() -> None:
    """Not confident enough to skip, but an even chance or worse of breaking the floor: a
    quarter of the template's first weight; merely unsure: half; else all of it."""
    from optimizer_operator.decide.trials import first_weight_divisor

    one = [_r(0, "sim-small", "0.3", "0.70")]  # a single trial: too little to skip on
    p = predict(SPACE, one, {"model": "simulator/sim-small", "temperature": "0.35"})
    floor = {"quality_score": (0.75, False)}
    chance = violation_chance(p, floor)
    assert chance >= 0.5 and p.metrics["quality_score"].neighbours < 1.5
    assert first_weight_divisor(p.confidence, chance) == 4
    safe = violation_chance(p, {"quality_score": (0.50, False)})
    assert safe < 0.5 and first_weight_divisor(p.confidence, safe) == 2  # low confidence
    near = predict(SPACE, RECORDS, {"model": "simulator/sim-small", "temperature": "0.45"})
    ok = violation_chance(near, {"quality_score": (0.60, False)})
    assert near.confidence == "high" and first_weight_divisor(near.confidence, ok) == 1
    # Another model's trial says little about this one: no chance is read from it.
    other = predict(SPACE, one, {"model": "simulator/sim-medium", "temperature": "0.3"})
    assert other.metrics["quality_score"].neighbours < 0.5
    assert violation_chance(other, floor) == 0.0
