"""The optimizer's pure parts: study rebuild, warm start, ask, constraints, front, choice."""

from __future__ import annotations

from datetime import UTC, datetime

import optuna
import pytest

from optimizer_operator.api.cron import CronError, cron_matches, parse_cron
from optimizer_operator.api.llmconfig import LLMConfigObject, ModelConfig
from optimizer_operator.api.policy import (
    OptimizationPolicySpec,
    OptimizationPolicyStatus,
    Schedule,
    TrialRecord,
)
from optimizer_operator.decide import optimizer
from optimizer_operator.decide.triggers import due

STABLE = ModelConfig.model_validate(
    {"provider": "simulator", "model": "sim-medium", "parameters": {"temperature": "0.3"}}
)


def _spec(**extra: object) -> OptimizationPolicySpec:
    return OptimizationPolicySpec.model_validate(
        {
            "targetRef": {"name": "bot"},
            "objectives": [
                {"metric": "quality_score", "direction": "maximize", "weight": "0.7"},
                {"metric": "cost_per_request_usd", "direction": "minimize", "weight": "0.3"},
            ],
            "constraints": {"minQuality": "0.75", "maxDailyCostUsd": "100"},
            "searchSpace": {
                "models": [
                    {"provider": "simulator", "model": "sim-small"},
                    {"provider": "simulator", "model": "sim-medium"},
                ],
                "parameters": [
                    {
                        "name": "temperature",
                        "type": "float",
                        "low": "0",
                        "high": "1",
                        "step": "0.1",
                    },
                    {
                        "name": "maxTokens",
                        "type": "int",
                        "low": "64",
                        "high": "1024",
                        "log": True,
                        "when": {"models": ["sim-medium"]},
                    },
                ],
            },
            "sampler": {"name": "tpe", "seed": 5},
            **extra,
        }
    )


def _record(n: int, params: dict[str, str], values: list[str] | None, **kw: object) -> TrialRecord:
    return TrialRecord.model_validate(
        {
            "number": n,
            "params": params,
            "hash": f"h{n}",
            "values": values,
            "state": "Complete" if values else "Running",
            **kw,
        }
    )


def test_the_baseline_is_the_stable_config_as_a_point_of_the_space() -> None:
    spec = _spec()
    assert optimizer.baseline_params(spec, STABLE) == {
        "model": "simulator/sim-medium",
        "temperature": "0.3",
    }
    outside = STABLE.model_copy(update={"model": "sim-large"})
    assert optimizer.baseline_params(spec, outside) is None
    hot = ModelConfig.model_validate(
        {"provider": "simulator", "model": "sim-medium", "parameters": {"temperature": "1.2"}}
    )
    assert optimizer.baseline_params(spec, hot) is None  # beyond the range's high of 1
    # Rebuilt from its record, the baseline keeps exactly its own parameters.
    record = TrialRecord(
        number=0,
        params={"model": "simulator/sim-medium", "temperature": "0.3"},
        hash="b",
        state="Complete",
        values=["0.8", "0.001"],
    )
    study = optimizer.build_study(spec, [record], STABLE)
    assert study.trials[0].params == {"model": "simulator/sim-medium", "temperature": 0.3}


def test_conditional_parameters_follow_the_model() -> None:
    spec = _spec(sampler={"name": "random", "seed": 1})
    study = optimizer.build_study(spec, [], STABLE)
    seen = [optimizer.ask(study, spec, STABLE) for _ in range(20)]
    for p in seen:
        has_tokens = "maxTokens" in p.params
        assert has_tokens == (p.params["model"] == "simulator/sim-medium")
        assert p.config.model == p.params["model"].split("/")[1]
        if has_tokens:
            assert p.config.parameters.max_tokens == int(p.params["maxTokens"])


def test_the_study_is_rebuilt_with_values_constraints_and_running_trials() -> None:
    spec = _spec()
    records = [
        _record(
            0,
            {"model": "simulator/sim-medium", "temperature": "0.3", "maxTokens": "512"},
            ["0.82", "0.001"],
            constraints={"minQuality": "-0.07"},
        ),
        _record(
            1,
            {"model": "simulator/sim-small", "temperature": "0.5"},
            ["0.65", "0.0002"],
            constraints={"minQuality": "0.1"},
        ),
        TrialRecord(
            number=2,
            params={"model": "simulator/sim-small", "temperature": "0.1"},
            hash="h2",
            state="Failed",
        ),
        _record(
            3, {"model": "simulator/sim-medium", "temperature": "0.7", "maxTokens": "128"}, None
        ),
    ]
    study = optimizer.build_study(spec, records, STABLE)
    states = [t.state for t in study.trials]
    S = optuna.trial.TrialState
    assert states == [S.COMPLETE, S.COMPLETE, S.FAIL, S.RUNNING]
    assert study.trials[1].params == {"model": "simulator/sim-small", "temperature": 0.5}
    assert study.trials[1].values == [0.65, 0.0002]
    assert study.trials[1].constraints == {"minQuality": 0.1}
    assert optimizer.ask(study, spec, STABLE).trial.number == 4  # numbering carries on


