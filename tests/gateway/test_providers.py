"""Providers: the simulator is deterministic with an exact oracle; replay answers from data."""

from __future__ import annotations

import asyncio
import json
import statistics
from decimal import Decimal
from pathlib import Path

import pytest

from optimizer_operator.api.llmconfig import Parameters
from optimizer_operator.providers import ChatRequest, ProviderError
from optimizer_operator.providers.pricing import load_catalog
from optimizer_operator.providers.replay import DEFAULT_DATASET, ReplayDataset, ReplayProvider
from optimizer_operator.providers.simulator import SimulatorProvider, load_fleet, parse_fleet


def _req(model: str, rid: str, prompt: str = "hi", **params: object) -> ChatRequest:
    return ChatRequest(
        model=model,
        messages=[{"role": "user", "content": prompt}],
        parameters=Parameters.model_validate(params),
        request_id=rid,
    )


def test_simulator_is_deterministic_under_a_seed() -> None:
    a, b = SimulatorProvider(time_scale=0), SimulatorProvider(time_scale=0)
    draws_a = [a.draw(_req("sim-large", f"r{i}")) for i in range(50)]
    draws_b = [b.draw(_req("sim-large", f"r{i}")) for i in range(50)]
    assert draws_a == draws_b
    fleet = load_fleet()
    other = SimulatorProvider(
        parse_fleet({"seed": 99, "models": {n: _model_doc(fleet, n) for n in fleet.models}}),
        time_scale=0,
    )
    assert [other.draw(_req("sim-large", f"r{i}")) for i in range(50)] != draws_a


def _model_doc(fleet, name):  # type: ignore[no-untyped-def]
    m = fleet.models[name]
    q = m.quality
    return {
        "price": {"input": str(m.price.input_per_mtok), "output": str(m.price.output_per_mtok)},
        "ttftSeconds": {"median": m.ttft_median, "sigma": m.ttft_sigma},
        "tokensPerSecond": {"mean": m.tps_mean, "stddev": m.tps_stddev},
        "answerTokens": {"median": m.answer_median, "sigma": m.answer_sigma},
        "errorRate": m.error_rate,
        "timeoutRate": m.timeout_rate,
        "quality": {
            "base": q.base,
            "bestTemperature": q.best_temperature,
            "tempSensitivity": q.temp_sensitivity,
            "bestTopP": q.best_top_p,
            "topPSensitivity": q.top_p_sensitivity,
            "truncationPenalty": q.truncation_penalty,
        },
    }


@pytest.mark.parametrize(
    ("model", "temperature", "max_tokens"),
    [("sim-large", "0.2", None), ("sim-medium", "0.9", 256), ("sim-small", "0.4", 128)],
)
def test_simulator_quality_matches_its_oracle(
    model: str, temperature: str, max_tokens: int | None
) -> None:
    sim = SimulatorProvider(time_scale=0)
    params = {"temperature": temperature}
    if max_tokens:
        params["max_tokens"] = max_tokens  # type: ignore[assignment]
    scores = [sim.draw(_req(model, f"q{i}", **params)).quality for i in range(4000)]
    oracle = sim.fleet.models[model].expected_quality(float(temperature), 1.0, max_tokens)
    stderr = statistics.stdev(scores) / len(scores) ** 0.5
    assert abs(statistics.mean(scores) - oracle) < 4 * stderr


def test_short_max_tokens_truncates_and_costs_quality() -> None:
    sim = SimulatorProvider(time_scale=0)
    result = asyncio.run(sim.complete(_req("sim-medium", "t1", max_tokens=16)))
    assert result.finish_reason == "length" and result.output_tokens == 16
    model = sim.fleet.models["sim-medium"]
    assert model.expected_quality(0.3, 1.0, 16) < 0.5 * model.expected_quality(0.3, 1.0, None)


def test_simulator_unknown_model_is_a_clear_404() -> None:
    with pytest.raises(ProviderError) as err:
        SimulatorProvider(time_scale=0).draw(_req("gpt-5", "x"))
    assert err.value.status == 404 and "sim-large" in err.value.message


def test_bad_fleet_names_the_model() -> None:
    with pytest.raises(ValueError, match=r"models\.broken"):
        parse_fleet({"models": {"broken": {"price": {}}}})


needs_dataset = pytest.mark.skipif(
    not DEFAULT_DATASET.exists(),
    reason=f"replay dataset not found at {DEFAULT_DATASET} (shared/ is not beside the checkout)",
)


@needs_dataset
def test_replay_returns_recorded_response_and_label() -> None:
    import csv

    with DEFAULT_DATASET.open(newline="") as fh:
        row = next(csv.DictReader(fh))
    provider = ReplayProvider(time_scale=0)
    for model in ("gpt-4-1106-preview", "mistralai/Mixtral-8x7B-Instruct-v0.1"):
        result = asyncio.run(provider.complete(_req(model, "r", row["prompt"])))
        assert result.text == row[f"{model}_response"]
        assert result.ground_truth == (1.0 if row[model] == "True" else 0.0)
        assert result.finish_reason == "stop" and result.output_tokens > 0


