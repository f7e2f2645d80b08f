"""A policy judged on quality_score whose stable variant gets no quality scores: the
baseline's collection ends at its deadline (two windows) as Failed/NoQualityData, the
QualitySignal turns False with one Event naming what to configure, no trial is proposed
while scores are missing, and once they arrive a new baseline starts.

No cluster and no Prometheus here: the metric source is a stand-in answering as
Prometheus would for a gateway with no evaluator (requests, no quality series); the
same path runs end to end against the real Prometheus in
tests/integration/test_quality_signal.py."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from optimizer_operator.api.policy import OptimizationPolicyStatus
from optimizer_operator.observe.policy_metrics import PolicyMetrics
from optimizer_operator.observe.prometheus import MetricsUnavailable
from optimizer_operator.reconcile import policy_quality
from optimizer_operator.reconcile.trial_settle import settle
from optimizer_operator.reconcile.trial_start import propose
from tests.decide.test_optimizer import _spec
from tests.decide.test_proposal import NOW, _cycle


class NoEvaluator:
    """Answers like Prometheus scraping a gateway with traffic and no quality evaluator
    (``scores`` > 0: one that has them)."""

    def __init__(self) -> None:
        self.scores = 0.0

    def value(self, query: str) -> float:
        if "llmopt_requests_total" in query and "quality" not in query:
            return 500.0 if "increase" in query else 1.0
        if "quality_score" in query and not self.scores:
            raise MetricsUnavailable(f"no data for {query}")
        return 0.8 if "quality_score" in query else 0.001

    def vector(self, query: str) -> list[tuple[dict[str, str], float]]:
        if "llmopt_quality_score_count" in query:
            return [({}, self.scores)] if self.scores else []
        return []

    def series(self, *args: Any, **kwargs: Any) -> list[float]:
        return []


def _at(status: OptimizationPolicyStatus, source: NoEvaluator, minutes: float) -> Any:
    spec = _spec(mode="auto")
    c, api = _cycle(spec, status)
    c.metrics = PolicyMetrics(source, spec, "ns")  # type: ignore[arg-type]
    c.now = NOW + timedelta(minutes=minutes)
    return c, api


def test_the_baseline_without_quality_scores_ends_at_its_deadline_and_says_what_to_do() -> None:
    status, source = OptimizationPolicyStatus(), NoEvaluator()
    c, _ = _at(status, source, 0)
    propose(c, "every 5m")
    [baseline] = status.trial_records
    assert baseline.state == "Running" and baseline.rollout is None

    c, _ = _at(status, source, 3)  # within two windows (10 m): still collecting
    assert settle(c) is True
    assert baseline.state == "Running" and status.state == "Collecting"
    assert status.quality_signal is not None and status.quality_signal.status == "Unknown"

    c, _ = _at(status, source, 11)  # past the deadline
    assert settle(c) is False
    assert baseline.state == "Failed" and baseline.outcome == "NoQualityData"
    assert status.quality_signal is not None and status.quality_signal.status == "False"
    [told] = [m for _, r, m in c.events if r == "NoQualityData"]
    assert "configure a quality evaluator" in told and "no trial runs" in told

    # Still none: no trial proposed, the cycle says why (and no second Event).
    c, api = _at(status, source, 12)
    assert policy_quality.quality_arrived(c) is False
    assert status.state == "Idle" and "configure a quality evaluator" in (status.message or "")
    assert not [e for e in c.events if e[1] == "NoQualityData"]
    assert len(status.trial_records) == 1 and api.created == []


def test_when_scores_arrive_the_signal_turns_true_and_a_new_baseline_starts() -> None:
    status, source = OptimizationPolicyStatus(), NoEvaluator()
    c, _ = _at(status, source, 0)
    propose(c, "every 5m")
    c, _ = _at(status, source, 11)
    settle(c)
    source.scores = 40.0  # an evaluator was configured
    c, api = _at(status, source, 20)
    assert policy_quality.quality_arrived(c) is True
    assert [r for _, r, _ in c.events] == ["QualityData"]
    assert status.quality_signal is not None and status.quality_signal.status == "True"
    propose(c, "quality scores arrived")
    again = status.trial_records[-1]
    assert again.number == 1 and again.rollout is None and again.state == "Running"
    assert again.hash == status.trial_records[0].hash  # the stable config, measured again
    assert api.created == []
    c, _ = _at(status, source, 26)
    assert settle(c) is False  # judged now that quality is there
    assert again.state == "Complete" and again.outcome == "Baseline"
