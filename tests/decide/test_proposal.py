"""A policy's trial proposal without a cluster: what becomes of a candidate before any
traffic moves (decide.proposal), and the whole proposal step (reconcile.trial_start)
driven with a stand-in for the Kubernetes API.

The stand-in only records the Rollouts the step creates (and checks, at that moment,
that the trial was already written to the status: the crash-safety order). The same
step runs against a real API server in tests/integration/test_optimization_loop.py."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from optimizer_operator.api.llmconfig import LLMConfigObject, ModelConfig
from optimizer_operator.api.policy import OptimizationPolicySpec, OptimizationPolicyStatus
from optimizer_operator.api.rollout import RolloutSpec
from optimizer_operator.decide import gates, optimizer, predictor, proposal
from optimizer_operator.observe.policy_metrics import PolicyMetrics
from optimizer_operator.reconcile.cycle_state import CycleState
from optimizer_operator.reconcile.trial_start import propose
from optimizer_operator.store.session import HistorySession
from tests.decide.test_optimizer import _record, _spec

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
STABLE = {"provider": "simulator", "model": "sim-medium", "parameters": {"temperature": "0.5"}}


class RecordingApi:
    """Stands in for CustomObjectsApi (no cluster in unit tests): keeps, in order, the
    policy status writes and the objects created."""

    def __init__(self, status: OptimizationPolicyStatus) -> None:
        self.status = status
        self.created: list[dict[str, Any]] = []
        self.writes: list[tuple[str, Any]] = []

    def create_namespaced_custom_object(self, *args: Any, **kwargs: Any) -> None:
        body = args[4]
        self.writes.append(("create", body["metadata"]["name"]))
        self.created.append(body)

    def patch_namespaced_custom_object_status(self, *args: Any, **kwargs: Any) -> None:
        self.writes.append(("status", args[5]["status"]))


def _target(quarantine: list[str] | None = None) -> LLMConfigObject:
    config = ModelConfig.model_validate(STABLE)
    return LLMConfigObject.parse(
        {
            "metadata": {"name": "bot", "namespace": "ns"},
            "spec": STABLE,
            "status": {
                "currentVersion": 1,
                "currentHash": config.config_hash(),
                "history": [
                    {
                        "version": 1,
                        "hash": config.config_hash(),
                        **STABLE,
                        "source": "spec",
                        "appliedAt": "2026-12-02T10:00:00Z",
                    }
                ],
                "quarantine": [
                    {"hash": h, "model": "x", "rollout": "r", "at": "2026-12-02T10:00:00Z"}
                    for h in quarantine or []
                ],
            },
        }
    )


def _cycle(
    spec: OptimizationPolicySpec,
    status: OptimizationPolicyStatus,
    target: LLMConfigObject | None = None,
) -> tuple[CycleState, RecordingApi]:
    target = target or _target()
    api = RecordingApi(status)
    body = {
        "apiVersion": "optimizer.llmops.dev/v1alpha1",
        "kind": "OptimizationPolicy",
        "metadata": {"name": "tune", "namespace": "ns", "uid": "u1"},
        "spec": {},
    }
    events: list[tuple[str, str, str]] = []
    assert target.stable is not None
    state = CycleState(
        body=body,
        spec=spec,
        target=target,
        stable=target.stable,
        status=status,
        custom=api,  # type: ignore[arg-type]
        metrics=PolicyMetrics(None, spec, "ns"),
        history=HistorySession(None, "ns", "tune", status, events),
        now=NOW,
        events=events,
    )
    return state, api


def _measured_baseline() -> OptimizationPolicyStatus:
    baseline = _record(
        0, {"model": "simulator/sim-medium", "temperature": "0.5"}, ["0.82", "0.002"]
    )
    baseline.metrics = {"quality_score": "0.82", "cost_per_request_usd": "0.002"}
    return OptimizationPolicyStatus(trial_records=[baseline])


def test_the_first_proposal_is_the_stable_config_measured_without_a_rollout() -> None:
    status = OptimizationPolicyStatus()
    c, api = _cycle(_spec(mode="auto"), status)
    propose(c, "every 5m")
    assert api.created == []
    [baseline] = status.trial_records
    assert baseline.number == 0 and baseline.rollout is None and baseline.state == "Running"
    assert baseline.hash == ModelConfig.model_validate(STABLE).config_hash()
    assert status.state == "Collecting"
    assert [e[1] for e in c.events] == ["TrialStarted"]


def test_a_trial_is_written_to_status_before_its_rollout_is_created() -> None:
    status = _measured_baseline()
    c, api = _cycle(_spec(mode="auto"), status)
    propose(c, "every 5m")
    [body] = api.created
    record = status.trial_records[-1]
    assert record.rollout == body["metadata"]["name"] == f"tune-t{record.number}"
    # The record reached the API server (marked Starting) before the Rollout was created.
    [(kind, written), (then, name)] = api.writes
    assert (kind, then, name) == ("status", "create", record.rollout)
    [persisted] = [r for r in written["trialRecords"] if r.get("rollout") == record.rollout]
    assert persisted["state"] == "Running" and persisted["outcome"] == "Starting"
    assert record.outcome == ""  # created: no longer Starting in the cycle's own write
    spec = RolloutSpec.model_validate(body["spec"])  # what the API server would be sent
    assert spec.trial is not None and spec.trial.number == record.number
    gate = spec.steps[-1].pause  # the final gate, with a deadline should the policy stop
    assert gate is not None and gate.duration is None and gate.abort_after == "3600s"
    assert {t.name for t in spec.analysis.rollback_triggers} >= {"quality_score"}
    assert body["metadata"]["ownerReferences"][0]["name"] == "tune"
    assert status.state == "Deploying" and record.state == "Running"


def test_mode_recommend_writes_the_recommendation_and_creates_nothing() -> None:
    status = _measured_baseline()
    c, api = _cycle(_spec(mode="recommend"), status)
    propose(c, "every 5m")
    assert api.created == []
    assert status.recommendation is not None and status.recommendation.outcome == "Recommended"
    # Recorded as a trial of its own (no measurement: failed for the study), so the
    # search moves on instead of recommending the same config every cycle.
    assert [(r.state, r.outcome) for r in status.trial_records][1:] == [("Failed", "Recommended")]
    assert status.recommendation.number == status.trial_records[-1].number
    assert status.state == "Idle"


def test_a_quarantined_candidate_is_failed_without_traffic() -> None:
    # The sampler is seeded: the same records give the same candidate again.
    first, _ = _cycle(_spec(mode="recommend"), _measured_baseline())
    propose(first, "every 5m")
    assert first.status.recommendation is not None
    candidate = first.status.recommendation.hash
    status = _measured_baseline()
    c, api = _cycle(_spec(mode="auto"), status, _target(quarantine=[candidate]))
    propose(c, "every 5m")
    assert api.created == []
    record = status.trial_records[-1]
    assert record.hash == candidate
    assert (record.state, record.outcome) == ("Failed", "Quarantined")


def test_a_config_refused_again_for_the_same_reason_spends_no_trial(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The sampler may ask again for a config refused before (an unpriced model, a
    quarantined one): the second time it is a free Duplicate, not a second trial."""
    first, _ = _cycle(_spec(mode="recommend"), _measured_baseline())
    propose(first, "every 5m")
    assert first.status.recommendation is not None
    params, candidate = first.status.recommendation.params, first.status.recommendation.hash
    # The sampler's next question, forced: the same config, twice.
    monkeypatch.setattr(optimizer, "screening_params", lambda *a, **k: dict(params))
    status = _measured_baseline()
    target = _target(quarantine=[candidate])
    for _ in range(2):
        c, api = _cycle(_spec(mode="auto"), status, target)
        propose(c, "every 5m")
        assert api.created == []
    refused, again = status.trial_records[-2:]
    assert (refused.outcome, again.outcome) == ("Quarantined", "Duplicate")
    assert again.hash == refused.hash == candidate
    assert f"as trial {refused.number}" in again.reason
    spent = [r for r in status.trial_records if r.outcome not in gates.FREE_OUTCOMES]
    assert again not in spent and refused in spent


