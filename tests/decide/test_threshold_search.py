"""The router threshold's own search: screening measures a router at its own threshold,
then bisection on the quality floor closes in on the lowest threshold that meets it
(within one step), counting an inconclusive canary as not shown at the floor, never
proposing a point twice, and only when cost is minimized under a quality floor."""

from __future__ import annotations

from typing import Any

from optimizer_operator.api.llmconfig import ModelConfig
from optimizer_operator.api.policy import OptimizationPolicySpec, TrialRecord
from optimizer_operator.decide import optimizer, threshold_search

KEY = "simulator/sim-small@router:simulator/sim-large"
ROUTER = {
    "mode": "prompt",
    "threshold": "0.35",
    "artifact": {"name": "r", "digest": "a" * 64},
    "strong": {"provider": "simulator", "model": "sim-large"},
}


def _spec(**changes: Any) -> OptimizationPolicySpec:
    raw: dict[str, Any] = {
        "targetRef": {"name": "bot"},
        "objectives": [
            {"metric": "cost_per_request_usd", "direction": "minimize", "weight": "0.7"},
            {"metric": "quality_score", "direction": "maximize", "weight": "0.3"},
        ],
        "constraints": {"minQuality": "0.8"},
        "searchSpace": {
            "models": [
                {"provider": "simulator", "model": "sim-large"},
                {"provider": "simulator", "model": "sim-small"},
                {"provider": "simulator", "model": "sim-small", "router": ROUTER},
            ],
            "parameters": [
                {"name": "routerThreshold", "type": "float", "low": "0", "high": "1",
                 "step": "0.05"},
                {"name": "maxTokens", "type": "int", "low": "64", "high": "512", "step": "64"},
            ],
        },
        "sampler": {"name": "tpe", "seed": 1},
    }  # fmt: skip
    raw.update(changes)
    return OptimizationPolicySpec.model_validate(raw)


STABLE = ModelConfig.model_validate(
    {"provider": "simulator", "model": "sim-large", "parameters": {"maxTokens": 256}}
)


def _quality(threshold: float) -> float:
    """A router whose quality rises with its threshold: 0.6 at 0, 0.9 at 1, the floor 0.8
    first met at 0.7 (0.6 + 0.3 t crosses 0.8 at 2/3)."""
    return 0.6 + 0.3 * threshold


def _measured(number: int, threshold: str, quality: float, **extra: str) -> TrialRecord:
    return TrialRecord(
        number=number,
        rollout=f"t{number}",
        params={"model": KEY, "routerThreshold": threshold, "maxTokens": "256", **extra},
        hash=f"h{number}",
        state="Complete",
        outcome="Promoted" if quality >= 0.8 else "RolledBack",
        values=["0.001", f"{quality:.4f}"],
        constraints={"minQuality": f"{0.8 - quality:.4f}"},
        metrics={"quality_score": f"{quality:.4f}", "cost_per_request_usd": "0.001"},
    )


def test_screening_measures_a_router_at_its_own_threshold_and_prices_it_between_its_models() -> (
    None
):
    spec = _spec()
    prices = {"simulator/sim-small": 1.0, "simulator/sim-large": 9.0}
    base = TrialRecord(number=0, params={"model": "simulator/sim-large", "maxTokens": "256"},
                       hash="b", state="Complete", values=["0.009", "0.9"],
                       constraints={"minQuality": "-0.1"}, metrics={})  # fmt: skip
    first = optimizer.screening_params(spec, STABLE, [base], prices.get)
    assert first == {"model": "simulator/sim-small", "maxTokens": "256"}  # cheapest first
    small = TrialRecord(number=1, params=first, hash="s", state="Complete",
                        values=["0.001", "0.6"], constraints={"minQuality": "0.2"})  # fmt: skip
    second = optimizer.screening_params(spec, STABLE, [base, small], prices.get)
    assert second == {"model": KEY, "routerThreshold": "0.35", "maxTokens": "256"}
    assert optimizer.routed_price(KEY, prices.get) == 5.0
    assert optimizer.routed_price(KEY, {"simulator/sim-small": 1.0}.get) is None