def test_constraints_are_negative_when_they_hold() -> None:
    spec = _spec()
    ok = optimizer.constraint_values(
        spec.constraints, {"quality_score": 0.8, "cost_per_request_usd": 0.001}, 50_000
    )
    assert ok["minQuality"] == pytest.approx(-0.05) and ok["maxDailyCostUsd"] == pytest.approx(-50)
    bad = optimizer.constraint_values(
        spec.constraints, {"quality_score": 0.7, "cost_per_request_usd": 0.01}, 50_000
    )
    assert bad["minQuality"] > 0 and bad["maxDailyCostUsd"] > 0


def test_improvement_weighs_relative_changes() -> None:
    spec = _spec()
    gain = optimizer.improvement(
        spec.objectives,
        {"quality_score": 0.88, "cost_per_request_usd": 0.001},
        {"quality_score": 0.80, "cost_per_request_usd": 0.001},
    )
    assert gain == pytest.approx(0.7 * 0.1)
    worse = optimizer.improvement(
        spec.objectives,
        {"quality_score": 0.80, "cost_per_request_usd": 0.002},
        {"quality_score": 0.80, "cost_per_request_usd": 0.001},
    )
    assert worse == pytest.approx(-0.3)


def test_pareto_front_excludes_dominated_and_infeasible_trials_and_choice_uses_weights() -> None:
    spec = _spec()
    records = [
        _record(0, {}, ["0.80", "0.0010"]),
        _record(1, {}, ["0.85", "0.0020"]),  # better quality, dearer: on the front
        _record(2, {}, ["0.79", "0.0015"]),  # dominated by 0
        _record(3, {}, ["0.95", "0.0001"], constraints={"minQuality": "0.2"}),  # infeasible
    ]
    front = optimizer.pareto_front(records, spec.objectives)
    assert front == [0, 1]
    best = optimizer.choose(records, spec.objectives, front)
    assert best is not None and best.number == 1  # quality weighs 0.7


def test_gp_without_torch_is_refused_with_the_field() -> None:
    pytest.importorskip("optuna")
    import importlib.util

    if importlib.util.find_spec("torch") is not None:
        pytest.skip("torch is installed here, so gp is available")
    with pytest.raises(
        optimizer.SamplerUnavailable, match=r"spec\.sampler\.name: gp needs PyTorch"
    ):
        optimizer.sampler_for(_spec(sampler={"name": "gp"}).sampler, 2)


def test_cron_fields_and_time_windows() -> None:
    business = "*/10 9-17 * * 1-5"
    assert cron_matches(business, datetime(2026, 11, 25, 9, 30, tzinfo=UTC))  # Wednesday
    assert not cron_matches(business, datetime(2026, 11, 25, 9, 31, tzinfo=UTC))
    assert not cron_matches(business, datetime(2026, 11, 29, 10, 0, tzinfo=UTC))  # Sunday
    assert not cron_matches(business, datetime(2026, 11, 25, 18, 0, tzinfo=UTC))
    for bad in ("* * * *", "61 * * * *", "*/0 * * * *", "a * * * *"):
        with pytest.raises(CronError):
            parse_cron(bad)


def test_triggers_combine_with_any_and_all() -> None:
    llmc = LLMConfigObject.parse(
        {
            "metadata": {"name": "bot"},
            "spec": {"provider": "simulator", "model": "sim-large"},
            "status": {"currentHash": "abc"},
        }
    )
    status = OptimizationPolicyStatus(last_cycle_time="2026-11-25T10:00:00Z")
    now = datetime(2026, 11, 25, 10, 5, tzinfo=UTC)
    interval = {"type": "interval", "every": "3m"}
    changed = {"type": "event", "event": "llmConfigChanged"}
    any_of = Schedule.model_validate({"triggers": [interval, changed]})
    assert due(any_of, status, llmc, None, now, "ns") == "every 3m"
    all_of = Schedule.model_validate({"triggers": [interval, changed], "combine": "all"})
    status.seen_config_hash = "old"
    assert due(all_of, status, llmc, None, now, "ns") == "every 3m and event llmConfigChanged"
    assert status.seen_config_hash == "abc"
    assert due(all_of, status, llmc, None, now, "ns") is None  # seen now: no longer changed


def test_similar_trials_are_the_nearest_in_the_scaled_space() -> None:
    spec = _spec()
    records = [
        _record(0, {"model": "simulator/sim-medium", "temperature": "0.3"}, ["0.8", "0.001"]),
        _record(1, {"model": "simulator/sim-small", "temperature": "0.35"}, ["0.6", "0.0002"]),
        _record(2, {"model": "simulator/sim-medium", "temperature": "0.9"}, ["0.7", "0.001"]),
        _record(3, {"model": "simulator/sim-medium", "temperature": "0.4"}, None),  # running
    ]
    near = optimizer.similar_trials(
        spec.search_space, records, {"model": "simulator/sim-medium", "temperature": "0.4"}, k=2
    )
    assert [r.number for r in near] == [0, 2]  # same model first; running trials left out