def test_refusal_names_quarantine_then_what_cannot_be_served() -> None:
    spec = _spec()
    record = _record(3, {"model": "simulator/sim-medium"}, None)
    record.hash = "h3"
    fleet = ModelConfig.model_validate({"provider": "simulator", "model": "sim-medium"})
    assert proposal.refusal(spec, record, fleet, set()) is None
    quarantined = proposal.refusal(spec, record, fleet, {"h3"})
    assert quarantined is not None and quarantined.outcome == "Quarantined"
    unknown = ModelConfig.model_validate({"provider": "simulator", "model": "sim-nowhere"})
    missing = proposal.refusal(spec, record, unknown, set())
    assert missing is not None and missing.outcome == "Unavailable"
    assert "not in the simulator fleet" in missing.reason


def test_a_larger_budget_measured_below_the_floor_proves_a_smaller_one_infeasible() -> None:
    spec = _spec()  # minQuality 0.75
    measured = _record(1, {"model": "simulator/sim-medium", "maxTokens": "512"}, ["0.70", "0.001"])
    measured.metrics = {"quality_score": "0.70", "cost_per_request_usd": "0.001"}
    params = {"model": "simulator/sim-medium", "maxTokens": "256"}
    nothing = predictor.Prediction(metrics={}, confidence="low")
    proven = proposal.predicted_infeasible(spec, [measured], params, nothing, None)
    assert proven is not None
    values, why = proven
    assert values["quality_score"] == 0.70 and "trial 1" in why
    larger = {"model": "simulator/sim-medium", "maxTokens": "1024"}
    assert proposal.predicted_infeasible(spec, [measured], larger, nothing, None) is None