def test_bisection_finds_the_lowest_threshold_at_the_floor_within_one_step() -> None:
    spec = _spec()
    records = [_measured(0, "0.35", _quality(0.35))]  # the screening point: below the floor
    asked = []
    for n in range(1, 12):
        found = threshold_search.next_point(spec, records)
        if found is None:
            break
        params, why = found
        assert params["model"] == KEY and params["maxTokens"] == "256"  # the rest held
        assert why.startswith("router threshold search: ")
        t = params["routerThreshold"]
        asked.append(t)
        records.append(_measured(n, t, _quality(float(t))))
    # 20 steps of 0.05: about log2(20) proposals, ending with 0.65 below and 0.7 at it.
    assert len(asked) <= 5, asked
    b = threshold_search.bracket(spec, records, KEY)
    assert b is not None and b.below == 0.65 and b.above == 0.7
    assert len(set(asked)) == len(asked)  # no point twice


def test_only_met_floors_walk_down_to_the_range_low_and_then_stop() -> None:
    spec = _spec()
    records = [_measured(0, "0.35", 0.85)]
    seen = []
    while (found := threshold_search.next_point(spec, records)) is not None:
        t = found[0]["routerThreshold"]
        seen.append(t)
        records.append(_measured(len(records), t, 0.85))
    assert seen[-1] == "0" and len(seen) <= 4, seen  # the cheapest end, measured last


def test_an_inconclusive_point_is_not_shown_at_the_floor_and_the_search_looks_above_it() -> None:
    spec = _spec()
    records = [_measured(0, "0.5", 0.75), _measured(1, "1", 0.9)]
    params, _ = threshold_search.next_point(spec, records) or ({}, "")
    assert params["routerThreshold"] == "0.75"
    inconclusive = TrialRecord(
        number=2, rollout="t2", params=params, hash="i", state="Failed", outcome="Inconclusive"
    )
    records.append(inconclusive)
    params, why = threshold_search.next_point(spec, records) or ({}, "")
    assert params["routerThreshold"] == "0.9" and "0.75 (inconclusive)" in why


def test_a_noisy_miss_above_a_met_floor_does_not_narrow_the_bracket_wrongly() -> None:
    spec = _spec()
    records = [_measured(0, "0.5", 0.82), _measured(1, "0.75", 0.79), _measured(2, "0.2", 0.7)]
    b = threshold_search.bracket(spec, records, KEY)
    assert b is not None and (b.below, b.above) == (0.2, 0.5)
    params, _ = threshold_search.next_point(spec, records) or ({}, "")
    assert params["routerThreshold"] == "0.35"


def test_a_point_tried_before_is_left_to_the_sampler() -> None:
    spec = _spec()
    records = [
        _measured(0, "0.5", 0.75),
        _measured(1, "1", 0.9),
        TrialRecord(number=2, rollout="t2", hash="f", state="Failed", outcome="Aborted",
                    params={"model": KEY, "routerThreshold": "0.75", "maxTokens": "256"}),
    ]  # fmt: skip
    assert threshold_search.next_point(spec, records) is None


def test_other_params_of_the_router_are_held_at_its_first_measured_point() -> None:
    spec = _spec()
    records = [_measured(0, "0.5", 0.75), _measured(1, "0.1", 0.9, maxTokens="512")]
    params, _ = threshold_search.next_point(spec, records) or ({}, "")
    assert params == {"model": KEY, "routerThreshold": "0.75", "maxTokens": "256"}


def test_no_search_without_a_cost_objective_a_quality_floor_or_a_threshold_range() -> None:
    records = [_measured(0, "0.5", 0.75)]
    assert threshold_search.next_point(_spec(), records) is not None
    quality_only = _spec(objectives=[{"metric": "quality_score", "direction": "maximize"}])
    assert threshold_search.next_point(quality_only, records) is None
    assert threshold_search.next_point(_spec(constraints={}), records) is None
    spec = _spec()
    raw = spec.model_dump(by_alias=True, mode="json", exclude_none=True)
    raw["searchSpace"]["parameters"] = raw["searchSpace"]["parameters"][1:]
    assert threshold_search.next_point(OptimizationPolicySpec.model_validate(raw), records) is None
