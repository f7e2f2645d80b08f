"""A Rollout judging quality_score that gets no quality scores says so within the bound
(two windows by default), names what to configure, and promotes nothing; scores that
arrive turn the signal True again. Pure state machine: measurements are scripted."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from optimizer_operator.analysis.canary import MetricResult
from optimizer_operator.analysis.measurement import Measurement
from optimizer_operator.api.rollout import RolloutSpec, RolloutStatus
from optimizer_operator.decide.actions import Promote, Tick
from optimizer_operator.decide.rollout import progress
from tests.decide.test_rollout_progress import T0


def _spec(**analysis: object) -> RolloutSpec:
    return RolloutSpec.model_validate(
        {
            "targetRef": {"name": "bot"},
            "candidate": {"provider": "openai", "model": "gpt-4o-mini"},
            "steps": [{"setWeight": 10}, {"analysis": {"measurements": 2}}],
            "analysis": {"interval": "1m", "window": "2m", "inconclusiveLimit": 20, **analysis},
        }
    )


def _quality(present: bool) -> Measurement:
    latency = MetricResult("latency_p95_seconds", 1.0, 1.0, 0.0, 1.0, "Pass", "Pass", "+0%")
    if present:
        quality = MetricResult("quality_score", 0.8, 0.8, 0.0, 1.0, "Pass", "Pass", "+0%")
        return Measurement([latency, quality], "Pass")
    none = MetricResult(
        "quality_score", None, None, None, None, "NoData", "NoData",
        "0 canary / 0 stable samples, need 5",
    )  # fmt: skip
    return Measurement([latency, none], "Inconclusive")


def _run(spec: RolloutSpec, present: Callable[[int], bool], ticks: int) -> list[Tick]:
    status, out, n = RolloutStatus(), [], [0]

    def observe(_: float) -> Measurement:
        n[0] += 1
        return _quality(present(n[0]))

    for k in range(ticks):
        tick = progress(spec, status, T0 + k * timedelta(minutes=1), observe)
        out.append(tick)
        status = tick.status
    return out


def _events(ticks: list[Tick], reason: str) -> list[str]:
    return [m for t in ticks for _, r, m in t.events if r == reason]


def test_no_quality_scores_turn_the_signal_false_within_two_windows_naming_the_fix() -> None:
    ticks = _run(_spec(), lambda _: False, 8)
    states = [t.status.quality_signal.status if t.status.quality_signal else None for t in ticks]
    # Tick 0 starts the rollout, measurements from tick 1: first seen without scores at
    # minute 1; two windows (4 min) later, at minute 5, the signal is False.
    assert states[:5] == [None, "Unknown", "Unknown", "Unknown", "Unknown"]
    assert states[5:] == ["False", "False", "False"]
    [told] = _events(ticks, "NoQualityData")  # one Event, on the transition
    assert "configure a quality evaluator" in told and "nothing is promoted" in told
    assert "canary and stable" in told
    assert not any(isinstance(a, Promote) for t in ticks for a in t.actions)
    assert all(t.status.phase == "Progressing" for t in ticks[1:])


def test_the_bound_is_configurable_and_a_pause_tells_it_at_once() -> None:
    short = _run(_spec(qualitySignalTimeout="1m"), lambda _: False, 4)
    assert short[2].status.quality_signal is not None
    assert short[2].status.quality_signal.status == "False"
    # A rollout about to pause on inconclusive measurements says why now, in its message.
    pausing = _run(_spec(inconclusiveLimit=1), lambda _: False, 4)
    paused = next(t for t in pausing if t.status.phase == "Paused")
    assert paused.reason == "InconclusiveLimit"
    assert paused.status.quality_signal is not None
    assert paused.status.quality_signal.status == "False"
    assert "configure a quality evaluator" in (paused.status.message or "")


def test_scores_that_arrive_turn_the_signal_true_and_the_rollout_goes_on() -> None:
    ticks = _run(_spec(), lambda n: n > 6, 12)
    assert ticks[6].status.quality_signal is not None
    assert ticks[6].status.quality_signal.status == "False"
    later = [t.status.quality_signal.status for t in ticks[8:] if t.status.quality_signal]
    assert later and set(later) == {"True"}
    assert _events(ticks, "QualityData") == ["quality scores arrive again"]
    assert any(isinstance(a, Promote) for t in ticks for a in t.actions)


def test_an_analysis_without_quality_has_no_signal() -> None:
    spec = _spec(metrics=[{"name": "latency_p95_seconds"}])
    status = RolloutStatus()

    def observe(_: float) -> Measurement:
        latency = MetricResult("latency_p95_seconds", 1.0, 1.0, 0.0, 1.0, "Pass", "Pass", "+0%")
        return Measurement([latency], "Pass")

    for k in range(4):
        status = progress(spec, status, T0 + k * timedelta(minutes=1), observe).status
    assert status.quality_signal is None
