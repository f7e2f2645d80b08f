"""The gateway as a process: scraped by a real Prometheus; logs without secrets or prompts."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web

from optimizer_operator.api.llmconfig import Parameters
from optimizer_operator.local.cluster import _die_with_parent, free_port, stop_pids
from optimizer_operator.local.prometheus import LocalPrometheus
from optimizer_operator.providers import ChatRequest
from optimizer_operator.providers.pricing import load_catalog
from optimizer_operator.providers.serve import build_app
from optimizer_operator.providers.simulator import SimulatorProvider, parse_fleet
from optimizer_operator.providers.tokens import count_messages
from tests.gateway.conftest import post_chat, serve, variant, write_variants

FLEET = {
    "seed": 11,
    "models": {
        name: {
            "price": price,
            "ttftSeconds": {"median": "0.05", "sigma": "0.2"},
            "tokensPerSecond": {"mean": "400", "stddev": "20"},
            "answerTokens": {"median": 60, "sigma": "0.3"},
            "errorRate": "0",
            "timeoutRate": "0",
            "quality": {
                "base": base,
                "bestTemperature": "0.3",
                "tempSensitivity": "0.1",
                "bestTopP": "1",
                "topPSensitivity": "0",
                "truncationPenalty": "0.5",
            },
        }
        for name, price, base in [
            ("sim-a", {"input": "2", "output": "6"}, "0.9"),
            ("sim-b", {"input": "0.2", "output": "0.6"}, "0.7"),
        ]
    },
}


class Process:
    def __init__(self, args: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.log = log
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "optimizer_operator", *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {})},
                preexec_fn=_die_with_parent,
            )

    def wait_http(self, url: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                with urllib.request.urlopen(url, timeout=1) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"{url} not up: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        stop_pids([self.proc.pid])
        self.proc.wait(timeout=5)


@pytest.fixture()
def fleet_file(tmp_path: Path) -> Path:
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump(FLEET))
    return path


@pytest.fixture()
def simulator_process(tmp_path: Path, fleet_file: Path) -> Iterator[str]:
    port = free_port()
    proc = Process(
        ["simulator", "--fleet", str(fleet_file), "--time-scale", "0.1", "--port", str(port)],
        tmp_path / "simulator.log",
    )
    proc.wait_http(f"http://127.0.0.1:{port}/healthz")
    yield f"http://127.0.0.1:{port}/v1"
    proc.stop()


def _gateway(
    tmp_path: Path, variants: list[dict[str, Any]], *extra: str, env: dict[str, str] | None = None
) -> tuple[Process, str]:
    config = tmp_path / "variants.json"
    write_variants(config, variants)
    port = free_port()
    proc = Process(
        ["gateway", "--config", str(config), "--host", "127.0.0.1", "--port", str(port), *extra],
        tmp_path / "gateway.log",
        env,
    )
    proc.wait_http(f"http://127.0.0.1:{port}/readyz")
    return proc, f"http://127.0.0.1:{port}"


async def test_prometheus_sees_per_variant_series_with_exact_values(
    tmp_path: Path, simulator_process: str, fleet_file: Path
) -> None:
    variants = [
        variant(
            "v1",
            7000,
            role="stable",
            provider="openai",
            model="sim-a",
            base_url=simulator_process,
            ground_truth=True,  # the project's simulator server: its quality is trusted
            parameters={"temperature": "0.3"},
        ),
        variant(
            "c1",
            3000,
            provider="openai",
            model="sim-b",
            base_url=simulator_process,
            ground_truth=True,
            parameters={"temperature": "0.8", "maxTokens": 50},
        ),
    ]
    # The gateway prices simulator models from the same fleet file the simulator serves.
    gateway, url = _gateway(tmp_path, variants, env={"LLMOPT_SIMULATOR_FLEET": str(fleet_file)})
    prom = LocalPrometheus(tmp_path / "prom", [url.removeprefix("http://")], interval="1s")
    prom.start()
    try:
        sim = SimulatorProvider(parse_fleet(FLEET), time_scale=0)
        catalog = load_catalog()
        expected: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        counts: Counter[str] = Counter()
        messages = [{"role": "user", "content": "How many legs do 3 spiders have?"}]
        async with aiohttp.ClientSession() as s:
            for i in range(0, 300, 50):
                import asyncio

                answers = await asyncio.gather(
                    *(
                        post_chat(
                            s,
                            url,
                            {"model": "x", "messages": messages},
                            headers={"X-Request-Id": f"p-{j}"},
                        )
                        for j in range(i, i + 50)
                    )
                )
                for j, (status, body, headers) in zip(range(i, i + 50), answers, strict=True):
                    assert status == 200, body
                    vid = headers["X-LLMOpt-Variant"]
                    v = next(x for x in variants if x["id"] == vid)
                    counts[vid] += 1
                    use = body["usage"]
                    assert use["prompt_tokens"] == count_messages(messages)
                    e = expected[vid]
                    e["in"] += use["prompt_tokens"]
                    e["out"] += use["completion_tokens"]
                    price = sim.fleet.models[v["model"]].price
                    e["cost"] += price.cost(use["prompt_tokens"], use["completion_tokens"])
                    # The oracle: the simulator's own draw for this request id.
                    e["quality"] += sim.draw(
                        ChatRequest(
                            model=v["model"],
                            messages=messages,
                            parameters=Parameters.model_validate(v["parameters"]),
                            request_id=f"p-{j}",
                        )
                    ).quality
        assert catalog.price("sim-a") is None  # priced from the fleet, not the catalog

        def scraped() -> bool:
            got = prom.query('sum(llmopt_requests_total{status="200"})')
            return bool(got) and float(got[0]["value"][1]) == 300

        deadline = time.monotonic() + 30
        while not scraped():
            assert time.monotonic() < deadline, "Prometheus never saw all 300 requests"
            time.sleep(0.5)

        def by_variant(q: str) -> dict[str, float]:
            return {r["metric"]["variant"]: float(r["value"][1]) for r in prom.query(q)}

        assert by_variant('sum by (variant) (llmopt_requests_total{llm_config="bot"})') == {
            k: float(v) for k, v in counts.items()
        }
        tokens_in = by_variant(
            'sum by (variant) (gen_ai_client_token_usage_sum{gen_ai_token_type="input"})'
        )
        tokens_out = by_variant(
            'sum by (variant) (gen_ai_client_token_usage_sum{gen_ai_token_type="output"})'
        )
        cost = by_variant("sum by (variant) (llmopt_cost_usd_total)")
        quality = by_variant(
            'sum by (variant) (llmopt_quality_score_sum{evaluator="ground_truth"})'
        )
        qcount = by_variant(
            'sum by (variant) (llmopt_quality_score_count{evaluator="ground_truth"})'
        )
        for vid, e in expected.items():
            assert tokens_in[vid] == e["in"] and tokens_out[vid] == e["out"]
            assert cost[vid] == pytest.approx(e["cost"], rel=1e-9)
            assert qcount[vid] == counts[vid]
            assert quality[vid] == pytest.approx(e["quality"], rel=1e-9)
        assert prom.query("sum(llmopt_unpriced_requests_total)") in (
            [],
            [{"metric": {}, "value": [0, "0"]}],
        )
        # sim-b with maxTokens 50 and a 60-token median truncates often: lower quality.
        assert quality["c1"] / counts["c1"] < quality["v1"] / counts["v1"]

        series = prom.query('gen_ai_client_operation_duration_seconds_count{variant="c1"}')
        labels = series[0]["metric"]
        assert labels["llm_config"] == "bot" and labels["gen_ai_provider_name"] == "openai"
        assert labels["gen_ai_request_model"] == "sim-b"
        assert labels["gen_ai_operation_name"] == "chat"
        # Over all observations (the load lasted about one scrape, too short for rate()).
        p95 = by_variant(
            "histogram_quantile(0.95, sum by (le, variant) ("
            "gen_ai_client_operation_duration_seconds_bucket))"
        )
        assert set(p95) == {"v1", "c1"} and all(v > 0 for v in p95.values())
    finally:
        prom.stop()
        gateway.stop()


async def test_logs_never_contain_api_keys_or_prompts(tmp_path: Path) -> None:
    """The upstream here records the Authorization header it receives, to prove the key
    was really used; it serves the real simulator app."""
    seen_auth: list[str] = []

    @web.middleware
    async def capture(request: web.Request, handler: Any) -> web.StreamResponse:
        seen_auth.append(request.headers.get("Authorization", ""))
        return await handler(request)

    upstream = build_app(SimulatorProvider(time_scale=0.01))
    upstream.middlewares.append(capture)
    runner, upstream_url = await serve(upstream)
    secrets = tmp_path / "secrets" / "llm-keys"
    secrets.mkdir(parents=True)
    (secrets / "openai").write_text("sk-FILE-KEY-7f3a9\n")
    dead_port = free_port()
    variants = [
        variant(
            "v1",
            5000,
            role="stable",
            provider="openai",
            model="sim-small",
            base_url=upstream_url + "/v1",
        ),
        variant(
            "c1",
            5000,
            provider="openai",
            model="sim-small",
            base_url=f"http://127.0.0.1:{dead_port}/v1",
        ),
    ]
    variants[0]["endpoint"]["apiKeySecretRef"] = {"name": "llm-keys", "key": "openai"}
    gateway, url = _gateway(
        tmp_path,
        variants,
        "--verbose",
        "--max-attempts",
        "1",
        env={"OPENAI_API_KEY": "sk-ENV-KEY-41c2e", "LLMOPT_SECRETS_DIR": str(tmp_path / "secrets")},
    )
    try:
        prompt = "PROMPT-CANARY-8812 what is my password?"
        async with aiohttp.ClientSession() as s:
            statuses = Counter()
            for i in range(20):
                status, _body, _ = await post_chat(
                    s,
                    url,
                    {"messages": [{"role": "user", "content": prompt}]},
                    headers={"X-Request-Id": f"log-{i}"},
                )
                statuses[status] += 1
            await post_chat(s, url, raw=b'{"messages": "' + prompt.encode() + b'"}')
            await post_chat(s, url, raw=prompt.encode())
    finally:
        gateway.stop()
        await runner.cleanup()
    assert statuses[200] > 0 and statuses[502] > 0  # both the ok and the error paths ran
    assert "Bearer sk-FILE-KEY-7f3a9" in seen_auth  # the mounted Secret was used upstream
    logs = gateway.log.read_text()
    assert "variant=c1 failed: 502" in logs  # debug/warning lines were written
    for secret in ("sk-FILE-KEY-7f3a9", "sk-ENV-KEY-41c2e", "PROMPT-CANARY-8812"):
        assert secret not in logs
