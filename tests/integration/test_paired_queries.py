"""A canary and its stable asked in one query: against a real Prometheus, every built-in
template that ``by_variant`` rewrites gives each variant the number its own query gives,
a third variant of the same LLMConfig does not leak in, a variant without error series
counts zero errors, and one without any series is missing, as it is alone."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from optimizer_operator.analysis.measurement import Variants, pair_series, pair_values
from optimizer_operator.local.prometheus import LocalPrometheus
from optimizer_operator.observe.prometheus import (
    _PAIRABLE,
    BUILTIN,
    COUNTS,
    MetricsUnavailable,
    PrometheusSource,
    by_variant,
)
from tests.gateway.conftest import serve

LABELS = 'llm_config_namespace="team",llm_config="bot"'
# Per variant: requests/s, errors/s (None: no error series at all), cost/s, quality
# sum/s, and the share of requests in each latency bucket.
RATES = {
    "v1": (10.0, 0.5, 0.02, 8.0, (0.5, 0.9, 1.0)),
    "canary-0123abcd": (5.0, None, 0.004, 3.5, (0.2, 0.6, 1.0)),
    "v2": (50.0, 5.0, 1.0, 10.0, (0.9, 1.0, 1.0)),  # the same LLMConfig, not asked for
}
BUCKETS = ("0.1", "0.5", "+Inf")


def _exposition(elapsed: float) -> str:
    """Counters growing linearly with time, so every rate is the same whenever asked."""
    lines = []
    for v, (req, err, cost, quality, shares) in RATES.items():
        sel = f'{LABELS},variant="{v}"'
        n = req * elapsed
        lines.append(f'llmopt_requests_total{{{sel},status="200"}} {n}')
        if err is not None:
            lines.append(f'llmopt_errors_total{{{sel},error_type="timeout"}} {err * elapsed}')
        lines.append(f"llmopt_cost_usd_total{{{sel}}} {cost * elapsed}")
        lines.append(f'llmopt_quality_score_sum{{{sel},evaluator="ground_truth"}} '
                     f"{quality * elapsed}")  # fmt: skip
        lines.append(f'llmopt_quality_score_count{{{sel},evaluator="ground_truth"}} {n}')
        family = "gen_ai_client_operation_duration_seconds"
        for le, share in zip(BUCKETS, shares, strict=True):
            lines.append(f'{family}_bucket{{{sel},le="{le}"}} {share * n}')
        lines.append(f"{family}_count{{{sel}}} {n}")
    return "\n".join(lines) + "\n"


@pytest.fixture()
async def exporter(prometheus: LocalPrometheus) -> AsyncIterator[PrometheusSource]:
    started = time.monotonic()

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(text=_exposition(time.monotonic() - started))

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner, url = await serve(app)
    prometheus.set_targets([url.removeprefix("http://")])
    source = PrometheusSource(prometheus.url, timeout=5)
    try:
        yield source
    finally:
        prometheus.set_targets([])
        await runner.cleanup()


async def _scraped(source: PrometheusSource, seconds: float) -> None:
    """Until Prometheus has held the series for ``seconds``."""
    query = f'count_over_time(llmopt_requests_total{{{LABELS},variant="v1"}}[5m])'
    for _ in range(120):
        found = await asyncio.to_thread(source.vector, query)
        if found and found[0][1] >= seconds:  # one scrape a second
            return
        await asyncio.sleep(0.5)
    raise AssertionError(f"Prometheus did not scrape for {seconds}s")


async def test_one_query_for_both_variants_gives_what_each_query_gives(
    exporter: PrometheusSource,
) -> None:
    source = exporter
    await _scraped(source, 14)
    variants = Variants("bot", "team", stable="v1", canary="canary-0123abcd")
    paired = [t for t in sorted(_PAIRABLE) if variants.paired(t, "10s") is not None]
    # Everything but the template with vector(0) inside (error_rate's ratio) is asked in
    # one query.
    assert len(paired) == len(_PAIRABLE) - 1, [t for t in _PAIRABLE if t not in paired]
    assert by_variant(BUILTIN["error_rate"][0], ("v1", "canary-0123abcd")) is None
    checked = 0
    for template in paired:
        alone: dict[str, float] = {}
        for v in (variants.canary, variants.stable):
            with contextlib.suppress(MetricsUnavailable):  # pairwise: no series here
                alone[v] = source.value(variants.query(template, v, "10s"))
        if len(alone) < 2:
            with pytest.raises(MetricsUnavailable):
                pair_values(source, variants, template, "10s")
            continue
        both = pair_values(source, variants, template, "10s")
        # Rates of counters scraped a few ms apart from their clock: within a percent.
        assert both == pytest.approx(alone, rel=0.01), template
        checked += 1
        canary, stable = pair_series(source, variants, template, "4s", 10, 2)
        for v, got in ((variants.canary, canary), (variants.stable, stable)):
            own = source.series(variants.query(template, v, "4s"), 10, 2)
            assert len(got) >= 4 and abs(len(got) - len(own)) <= 1, template
            assert sum(got) / len(got) == pytest.approx(sum(own) / len(own), rel=0.02), template
    assert checked == 5  # latency, cost, quality, requests, errors (no pairwise series)
    # The canary has no error series: zero errors, as `or vector(0)` says for it alone.
    errors = pair_values(source, variants, COUNTS["error_rate"][0], "10s")
    assert errors[variants.canary] == 0 and errors[variants.stable] == pytest.approx(5.0, rel=0.05)
    # A variant Prometheus has nothing of is missing, as when it is asked alone.
    ghost = Variants("bot", "team", stable="v1", canary="canary-ffffffff")
    with pytest.raises(MetricsUnavailable, match="canary-ffffffff"):
        pair_values(source, ghost, BUILTIN["quality_score"][0], "10s")