def _three_models() -> OptimizationPolicySpec:
    spec = _spec()
    space = spec.search_space.model_copy(
        update={
            "models": [
                *spec.search_space.models,
                spec.search_space.models[0].model_copy(update={"model": "sim-large"}),
            ]
        }
    )
    return spec.model_copy(update={"search_space": space})


PRICES = {"simulator/sim-small": 1.0, "simulator/sim-medium": 4.0, "simulator/sim-large": 20.0}


def test_screening_measures_each_model_once_pricier_first_when_stable_misses_the_floor() -> None:
    spec = _three_models()
    missing = [_record(0, {"model": "simulator/sim-medium", "temperature": "0.3"}, ["0.7", "1"])]
    missing[0].constraints = {"minQuality": "0.05"}  # the stable config is below the floor
    first = optimizer.screening_params(spec, STABLE, missing, PRICES.get)
    # Up-market first, at the stable temperature; maxTokens is not active for sim-large.
    assert first == {"model": "simulator/sim-large", "temperature": "0.3"}
    missing.append(_record(1, first, ["0.9", "5"], rollout="t1"))
    second = optimizer.screening_params(spec, STABLE, missing, PRICES.get)
    assert second == {"model": "simulator/sim-small", "temperature": "0.3"}
    missing.append(_record(2, second, ["0.6", "0.5"], rollout="t2"))
    assert optimizer.screening_params(spec, STABLE, missing, PRICES.get) is None
    # Stable within the constraints: the cheaper models come first.
    holding = [_record(0, {"model": "simulator/sim-medium", "temperature": "0.3"}, ["0.8", "1"])]
    holding[0].constraints = {"minQuality": "-0.05"}
    assert optimizer.screening_params(spec, STABLE, holding, PRICES.get) == {
        "model": "simulator/sim-small",
        "temperature": "0.3",
    }
    # Random search is left random; the policy can turn screening off.
    rnd = spec.model_copy(update={"sampler": spec.sampler.model_copy(update={"name": "random"})})
    assert optimizer.screening_params(rnd, STABLE, holding, PRICES.get) is None
    off = spec.model_copy(
        update={"sampler": spec.sampler.model_copy(update={"screen_models": False})}
    )
    assert optimizer.screening_params(off, STABLE, holding, PRICES.get) is None


def test_a_screened_point_is_what_ask_proposes() -> None:
    spec = _three_models()
    study = optimizer.build_study(spec, [], STABLE)
    point = {"model": "simulator/sim-medium", "temperature": "0.3", "maxTokens": "512"}
    proposal = optimizer.ask(study, spec, STABLE, first=point)
    assert proposal.params == point
    assert proposal.config.model == "sim-medium" and proposal.config.parameters.max_tokens == 512


def test_numeric_choices_are_ordered_by_rank() -> None:
    space = _spec().search_space.model_copy(
        update={
            "parameters": [
                optimizer.ParameterRange.model_validate(
                    {"name": "maxTokens", "type": "categorical", "choices": ["64", "128", "256"]}
                )
            ]
        }
    )
    near = optimizer.param_distance(space, {"maxTokens": "64"}, {"maxTokens": "128"})
    far = optimizer.param_distance(space, {"maxTokens": "64"}, {"maxTokens": "256"})
    assert near == pytest.approx(0.5) and far == pytest.approx(1.0)


def test_grid_points_of_a_small_discrete_space_and_none_otherwise() -> None:
    spec = _spec()  # temperature is stepped (11 values) for two models, maxTokens log int
    assert optimizer.grid_points(spec, STABLE, 100) is None  # a log int range: continuous
    small = spec.model_copy(
        update={
            "search_space": spec.search_space.model_copy(
                update={
                    "parameters": [
                        optimizer.ParameterRange.model_validate(
                            {"name": "temperature", "type": "float", "low": "0.2",
                             "high": "0.4", "step": "0.1"}
                        )
                    ]
                }
            )
        }
    )  # fmt: skip
    points = optimizer.grid_points(small, STABLE, 9)
    assert points is not None and len(points) == 6
    assert {"model": "simulator/sim-small", "temperature": "0.3"} in points
    assert optimizer.grid_points(small, STABLE, 5) is None  # more than the limit


def test_a_trials_recorded_params_give_back_the_config_it_proposed() -> None:
    """``config_of`` rebuilds what ``ask`` proposed from the record alone (accept uses it)."""
    spec = _spec()
    stable = ModelConfig.model_validate(
        {"provider": "simulator", "model": "sim-medium", "parameters": {"temperature": "0.5"}}
    )
    study = optimizer.build_study(spec, [], stable)
    for _ in range(20):
        asked = optimizer.ask(study, spec, stable)
        again = optimizer.config_of(spec, stable, asked.params)
        assert again.config_hash() == asked.config.config_hash(), asked.params
