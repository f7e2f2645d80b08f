"""Pure builders: ConfigMap, version history, conditions."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from optimizer_operator.act.configmap import build_configmap, render_document
from optimizer_operator.api.conditions import set_condition
from optimizer_operator.api.llmconfig import ModelConfig
from optimizer_operator.api.variants import Variant, VariantSet
from optimizer_operator.store.history import record_version

OWNER = {
    "apiVersion": "optimizer.llmops.dev/v1alpha1",
    "kind": "LLMConfig",
    "metadata": {"name": "bot", "namespace": "ns", "uid": "uid-1"},
}


def _variant(role: str, weight: int, model: str = "m") -> Variant:
    return Variant(id="v1", role=role, hash="h", weight=weight, provider="simulator", model=model)


def test_configmap_is_owned_labelled_and_parses_back() -> None:
    variants = VariantSet(
        llm_config="bot",
        namespace="ns",
        variants=[_variant("stable", 9500), _variant("candidate", 500, "n")],
    )
    cm = build_configmap(name="bot-llm-config", key="variants.json", variants=variants, owner=OWNER)
    assert cm["metadata"]["ownerReferences"] == [
        {
            "apiVersion": OWNER["apiVersion"],
            "kind": "LLMConfig",
            "name": "bot",
            "uid": "uid-1",
            "controller": True,
        }
    ]
    assert cm["metadata"]["labels"]["optimizer.llmops.dev/llm-config"] == "bot"
    parsed = VariantSet.model_validate(json.loads(cm["data"]["variants.json"]))
    assert parsed == variants
    assert [v.weight for v in parsed.variants] == [9500, 500]


def test_render_is_deterministic() -> None:
    variants = VariantSet(llm_config="bot", namespace="ns", variants=[_variant("stable", 10000)])
    assert render_document(variants) == render_document(variants.model_copy(deep=True))


@pytest.mark.parametrize("weights", [[9000, 500], [10000, 1], [5000]])
def test_weights_must_sum_to_10000(weights: list[int]) -> None:
    roles = ["stable"] + ["candidate"] * (len(weights) - 1)
    with pytest.raises(ValidationError, match="sum to"):
        VariantSet(
            llm_config="bot",
            namespace="ns",
            variants=[_variant(r, w) for r, w in zip(roles, weights, strict=True)],
        )


def test_stable_variant_comes_first() -> None:
    with pytest.raises(ValidationError, match="first variant must be the stable"):
        VariantSet(
            llm_config="bot",
            namespace="ns",
            variants=[_variant("candidate", 5000), _variant("stable", 5000)],
        )


def _config(temperature: str) -> ModelConfig:
    return ModelConfig.model_validate(
        {"provider": "simulator", "model": "m", "parameters": {"temperature": temperature}}
    )


def test_history_adds_a_version_only_when_the_config_changes() -> None:
    h, v, new = record_version(None, _config("0.7"), source="spec", now="t1", limit=10)
    assert (v, new, len(h)) == (1, True, 1)
    h, v, new = record_version(h, _config("0.7"), source="spec", now="t2", limit=10)
    assert (v, new, len(h)) == (1, False, 1)
    h, v, new = record_version(h, _config("0.3"), source="rollout/r1", now="t3", limit=10)
    assert (v, new, len(h)) == (2, True, 2)
    assert h[-1]["source"] == "rollout/r1" and h[-1]["parameters"] == {"temperature": "0.3"}


def test_history_trims_but_never_reuses_version_numbers() -> None:
    h: list = []
    for i in range(5):
        h, v, _ = record_version(h, _config(f"0.{i}"), source="spec", now=f"t{i}", limit=3)
    assert [r["version"] for r in h] == [3, 4, 5]
    h, v, _ = record_version(h, _config("0.9"), source="spec", now="t9", limit=3)
    assert v == 6


def test_condition_transition_time_moves_only_on_status_change() -> None:
    c = set_condition(
        None, type="Ready", status="True", reason="A", message="m", generation=1, now="t1"
    )
    c = set_condition(
        c, type="Ready", status="True", reason="B", message="m2", generation=2, now="t2"
    )
    assert c[0]["lastTransitionTime"] == "t1" and c[0]["reason"] == "B"
    assert c[0]["observedGeneration"] == 2
    c = set_condition(
        c, type="Ready", status="False", reason="C", message="m3", generation=3, now="t3"
    )
    assert c[0]["lastTransitionTime"] == "t3"
    c = set_condition(
        c, type="Other", status="True", reason="D", message="", generation=3, now="t4"
    )
    assert [x["type"] for x in c] == ["Ready", "Other"]
