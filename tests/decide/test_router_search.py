"""The optimizer searching a router: a router choice in the space (its cheap model and
its strong one as a second choice), its threshold a parameter of that choice only, the
trial's config a router config with that threshold, the stable router a point of the
space, and a router whose strong model has no price refused when cost counts."""

from __future__ import annotations

from optimizer_operator.api.llmconfig import ModelConfig
from optimizer_operator.api.policy import OptimizationPolicySpec, TrialRecord
from optimizer_operator.decide import optimizer
from optimizer_operator.decide.trials import unavailable

ROUTER = {
    "mode": "prompt",
    "threshold": "0.5",
    "artifact": {"name": "r", "digest": "a" * 64},
    "strong": {"provider": "simulator", "model": "sim-large"},
}
KEY = "simulator/sim-small@router:simulator/sim-large"


def _spec(**router: object) -> OptimizationPolicySpec:
    return OptimizationPolicySpec.model_validate({
        "targetRef": {"name": "bot"},
        "objectives": [
            {"metric": "quality_score", "direction": "maximize", "weight": "0.5"},
            {"metric": "cost_per_request_usd", "direction": "minimize", "weight": "0.5"},
        ],
        "constraints": {"minQuality": "0.75"},
        "searchSpace": {
            "models": [
                {"provider": "simulator", "model": "sim-large"},
                {"provider": "simulator", "model": "sim-small", "router": {**ROUTER, **router}},
            ],
            "parameters": [
                {"name": "routerThreshold", "type": "float", "low": "0.2", "high": "0.9",
                 "step": "0.05"},
                {"name": "temperature", "type": "float", "low": "0", "high": "1", "step": "0.1"},
            ],
        },
        "sampler": {"name": "random", "seed": 3},
    })  # fmt: skip


STABLE = ModelConfig.model_validate({"provider": "simulator", "model": "sim-large"})


def test_a_router_choice_gets_its_threshold_and_a_plain_one_none() -> None:
    spec = _spec()
    study = optimizer.build_study(spec, [], STABLE)
    seen = [optimizer.ask(study, spec, STABLE) for _ in range(30)]
    routed = [p for p in seen if p.params["model"] == KEY]
    plain = [p for p in seen if p.params["model"] == "simulator/sim-large"]
    assert routed and plain
    for p in routed:
        assert p.config.model == "sim-small" and p.config.router is not None
        assert p.config.router.threshold == f"{float(p.params['routerThreshold']):.4f}"
        assert p.config.router.strong.model == "sim-large"
        assert 0.2 <= float(p.config.router.threshold) <= 0.9
        # What a record of it stands for is the same config.
        assert optimizer.config_of(spec, STABLE, p.params) == p.config
    for p in plain:
        assert "routerThreshold" not in p.params and p.config.router is None
    # Different thresholds are different configurations (and so different trials).
    assert len({p.config.config_hash() for p in routed}) > 1


def test_a_stable_router_is_a_point_of_the_space() -> None:
    spec = _spec()
    stable = ModelConfig.model_validate({"provider": "simulator", "model": "sim-small",
                                         "router": {**ROUTER, "threshold": "0.65"}})  # fmt: skip
    params = optimizer.baseline_params(spec, stable)
    assert params == {"model": KEY, "routerThreshold": "0.65"}
    record = TrialRecord(number=0, params=params, hash="b", state="Complete",
                         values=["0.8", "0.001"])  # fmt: skip
    study = optimizer.build_study(spec, [record], stable)
    assert study.trials[0].params == {"model": KEY, "routerThreshold": 0.65}


def test_a_router_whose_strong_model_has_no_price_cannot_be_tried_when_cost_counts() -> None:
    spec = _spec()
    fine = ModelConfig.model_validate({"provider": "simulator", "model": "sim-small",
                                       "router": ROUTER})  # fmt: skip
    assert unavailable(spec, fine) == ""
    unpriced = ModelConfig.model_validate({
        "provider": "simulator", "model": "sim-small",
        "router": {**ROUTER, "strong": {"provider": "openai", "model": "no-such-model"}},
    })  # fmt: skip
    assert unavailable(spec, unpriced).startswith("openai/no-such-model: no price")


def test_a_threshold_outside_0_to_1_is_refused() -> None:
    import pytest

    from optimizer_operator.api.validation import InvalidSpec, parse_spec

    raw = _spec().model_dump(by_alias=True, mode="json", exclude_none=True)
    raw["searchSpace"]["parameters"][0]["high"] = "1.5"
    with pytest.raises(InvalidSpec, match="routerThreshold: a float range within 0 to 1"):
        parse_spec(OptimizationPolicySpec, raw)
