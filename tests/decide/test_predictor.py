"""The predictor: kernel regression over measured trials, with honest uncertainty."""

from __future__ import annotations

from optimizer_operator.api.policy import SearchSpace, TrialRecord
from optimizer_operator.decide.predictor import predict, violation_probability

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
