"""The policy's gates and its final-gate verdict, without a cluster: pure functions of the
spec, the status and the clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from optimizer_operator.analysis.measurement import TriggerResult
from optimizer_operator.api.policy import OptimizationPolicyStatus, TrialRecord
from optimizer_operator.api.timestamps import format_ts
from optimizer_operator.decide import gates, trials
from tests.decide.test_optimizer import _spec

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def _trial(number: int, *, started: datetime, finished: datetime | None) -> TrialRecord:
    return TrialRecord(
        number=number,
        params={"model": "simulator/sim-small"},
        hash=f"h{number}",
        state="Complete" if finished else "Running",
        rollout=f"tune-t{number}",
        started_at=format_ts(started),
        finished_at=format_ts(finished) if finished else None,
    )


def test_the_breaker_opens_after_the_failure_budget_and_stays_open_for_the_cool_off() -> None:
    spec = _spec(budgets={"maxConsecutiveFailures": 3, "coolOff": "1h"})
    status = OptimizationPolicyStatus(consecutive_failures=3)
    opened = gates.breaker(spec, status, NOW)
    assert opened is not None and opened.decision == "CircuitBreakerOpen"
    assert status.breaker_open_until == format_ts(NOW + timedelta(hours=1))
    assert status.consecutive_failures == 0
    still = gates.breaker(spec, status, NOW + timedelta(minutes=59))
    assert still is not None and still.decision is None and "open until" in still.message
    assert gates.breaker(spec, status, NOW + timedelta(hours=1, seconds=1)) is None
    assert status.breaker_open_until is None


def test_below_the_failure_budget_the_breaker_stays_closed() -> None:
    status = OptimizationPolicyStatus(consecutive_failures=2)
    assert gates.breaker(_spec(budgets={"maxConsecutiveFailures": 3}), status, NOW) is None


def test_cooldown_counts_from_the_last_trial_rollout_that_ended() -> None:
    spec = _spec(schedule={"cooldown": "10m"})
    ended = _trial(1, started=NOW - timedelta(minutes=30), finished=NOW - timedelta(minutes=5))
    status = OptimizationPolicyStatus(trial_records=[ended])
    stop = gates.budgets(spec, status, NOW, None)
    assert stop is not None and stop.state == "Idle" and "cooldown 10m" in stop.message
    assert gates.budgets(spec, status, NOW + timedelta(minutes=6), None) is None


def test_the_trial_and_daily_rollout_budgets_stop_proposals() -> None:
    day = [
        _trial(n, started=NOW - timedelta(hours=n), finished=NOW - timedelta(hours=n))
        for n in range(1, 4)
    ]
    status = OptimizationPolicyStatus(trial_records=day)
    spent = gates.budgets(_spec(budgets={"maxTrials": 3}), status, NOW, None)
    assert spent is not None and "3 of 3 trials" in spent.message
    daily = gates.budgets(_spec(mode="auto", budgets={"maxRolloutsPerDay": 3}), status, NOW, None)
    assert daily is not None and "maxRolloutsPerDay" in daily.message
    # recommend mode creates no Rollouts, so the daily Rollout budget does not apply.
    recommend = _spec(mode="recommend", budgets={"maxRolloutsPerDay": 3})
    assert gates.budgets(recommend, status, NOW, None) is None


def test_an_active_rollout_keeps_the_loop_monitoring() -> None:
    stop = gates.budgets(_spec(), OptimizationPolicyStatus(), NOW, "someone-elses")
    assert stop is not None and stop.state == "Monitoring"
    assert "someone-elses" in stop.message
    assert gates.budgets(_spec(), OptimizationPolicyStatus(), NOW, None) is None


def _bound(state: str, name: str = "quality_score") -> TriggerResult:
    return TriggerResult(
        name, "critical", state == "violated", 0.81, None, f"{name}: {state}", state != "undecided"
    )


def test_the_final_gate_promotes_only_when_every_constraint_confidently_holds() -> None:
    held = trials.gate_verdict(
        [_bound("holds")], daily_over=False, gain=0.2, threshold=0.02, limit="20m"
    )
    assert held.promote and "confidently hold" in held.reason
    broken = trials.gate_verdict(
        [_bound("holds"), _bound("violated", "error_rate")],
        daily_over=False,
        gain=0.5,
        threshold=0.02,
        limit="20m",
    )
    assert not broken.promote and not broken.inconclusive and "error_rate" in broken.reason
    open_ = trials.gate_verdict(
        [_bound("undecided")], daily_over=False, gain=0.5, threshold=0.02, limit="20m"
    )
    assert not open_.promote and open_.inconclusive and "undecided after 20m" in open_.reason
    small = trials.gate_verdict(
        [_bound("holds")], daily_over=False, gain=0.01, threshold=0.02, limit="20m"
    )
    assert not small.promote and "not above" in small.reason
    over = trials.gate_verdict(
        [_bound("holds")], daily_over=True, gain=0.5, threshold=0.02, limit="20m"
    )
    assert not over.promote and "maxDailyCostUsd" in over.reason


def test_the_final_gate_collects_while_undecided_up_to_the_limit() -> None:
    assert trials.collecting([_bound("undecided")], waited=60, limit="20m")
    assert not trials.collecting([_bound("undecided")], waited=1201, limit="20m")
    assert not trials.collecting([_bound("undecided"), _bound("violated")], waited=60, limit="20m")
    assert not trials.collecting([_bound("holds")], waited=60, limit="20m")


def test_a_policys_constraints_ride_as_critical_triggers_in_the_one_table_order() -> None:
    spec = _spec(constraints={"minQuality": "0.8", "maxErrorRate": "0.02"})
    triggers = trials.constraint_triggers(spec)
    assert [(t.name, t.min, t.max, t.severity) for t in triggers] == [
        ("error_rate", None, "0.02", "critical"),
        ("quality_score", "0.8", None, "critical"),
    ]


def test_a_trial_rollout_starts_smaller_for_a_risky_config_and_ends_at_the_gate() -> None:
    steps = trials.trial_steps(_spec(), divisor=4)
    assert steps[0].set_weight == 2  # the default first step, 10%, divided by 4
    assert steps[-1].pause is not None and steps[-1].pause.duration is None  # the final gate
    assert [s.set_weight for s in trials.trial_steps(_spec(), 1)][:3] == [10, None, 50]


def test_a_trial_rollout_guards_the_untraded_metrics_and_carries_the_constraints() -> None:
    analysis = trials.trial_analysis(_spec(constraints={"minQuality": "0.8"}))
    # quality and cost are the objectives: traded at the gate, not vetoed per step.
    assert [m.name for m in analysis.metrics] == ["error_rate", "latency_p95_seconds"]
    assert [(t.name, t.min) for t in analysis.rollback_triggers] == [("quality_score", "0.8")]


def test_duplicates_and_trials_never_started_spend_no_trial_budget() -> None:
    done = _trial(1, started=NOW - timedelta(days=2), finished=NOW - timedelta(days=2))
    free = [
        TrialRecord(number=n, hash="h1", state=state, outcome=outcome, params={})
        for n, (state, outcome) in enumerate(
            [("Complete", "Duplicate"), ("Failed", "NotStarted")], 2
        )
    ]
    status = OptimizationPolicyStatus(trial_records=[done, *free])
    assert gates.budgets(_spec(budgets={"maxTrials": 2}), status, NOW, None) is None
    spent = gates.budgets(_spec(budgets={"maxTrials": 1}), status, NOW, None)
    assert spent is not None and "1 of 1 trials" in spent.message