def test_the_daily_budget_is_predicted_only_with_a_known_request_rate() -> None:
    spec = _spec()  # maxDailyCostUsd 100
    forecast = predictor.Prediction(
        metrics={
            "cost_per_request_usd": predictor.Predicted(0.01, 0.0001, 6.0),
            "quality_score": predictor.Predicted(0.9, 0.01, 6.0),
        },
        confidence="high",
    )
    over = proposal.predicted_violations(spec, forecast, daily_requests=100_000)
    assert len(over) == 1 and "daily cost predicted $1000.00, budget $100" in over[0]
    assert proposal.predicted_violations(spec, forecast, daily_requests=None) == []
    assert proposal.predicted_violations(spec, forecast, daily_requests=1_000) == []


def test_the_stable_config_proposed_again_is_told_its_baseline_not_measured_again() -> None:
    """A space whose only point is the stable config: after its baseline, the sampler can
    only ask for it again; that costs no traffic and no trial budget, and three such asks
    in a row stop the search as exhausted."""
    only_stable = {
        "models": [{"provider": "simulator", "model": "sim-medium"}],
        "parameters": [{"name": "temperature", "type": "categorical", "choices": ["0.5"]}],
    }
    spec = _spec(mode="auto", searchSpace=only_stable, budgets={"maxTrials": 2})
    status = _measured_baseline()
    status.trial_records[0].hash = ModelConfig.model_validate(STABLE).config_hash()
    status.trial_records[0].outcome = "Baseline"
    for _ in range(3):
        c, api = _cycle(spec, status)
        propose(c, "every 5m")
        assert api.created == []
        again = status.trial_records[-1]
        assert (again.state, again.outcome) == ("Complete", "Duplicate")
        assert again.reason == "same config as trial 0" and again.values == ["0.82", "0.002"]
    assert [r.outcome for r in status.trial_records] == ["Baseline", *["Duplicate"] * 3]
    # One trial spent of two: the budget gate does not stop it, the exhaustion gate does.
    stop = gates.budgets(spec, status, NOW, None)
    assert stop is not None and "search space looks exhausted" in stop.message
