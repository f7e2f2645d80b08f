"""The pydantic models accept what users write and refuse what they must not."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from optimizer_operator.api import (
    LLMConfigSpec,
    ModelConfig,
    OptimizationPolicySpec,
    RolloutSpec,
)
from optimizer_operator.api.common import parse_duration
from optimizer_operator.api.names import bounded, label_value, object_name
from optimizer_operator.api.validation import InvalidSpec, parse_spec

SAMPLES = Path(__file__).resolve().parents[2] / "config" / "samples"


def _sample(name: str) -> dict:
    return yaml.safe_load((SAMPLES / name).read_text())["spec"]


def test_samples_parse_into_the_models() -> None:
    llmc = parse_spec(LLMConfigSpec, _sample("llmconfig.yaml"))
    pol = parse_spec(OptimizationPolicySpec, _sample("optimizationpolicy.yaml"))
    ro = parse_spec(RolloutSpec, _sample("rollout.yaml"))
    assert llmc.parameters.temperature == "0.7"
    assert pol.objectives[1].metric == "quality_score"
    assert ro.steps[0].set_weight == 10


def test_wire_form_round_trips_without_loss() -> None:
    raw = _sample("rollout.yaml")
    spec = parse_spec(RolloutSpec, raw)
    again = parse_spec(RolloutSpec, spec.to_wire())
    assert again == spec
    assert spec.to_wire()["candidate"]["parameters"] == raw["candidate"]["parameters"]


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"parameters": {"temperature": "2.5"}}, "spec.parameters.temperature"),
        ({"parameters": {"topP": "1.5"}}, "spec.parameters.topP"),
        ({"parameters": {"maxTokens": 0}}, "spec.parameters.maxTokens"),
        ({"provider": "cohere"}, "spec.provider"),
        ({"historyLimit": 0}, "spec.historyLimit"),
        ({"unknownField": 1}, "spec.unknownField"),
    ],
)
def test_invalid_llmconfig_names_the_field(patch: dict, field: str) -> None:
    spec = {**_sample("llmconfig.yaml"), **patch}
    with pytest.raises(InvalidSpec) as err:
        parse_spec(LLMConfigSpec, spec)
    assert err.value.field == field
    assert field in str(err.value)


def test_openai_provider_requires_an_endpoint() -> None:
    with pytest.raises(InvalidSpec, match=r"spec\.endpoint: required"):
        parse_spec(LLMConfigSpec, {"provider": "openai", "model": "gpt-4o-mini"})
    assert parse_spec(LLMConfigSpec, {"provider": "simulator", "model": "sim-small"})


def test_a_step_sets_exactly_one_action() -> None:
    spec = _sample("rollout.yaml")
    spec["steps"] = [{"setWeight": 10, "pause": {"duration": "1m"}}]
    with pytest.raises(InvalidSpec) as err:
        parse_spec(RolloutSpec, spec)
    assert err.value.field == "spec.steps[0]"
    spec["steps"] = []
    with pytest.raises(InvalidSpec, match=r"spec\.steps"):
        parse_spec(RolloutSpec, spec)


def test_weights_over_100_percent_are_refused() -> None:
    spec = _sample("rollout.yaml")
    spec["steps"] = [{"setWeight": 101}]
    with pytest.raises(InvalidSpec, match=r"spec\.steps\[0\]\.setWeight"):
        parse_spec(RolloutSpec, spec)


def test_an_analysis_metric_that_checks_nothing_is_refused() -> None:
    spec = _sample("rollout.yaml")
    spec["analysis"] = {"metrics": [{"name": "error_rate", "comparison": "none"}]}
    with pytest.raises(InvalidSpec, match="checks nothing") as err:
        parse_spec(RolloutSpec, spec)
    assert err.value.field == "spec.analysis.metrics[0].comparison"
    spec["analysis"]["metrics"][0]["threshold"] = {"max": "0.05"}
    assert parse_spec(RolloutSpec, spec)
    # A metric of the candidate against stable has no stable series to compare with.
    spec["analysis"] = {"metrics": [{"name": "win_rate", "threshold": {"min": "0.45"}}]}
    with pytest.raises(InvalidSpec, match="already compares the candidate") as err:
        parse_spec(RolloutSpec, spec)
    assert err.value.field == "spec.analysis.metrics[0].comparison"
    spec["analysis"]["metrics"][0]["comparison"] = "none"
    assert parse_spec(RolloutSpec, spec)


def test_policy_objective_must_name_a_known_metric() -> None:
    spec = _sample("optimizationpolicy.yaml")
    spec["objectives"] = [{"metric": "happiness", "direction": "maximize"}]
    with pytest.raises(InvalidSpec, match=r"spec\.objectives\[0\]\.metric: .happiness."):
        parse_spec(OptimizationPolicySpec, spec)
    spec["objectives"] = [{"metric": "csat", "direction": "maximize"}]  # from spec.metrics
    assert parse_spec(OptimizationPolicySpec, spec)


@pytest.mark.parametrize(
    ("param", "message"),
    [
        ({"name": "temperature", "type": "float", "low": "1", "high": "0.5"}, "low must be below"),
        ({"name": "maxTokens", "type": "int", "low": "0", "high": "10", "log": True}, "log scale"),
        ({"name": "topP", "type": "categorical"}, "needs choices"),
        ({"name": "temperature", "type": "float"}, "needs low and high"),
    ],
)
def test_search_space_ranges_are_checked(param: dict, message: str) -> None:
    spec = _sample("optimizationpolicy.yaml")
    spec["searchSpace"] = {"parameters": [param]}
    with pytest.raises(InvalidSpec, match=message) as err:
        parse_spec(OptimizationPolicySpec, spec)
    assert err.value.field in (
        "spec.searchSpace.parameters[0].low",
        "spec.searchSpace.parameters[0].choices",
    )


def test_unknown_sampler_is_refused() -> None:
    spec = _sample("optimizationpolicy.yaml")
    spec["sampler"] = {"name": "cmaes-but-wrong"}
    with pytest.raises(InvalidSpec, match=r"spec\.sampler\.name"):
        parse_spec(OptimizationPolicySpec, spec)


def test_trigger_needs_its_fields() -> None:
    spec = _sample("optimizationpolicy.yaml")
    spec["schedule"] = {"triggers": [{"type": "threshold", "metric": "error_rate"}]}
    with pytest.raises(InvalidSpec, match="threshold trigger needs operator, value") as err:
        parse_spec(OptimizationPolicySpec, spec)
    assert err.value.field == "spec.schedule.triggers[0].operator"


def test_config_hash_ignores_key_order_and_tracks_values() -> None:
    a = ModelConfig.model_validate(
        {"provider": "simulator", "model": "m", "parameters": {"temperature": "0.7", "topP": "1"}}
    )
    b = ModelConfig.model_validate(
        {"provider": "simulator", "model": "m", "parameters": {"topP": "1", "temperature": "0.7"}}
    )
    c = ModelConfig.model_validate(
        {"provider": "simulator", "model": "m", "parameters": {"topP": "1", "temperature": "0.3"}}
    )
    assert a.config_hash() == b.config_hash() != c.config_hash()


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("5m", 300), ("1h30m", 5400), ("2d", 172800), ("250ms", 0.25)],
)
def test_durations_parse(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5", "m5", "1.5h", "-1s"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_non_object_spec_is_refused() -> None:
    with pytest.raises(InvalidSpec) as err:
        parse_spec(LLMConfigSpec, None)
    assert err.value.field == "spec"


RULE = {
    "name": "r",
    "metric": "quality_score",
    "operator": "lt",
    "value": "0.7",
    "action": {"type": "alert"},
}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"searchSpace": {}}, "spec.searchSpace"),
        ({"constraints": {"minQuality": "1.2"}}, "spec.constraints.minQuality"),
        ({"constraints": {"maxErrorRate": "-0.1"}}, "spec.constraints.maxErrorRate"),
        ({"constraints": {"maxLatencyP95Seconds": "0"}}, "spec.constraints.maxLatencyP95Seconds"),
        (
            {"objectives": [{"metric": "quality_score", "direction": "maximize"}] * 2},
            "spec.objectives[1].metric",
        ),
        (
            {"objectives": [{"metric": "quality_score", "direction": "maximize", "weight": "0"}]},
            "spec.objectives[0].weight",
        ),
        (
            {
                "searchSpace": {
                    "parameters": [{"name": "topP", "type": "float", "low": "0.5", "high": "1.5"}]
                }
            },
            "spec.searchSpace.parameters[0]",
        ),
        ({"sampler": {"name": "cmaes"}}, "spec.sampler.name"),
        # Rules and triggers: a metric nothing can read (a typo would be NoData forever),
        # an action that cannot be carried out or whose parameters are not valid.
        (
            {"rules": [{**RULE, "metric": "qualty_score"}]},
            "spec.rules[0].metric",
        ),
        (
            {"rules": [{**RULE, "also": [{"metric": "nope", "operator": "gt", "value": "1"}]}]},
            "spec.rules[0].also[0].metric",
        ),
        (
            {
                "rules": [
                    {**RULE, "action": {"type": "configChange", "parameters": {"temprature": "1"}}}
                ]
            },
            "spec.rules[0].action.parameters.temprature",
        ),
        (
            {
                "rules": [
                    {**RULE, "action": {"type": "configChange", "parameters": {"temperature": "7"}}}
                ]
            },
            "spec.rules[0].action.parameters.temperature",
        ),
        (
            {"rules": [{**RULE, "action": {"type": "configChange"}}]},
            "spec.rules[0].action.parameters",
        ),
        ({"rules": [{**RULE, "action": {"type": "modelSwitch"}}]}, "spec.rules[0].action.model"),
        ({"rules": [RULE, RULE]}, "spec.rules[1].name"),
        (
            {
                "schedule": {
                    "triggers": [
                        {"type": "threshold", "metric": "latncy", "operator": "gt", "value": "1"}
                    ]
                }
            },
            "spec.schedule.triggers[0].metric",
        ),
        (
            {"schedule": {"triggers": [{"type": "cron", "cron": "99 * * * *"}]}},
            "spec.schedule.triggers[0].cron",
        ),
    ],
)
def test_bad_policies_are_invalid_naming_the_field(change: dict[str, object], field: str) -> None:
    raw = {**_sample("optimizationpolicy.yaml"), **change}
    with pytest.raises(InvalidSpec) as info:
        parse_spec(OptimizationPolicySpec, raw)
    assert str(info.value).startswith(field), str(info.value)


@pytest.mark.parametrize(
    ("analysis", "field"),
    [
        ({"rollbackTriggers": [{"name": "errr_rate", "max": "0.1"}]}, "rollbackTriggers[0].query"),
        ({"metrics": [{"name": "csat"}]}, "metrics[0].query"),
    ],
)
def test_a_rollout_metric_that_is_not_built_in_needs_its_query(
    analysis: dict[str, object], field: str
) -> None:
    raw = {
        "targetRef": {"name": "bot"},
        "candidate": {"provider": "simulator", "model": "sim-small"},
        "analysis": analysis,
    }
    with pytest.raises(InvalidSpec) as info:
        parse_spec(RolloutSpec, raw)
    assert str(info.value).startswith(f"spec.analysis.{field}"), str(info.value)
    named = dict(analysis)
    key = next(iter(named))
    named[key] = [{**named[key][0], "query": "sum(up)"}]  # type: ignore[index]
    assert parse_spec(RolloutSpec, {**raw, "analysis": named})


def test_derived_names_fit_the_kubernetes_limits_and_stay_unique() -> None:
    assert bounded("short", 63) == "short"
    long_a, long_b = "a" * 100 + "-x", "a" * 100 + "-y"
    assert len(label_value(long_a)) == 63 and label_value(long_a) != label_value(long_b)
    assert label_value(long_a) == label_value(long_a)  # the same on every pass
    assert len(object_name("p" * 253 + "-t12")) == 253
    assert not bounded("a" * 54 + "-" * 20, 63).split("-")[0].endswith("-")
