"""The Prometheus client when the server cannot be reached: calls in the cooldown after a
failure hold at once instead of each waiting out its timeout, and a query Prometheus
rejects affects only that query. The unreachable server is the loopback one of
test_dependency_faults (answering too slowly), the rejecting one the real Prometheus."""

from __future__ import annotations

import time

import pytest

from optimizer_operator.local.prometheus import LocalPrometheus
from optimizer_operator.observe.prometheus import MetricsUnavailable, PrometheusSource
from tests.faults.test_dependency_faults import BrokenPrometheus, broken  # noqa: F401

pytestmark = pytest.mark.faults


def test_after_a_timeout_calls_in_the_cooldown_hold_without_asking(
    broken: BrokenPrometheus,  # noqa: F811
) -> None:
    broken.mode, broken.delay = "slow", 3.0
    source = PrometheusSource(broken.url, timeout=1, cooldown=2)
    with pytest.raises(MetricsUnavailable, match="Read timed out"):
        source.value("up")
    asked = broken.hits
    for _ in range(5):
        with pytest.raises(MetricsUnavailable, match="unreachable less than 2 s ago"):
            source.value("up")
    assert broken.hits == asked  # none of the five reached the server
    time.sleep(2.1)  # the cooldown over: asked again
    with pytest.raises(MetricsUnavailable, match="Read timed out"):
        source.series("up", 60, 10)
    assert broken.hits > asked


def test_a_rejected_query_does_not_stop_the_next_one(prometheus: LocalPrometheus) -> None:
    source = PrometheusSource(prometheus.url, timeout=5, cooldown=60)
    with pytest.raises(MetricsUnavailable, match=r"bad_data|parse error"):
        source.value("sum(rate(")
    assert source.value("vector(1)") == 1.0
