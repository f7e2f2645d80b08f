"""The rollout state machine, step by step, with a fake clock and scripted measurements."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from optimizer_operator.analysis.canary import MetricResult, Verdict
from optimizer_operator.analysis.measurement import Measurement
from optimizer_operator.api.rollout import RolloutSpec, RolloutStatus
from optimizer_operator.decide.rollout import Promote, RestoreStable, SetWeight, Tick, progress
from optimizer_operator.observe.prometheus import MetricsUnavailable

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _spec(**extra: object) -> RolloutSpec:
    return RolloutSpec.model_validate(
        {
            "targetRef": {"name": "bot"},
            "candidate": {"provider": "simulator", "model": "sim-small"},
            "steps": [
                {"setWeight": 10},
                {"analysis": {"measurements": 2}},
                {"setWeight": 50},
                {"analysis": {"measurements": 1}},
            ],
            "analysis": {"interval": "1m", "failureLimit": 0, "inconclusiveLimit": 1},
            **extra,
        }
    )


def _m(verdict: Verdict) -> Measurement:
    v = {"Inconclusive": "NoData"}.get(verdict, verdict)
    return Measurement(
        [
            MetricResult(
                "latency_p95_seconds", 1.3, 1.0, 0.3, 0.001, "High", v, "+30.0% vs stable", False
            )
        ],
        verdict,
    )  # type: ignore[arg-type]


def _script(*items: Verdict | Exception) -> Callable[[float], Measurement]:
    queue = list(items)

    def observe(_: float) -> Measurement:
        item = queue.pop(0)
        if isinstance(item, Exception):
            raise item
        return _m(item)

    return observe


def _run(
    spec: RolloutSpec,
    observe: Callable[[float], Measurement],
    ticks: int,
    every: timedelta = timedelta(minutes=1),
) -> list[Tick]:
    status, out = RolloutStatus(), []
    for n in range(ticks):
        tick = progress(spec, status, T0 + n * every, observe)
        out.append(tick)
        status = tick.status
    return out


def test_good_candidate_walks_every_step_and_is_promoted() -> None:
    ticks = _run(_spec(), _script("Pass", "Marginal", "Pass"), 4)
    actions = [a for t in ticks for a in t.actions]
    assert actions == [SetWeight(10), SetWeight(50), Promote()]
    final = ticks[-1].status
    assert final.phase == "Promoted" and final.current_step_index == 4
    assert final.canary_weight == 50 and ticks[-1].reason == "AllStepsPassed"
    assert ticks[0].status.phase == "Progressing" and ticks[0].status.canary_weight == 10


def test_failed_analysis_rolls_back_with_the_reason() -> None:
    ticks = _run(_spec(), _script("Pass", "Fail"), 3)
    last = ticks[-1]
    assert last.status.phase == "RolledBack" and last.reason == "AnalysisFailed"
    assert isinstance(last.actions[-1], RestoreStable)
    assert "latency_p95_seconds: +30.0% vs stable" in (last.status.message or "")
    assert last.status.results[0].verdict == "Fail" and last.status.results[0].effect == "0.3"


def test_failure_limit_tolerates_that_many_failures() -> None:
    spec = _spec(analysis={"interval": "1m", "failureLimit": 1})
    ticks = _run(spec, _script("Fail", "Pass", "Pass", "Pass"), 5)
    assert ticks[1].status.phase == "Progressing" and ticks[1].status.failures == 1
    assert ticks[-1].status.phase == "Promoted"


def test_missing_metrics_hold_then_resume_and_never_decide() -> None:
    down = MetricsUnavailable("Prometheus unreachable")
    ticks = _run(_spec(), _script(down, down, "Pass", "Pass", "Pass"), 6)
    assert [t.status.phase for t in ticks[1:3]] == ["Holding", "Holding"]
    assert ticks[1].status.canary_weight == 10 and ticks[1].reason == "MetricsUnavailable"
    assert not any(isinstance(a, RestoreStable | Promote) for t in ticks[:3] for a in t.actions)
    assert ticks[1].events[-1][1] == "Holding" and ticks[3].events[0][1] == "Resumed"
    assert ticks[-1].status.phase == "Promoted"


def test_holding_past_the_deadline_aborts_to_stable() -> None:
    down = MetricsUnavailable("Prometheus unreachable")
    spec = _spec(holdDeadline="5m")
    ticks = _run(spec, _script(*([down] * 10)), 8)
    phases = [t.status.phase for t in ticks]
    assert phases[1:7] == ["Holding"] * 6 and phases[-1] == "Aborted"
    aborted = next(t for t in ticks if t.status.phase == "Aborted")
    assert aborted.reason == "HoldDeadlineExceeded"
    assert isinstance(aborted.actions[-1], RestoreStable)


def test_inconclusive_limit_pauses_for_a_person() -> None:
    ticks = _run(_spec(), _script("Inconclusive", "Inconclusive", "Pass"), 4)
    assert ticks[1].status.phase == "Progressing" and ticks[1].status.inconclusives == 1
    assert ticks[2].status.phase == "Paused" and ticks[2].reason == "InconclusiveLimit"
    assert ticks[3].status.phase == "Paused" and not ticks[3].actions  # waits for a person


def test_spec_controls_pause_abort_and_promote() -> None:
    status = progress(_spec(), RolloutStatus(), T0, _script()).status
    paused = progress(_spec(paused=True), status, T0 + timedelta(minutes=1), _script())
    assert paused.status.phase == "Paused" and paused.reason == "PausedBySpec"
    aborted = progress(_spec(abort=True), status, T0 + timedelta(minutes=2), _script())
    assert aborted.status.phase == "Aborted" and aborted.actions == [
        RestoreStable("aborted by spec.abort")
    ]
    promoted = progress(_spec(promote=True), status, T0 + timedelta(minutes=2), _script())
    assert promoted.status.phase == "Promoted" and promoted.actions == [Promote()]
    # Terminal phases do nothing more.
    assert progress(_spec(), aborted.status, T0 + timedelta(minutes=3), _script()).actions == []


def test_timed_pause_waits_then_continues() -> None:
    spec = _spec(steps=[{"setWeight": 20}, {"pause": {"duration": "2m"}}])
    ticks = _run(spec, _script(), 4)
    assert [t.status.phase for t in ticks] == ["Paused", "Paused", "Promoted", "Promoted"]


def test_progress_deadline_aborts() -> None:
    spec = _spec(progressDeadline="3m", steps=[{"setWeight": 20}, {"pause": {}}])
    ticks = _run(spec, _script(), 5)
    assert ticks[-1].status.phase == "Aborted"
    assert ticks[-1].reason == "ProgressDeadlineExceeded"