@needs_dataset
def test_replay_truncation_makes_the_answer_wrong() -> None:
    provider = ReplayProvider(time_scale=0)
    dataset = provider.dataset
    prompt = next(p for p, by in dataset.records.items() if by["gpt-4-1106-preview"].correct)
    result = asyncio.run(provider.complete(_req("gpt-4-1106-preview", "r", prompt, max_tokens=5)))
    assert result.finish_reason == "length" and result.output_tokens == 5
    assert result.ground_truth == 0.0


@needs_dataset
def test_replay_accuracy_matches_the_dataset_facts() -> None:
    dataset = ReplayProvider(time_scale=0).dataset
    acc = {
        m: statistics.mean(bool(r[m].correct) for r in dataset.records.values())
        for m in dataset.models
    }
    assert round(acc["gpt-4-1106-preview"], 3) == 0.857
    assert round(acc["mistralai/Mixtral-8x7B-Instruct-v0.1"], 3) == 0.638


def test_replay_unknown_prompt_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text('{"prompt": "known", "model": "m", "response": "yes", "correct": true}\n')
    provider = ReplayProvider(ReplayDataset.load(path), time_scale=0)
    with pytest.raises(ProviderError) as err:
        asyncio.run(provider.complete(_req("m", "x", "never seen")))
    assert err.value.status == 404 and err.value.error_type == "prompt_not_in_dataset"
    with pytest.raises(ProviderError, match="no recorded responses for model"):
        asyncio.run(provider.complete(_req("other", "x", "known")))
    assert asyncio.run(provider.complete(_req("m", "x", "  known "))).text == "yes"


def test_pricing_catalog_default_and_override(tmp_path: Path) -> None:
    default = load_catalog()
    assert default.cost("gpt-4o-mini", 1_000_000, 1_000_000) == pytest.approx(0.75)
    override = tmp_path / "prices.yaml"
    override.write_text(
        'models:\n  gpt-4o-mini: {input: "1", output: "2"}\n  my-model: {input: "3", output: "4"}\n'
    )
    catalog = load_catalog(override)
    assert catalog.cost("gpt-4o-mini", 1_000_000, 0) == pytest.approx(1.0)
    assert catalog.cost("my-model", 0, 500_000) == pytest.approx(2.0)
    assert catalog.cost("gpt-4o", 1_000_000, 0) == pytest.approx(2.5)  # kept from default
    assert catalog.cost("unknown", 1, 1) is None
    override.write_text("models:\n  bad: {input: 1}\n")
    with pytest.raises(ValueError, match=r"models\.bad"):
        load_catalog(override)


# Entries shaped as in LiteLLM's model_prices_and_context_window.json: USD per token,
# a sample_spec of placeholder text, embeddings without output cost, provider prefixes.
LITELLM_MAP = {
    "sample_spec": {
        "max_tokens": "LEGACY parameter. set to max_output_tokens if provider specifies it.",
        "input_cost_per_token": 0.0,
        "output_cost_per_token": 0.0,
        "litellm_provider": "one of https://docs.litellm.ai/docs/providers",
        "mode": "one of: chat, embedding, completion, image_generation, audio_transcription",
    },
    "gpt-4o-mini": {
        "max_tokens": 16384, "input_cost_per_token": 1.5e-07, "output_cost_per_token": 6e-07,
        "cache_read_input_token_cost": 7.5e-08, "litellm_provider": "openai", "mode": "chat",
    },
    "azure/gpt-4o-mini": {
        "input_cost_per_token": 1.65e-07, "output_cost_per_token": 6.6e-07,
        "litellm_provider": "azure", "mode": "chat",
    },
    "gemini/gemini-2.0-flash": {
        "input_cost_per_token": 1e-07, "output_cost_per_token": 4e-07,
        "litellm_provider": "gemini", "mode": "chat",
    },
    "text-embedding-3-small": {
        "input_cost_per_token": 2e-08, "litellm_provider": "openai", "mode": "embedding",
    },
}  # fmt: skip


def test_pricing_reads_litellms_cost_map(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "model_prices_and_context_window.json"
    path.write_text(json.dumps(LITELLM_MAP, indent=2))
    catalog = load_catalog(path)
    # USD per token, read exactly: 1.5e-07 is $0.15 per million.
    assert catalog.price("gpt-4o-mini").input_per_mtok == Decimal("0.15")  # type: ignore[union-attr]
    assert catalog.cost("gpt-4o-mini", 1_000_000, 1_000_000) == pytest.approx(0.75)
    # A provider-prefixed key is also its bare name, unless the map has the bare name.
    assert catalog.cost("gemini-2.0-flash", 1_000_000, 0) == pytest.approx(0.10)
    assert catalog.cost("gemini/gemini-2.0-flash", 0, 1_000_000) == pytest.approx(0.40)
    assert catalog.cost("azure/gpt-4o-mini", 1_000_000, 0) == pytest.approx(0.165)
    assert catalog.price("text-embedding-3-small") is None  # no output cost: not a chat price
    assert catalog.price("sample_spec") is None
    assert catalog.cost("gpt-4o", 1_000_000, 0) == pytest.approx(2.5)  # the default, kept

    from optimizer_operator.cli.main import main

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"m": {"input_cost_per_token": "lots", "output_cost_per_token": 1}}))
    config = tmp_path / "variants.json"
    config.write_text("{}")
    assert main(["gateway", "--config", str(config), "--pricing", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --pricing:") and "m: costs per token are not numbers" in err
