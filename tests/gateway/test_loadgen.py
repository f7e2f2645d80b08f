"""The load generator's summary against the real gateway."""

from __future__ import annotations

from optimizer_operator.loadgen import LoadGenerator, format_summary
from optimizer_operator.providers.simulator import SimulatorProvider
from tests.gateway.conftest import GatewayFactory, variant


async def test_loadgen_summarizes_per_variant_cost_and_quality(
    start_gateway: GatewayFactory,
) -> None:
    sim = SimulatorProvider(time_scale=0)
    gateway, url = await start_gateway(
        [
            variant(
                "v1", 5000, role="stable", model="sim-large", parameters={"temperature": "0.2"}
            ),
            variant("c1", 5000, model="sim-small", parameters={"temperature": "0.4"}),
        ],
        providers={"simulator": sim},
    )
    gen = LoadGenerator(url, ["q1", "q2", "q3"], seed=5, users=200)
    result = await gen.run(rate=400, requests=800, arrivals="uniform")
    await gateway.evaluations.drain()
    summary = result.as_dict()
    assert summary["requests"] == 800 and summary["ok"] + summary["errors"] == 800
    variants = summary["variants"]
    assert set(variants) <= {"v1", "c1", "-"}
    assert variants["v1"]["requests"] + variants["c1"]["requests"] >= 790
    # Expected quality from the simulator's oracle, within sampling error.
    for vid, model, t in (("v1", "sim-large", 0.2), ("c1", "sim-small", 0.4)):
        oracle = sim.fleet.models[model].expected_quality(t, 1.0, None)
        assert abs(variants[vid]["mean_quality"] - oracle) < 0.03
    assert variants["v1"]["cost_per_request_usd"] > 10 * variants["c1"]["cost_per_request_usd"]
    text = format_summary(summary)
    assert "requests 800" in text and "v1" in text and "c1" in text
