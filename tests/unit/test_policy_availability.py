"""A candidate is tried only if it can be served and, when cost matters, priced."""

from __future__ import annotations

from optimizer_operator.api.llmconfig import ModelConfig
from optimizer_operator.api.policy import OptimizationPolicySpec
from optimizer_operator.decide.trials import unavailable


def _spec(objective: str) -> OptimizationPolicySpec:
    return OptimizationPolicySpec.model_validate(
        {
            "targetRef": {"name": "bot"},
            "objectives": [{"metric": objective, "direction": "maximize"}],
            "searchSpace": {"models": [{"provider": "simulator", "model": "sim-small"}]},
        }
    )


def _config(provider: str, model: str) -> ModelConfig:
    endpoint = {"baseUrl": "http://llm.local/v1"} if provider == "openai" else None
    return ModelConfig.model_validate({"provider": provider, "model": model, "endpoint": endpoint})


def test_availability_needs_the_fleet_and_a_price_when_cost_matters() -> None:
    assert unavailable(_spec("quality_score"), _config("simulator", "sim-small")) == ""
    assert "not in the simulator fleet" in unavailable(
        _spec("quality_score"), _config("simulator", "sim-huge")
    )
    unpriced = _config("openai", "my-finetune-7b")
    assert unavailable(_spec("quality_score"), unpriced) == ""  # cost does not matter here
    why = unavailable(_spec("cost_per_request_usd"), unpriced)
    assert "no price in the pricing catalog" in why
    assert unavailable(_spec("cost_per_request_usd"), _config("openai", "gpt-4o-mini")) == ""
