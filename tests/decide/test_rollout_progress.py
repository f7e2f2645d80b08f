"""The rollout state machine, step by step, with a fake clock and scripted measurements."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from optimizer_operator.analysis.canary import MetricResult, Verdict
from optimizer_operator.analysis.measurement import ABOutcome, Measurement, TriggerResult
from optimizer_operator.api.rollout import RolloutSpec, RolloutStatus
from optimizer_operator.decide.actions import Promote, RestoreStable, SetWeight, Tick
from optimizer_operator.decide.rollout import progress, retry
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


def test_an_open_pause_with_a_deadline_aborts_when_nobody_ends_it() -> None:
    spec = _spec(steps=[{"setWeight": 20}, {"pause": {"abortAfter": "3m"}}])
    ticks = _run(spec, _script(), 5)
    assert [t.status.phase for t in ticks] == ["Paused", "Paused", "Paused", "Aborted", "Aborted"]
    assert ticks[3].reason == "PauseDeadline"
    assert any(isinstance(a, RestoreStable) and not a.quarantine for a in ticks[3].actions)
    assert "nobody promoted or aborted within 3m" in (ticks[3].status.message or "")
    # Without a deadline the pause waits for a person as long as it takes.
    spec = _spec(steps=[{"setWeight": 20}, {"pause": {}}])
    assert {t.status.phase for t in _run(spec, _script(), 5)} == {"Paused"}


def test_progress_deadline_aborts_a_step_that_never_completes() -> None:
    spec = _spec(
        progressDeadline="3m",
        steps=[{"setWeight": 20}, {"analysis": {"measurements": 1}}],
        analysis={"interval": "1m", "inconclusiveLimit": 10},
    )
    ticks = _run(spec, _script(*["Inconclusive"] * 5), 5)
    assert ticks[-1].status.phase == "Aborted"
    assert ticks[-1].reason == "ProgressDeadlineExceeded"


def test_a_pause_until_promoted_is_not_cut_short_by_the_progress_deadline() -> None:
    # As in Argo Rollouts: a rollout waiting for a person is not failing to progress.
    spec = _spec(progressDeadline="3m", steps=[{"setWeight": 20}, {"pause": {}}])
    ticks = _run(spec, _script(), 10)
    assert ticks[-1].status.phase == "Paused" and ticks[-1].reason == "PauseStep"


def _triggers(
    *rounds: list[tuple[str, str, bool]] | Exception | None,
) -> Callable[[float], object]:
    queue = list(rounds)

    def watch(since: float) -> list[TriggerResult] | None:
        item = queue.pop(0)
        if isinstance(item, Exception):
            raise item
        if item is None:
            return None
        return [TriggerResult(n, sev, b, 0.2, 0.01, "0.2 > max 0.05") for n, sev, b in item]

    return watch


def _walk(spec: RolloutSpec, ticks: int, **sources: object) -> list[Tick]:
    status, out = RolloutStatus(), []
    for n in range(ticks):
        tick = progress(spec, status, T0 + n * timedelta(minutes=1), **sources)  # type: ignore[arg-type]
        out.append(tick)
        status = tick.status
    return out


def test_a_critical_trigger_rolls_back_during_a_pause_and_quarantines() -> None:
    spec = _spec(
        steps=[{"setWeight": 20}, {"pause": {}}],
        analysis={
            "interval": "1m",
            "rollbackTriggers": [{"name": "quality_score", "min": "0.8"}],
        },
    )
    watch = _triggers([("error_rate", "critical", False)], [("error_rate", "critical", True)])
    ticks = _walk(spec, 3, observe=_script(), watch=watch)
    assert [t.status.phase for t in ticks] == ["Paused", "Paused", "RolledBack"]
    assert ticks[2].reason == "RollbackTrigger"
    assert ticks[2].actions == [RestoreStable("error_rate: 0.2 > max 0.05", quarantine=True)]
    assert "error_rate" in (ticks[2].status.message or "")


def test_warning_triggers_only_warn_once_and_missing_data_never_rolls_back() -> None:
    spec = _spec(
        steps=[{"setWeight": 20}, {"pause": {}}],
        analysis={
            "interval": "1m",
            "rollbackTriggers": [{"name": "cost_per_request_usd", "maxIncrease": "0.5"}],
        },
    )
    watch = _triggers(
        [("cost", "warning", True)],
        [("cost", "warning", True)],
        MetricsUnavailable("prometheus down"),
        None,  # below the minimum sample
    )
    ticks = _walk(spec, 5, observe=_script(), watch=watch)
    assert all(t.status.phase == "Paused" for t in ticks)
    warnings = [e for t in ticks for e in t.events if e[1] == "TriggerWarning"]
    assert len(warnings) == 1
    assert not [a for t in ticks[1:] for a in t.actions]


def test_blue_green_mirrors_measures_then_switches() -> None:
    spec = RolloutSpec.model_validate(
        {
            "targetRef": {"name": "bot"},
            "candidate": {"provider": "simulator", "model": "sim-small"},
            "strategy": "blueGreen",
            "blueGreen": {"mirrorPercent": 50, "measurements": 2},
            "analysis": {"interval": "1m"},
        }
    )
    ticks = _walk(spec, 4, observe=_script("Pass", "Pass"))
    assert ticks[0].actions == [SetWeight(0, mirror=50)]
    assert ticks[0].status.mirror_percent == 50 and ticks[0].status.canary_weight == 0
    assert ticks[2].actions == [Promote()] and ticks[2].reason == "AllStepsPassed"
    assert [r.step for r in ticks[2].status.step_results] == [1]


def test_blue_green_without_auto_promotion_waits_for_a_person() -> None:
    spec = RolloutSpec.model_validate(
        {
            "targetRef": {"name": "bot"},
            "candidate": {"provider": "simulator", "model": "sim-small"},
            "strategy": "blueGreen",
            "blueGreen": {
                "preview": "split",
                "previewWeight": 5,
                "measurements": 1,
                "autoPromote": False,
            },
        }
    )
    ticks = _walk(spec, 4, observe=_script("Pass"))
    assert ticks[0].actions == [SetWeight(5)]
    assert ticks[-1].status.phase == "Paused" and ticks[-1].reason == "PauseStep"
    promoted = progress(
        spec.model_copy(update={"step_promotions": 1}),
        ticks[-1].status,
        T0 + timedelta(minutes=5),
        _script(),
    )
    assert promoted.actions == [Promote()]


def _ab(winner: str | None) -> Callable[[float], ABOutcome | None]:
    def decide(_: float) -> ABOutcome | None:
        if winner is None:
            return None
        verdict = {"canary": "Pass", "stable": "Fail", "none": "Marginal"}[winner]
        return ABOutcome(
            winner,
            MetricResult("quality_score", 0.8, 0.7, 0.14, 0.001, "High", verdict, "x"),  # type: ignore[arg-type]
        )

    return decide


def test_ab_test_waits_for_the_sample_and_minimum_duration_then_picks_the_winner() -> None:
    spec = RolloutSpec.model_validate(
        {
            "targetRef": {"name": "bot"},
            "candidate": {"provider": "simulator", "model": "sim-small"},
            "strategy": "abTest",
            "abTest": {"weight": 30, "minDuration": "3m"},
        }
    )
    ticks = _walk(spec, 5, observe=_script(), decide_ab=_ab("canary"))
    assert ticks[0].actions == [SetWeight(30)]
    assert [t.status.phase for t in ticks[:3]] == ["Progressing"] * 3
    assert ticks[3].reason == "CandidateWins" and ticks[3].actions == [Promote()]
    lost = _walk(spec, 5, observe=_script(), decide_ab=_ab("stable"))
    assert lost[3].reason == "StableWins" and lost[3].status.phase == "RolledBack"
    assert lost[3].actions[0].quarantine  # type: ignore[union-attr]
    tie = _walk(spec, 5, observe=_script(), decide_ab=_ab("none"))
    assert tie[3].reason == "NoSignificantDifference"
    assert not tie[3].actions[0].quarantine  # type: ignore[union-attr]


def test_ab_test_gives_up_after_max_duration_without_the_sample() -> None:
    spec = RolloutSpec.model_validate(
        {
            "targetRef": {"name": "bot"},
            "candidate": {"provider": "simulator", "model": "sim-small"},
            "strategy": "abTest",
            "abTest": {"minDuration": "1m", "maxDuration": "3m"},
        }
    )
    ticks = _walk(spec, 6, observe=_script(), decide_ab=_ab(None))
    assert ticks[4].status.phase == "Aborted" and ticks[4].reason == "SampleNotReached"


def test_strategy_settings_must_match_the_strategy() -> None:
    with pytest.raises(ValidationError, match="takes no steps"):
        _spec(strategy="abTest")
    with pytest.raises(ValidationError, match="only valid with strategy abTest"):
        RolloutSpec.model_validate(
            {
                "targetRef": {"name": "bot"},
                "candidate": {"provider": "simulator", "model": "x"},
                "abTest": {},
            }
        )


def test_step_promotion_skips_one_analysis_step() -> None:
    ticks = _run(_spec(), _script("Pass"), 2)  # at step 1, one measurement of two taken
    assert ticks[-1].status.current_step_index == 1
    nxt = progress(_spec(stepPromotions=1), ticks[-1].status, T0 + timedelta(minutes=2), _script())
    assert nxt.status.current_step_index == 3 and nxt.actions == [SetWeight(50)]
    assert ("Normal", "StepPromoted", "step 1 skipped by a person") in nxt.events
    again = progress(
        _spec(stepPromotions=1), nxt.status, T0 + timedelta(minutes=3), _script("Pass")
    )
    assert again.status.observed_step_promotions == 1 and again.actions == [Promote()]


def test_replica_canary_waits_for_its_pods() -> None:
    spec = _spec(steps=[{"setWeight": 25}, {"pause": {}}])
    ready = iter([(False, "canary pods 0/1 available"), (True, "")])
    ticks = _walk(spec, 2, observe=_script(), pods_ready=lambda w: next(ready))
    assert ticks[0].reason == "WaitingForCanaryPods" and ticks[0].actions == [SetWeight(25)]
    assert ticks[1].actions == [] and ticks[1].reason == "PauseStep"


def test_retry_restarts_only_a_finished_rollout() -> None:
    done = RolloutStatus(phase="RolledBack", failures=1, current_step_index=3)
    fresh = retry(_spec(retry=1), done)
    assert fresh is not None and fresh.phase is None and fresh.retries == 1
    assert fresh.observed_retry == 1
    assert retry(_spec(retry=1), RolloutStatus(phase="Progressing")) is None
    assert retry(_spec(retry=1), fresh) is None


def test_bandit_rebalances_toward_the_best_arm_then_promotes_it() -> None:
    from optimizer_operator.analysis.bandit import ArmReward
    from optimizer_operator.api.llmconfig import ModelConfig
    from optimizer_operator.decide.actions import SetArms
    from optimizer_operator.decide.bandit import BanditArms

    spec = RolloutSpec.model_validate(
        {
            "targetRef": {"name": "bot"},
            "candidate": {"provider": "simulator", "model": "sim-small"},
            "strategy": "bandit",
            "bandit": {
                "arms": [{"provider": "simulator", "model": "sim-large"}],
                "minSamples": 100,
            },
            "analysis": {"interval": "1m"},
        }
    )
    large = ModelConfig(provider="simulator", model="sim-large")
    small = ModelConfig(provider="simulator", model="sim-small")
    rounds = iter(
        [
            {"v1": (0.82, 0.05, 50), "c-s": (0.66, 0.05, 50), "c-l": (0.90, 0.05, 50)},
            {"v1": (0.82, 0.03, 200), "c-s": (0.66, 0.03, 200), "c-l": (0.88, 0.03, 200)},
            {"v1": (0.82, 0.01, 900), "c-s": (0.66, 0.01, 300), "c-l": (0.90, 0.01, 900)},
        ]
    )
    arms = BanditArms(
        {"v1": None, "c-s": small, "c-l": large},
        lambda: {k: ArmReward(*v) for k, v in next(rounds).items()},
        "higherIsBetter",
    )
    ticks = _walk(spec, 4, observe=_script(), bandit=arms)
    assert ticks[0].actions == [SetArms((("c-l", 33), ("c-s", 33), ("v1", 34)))]
    assert ticks[1].reason == "Analyzing" and "collecting" in (ticks[1].status.message or "")
    rebalanced = ticks[2].actions[0]
    assert isinstance(rebalanced, SetArms)
    assert dict(rebalanced.weights)["c-l"] > 50 and dict(rebalanced.weights)["c-s"] == 5
    assert ticks[3].reason == "ArmWins" and ticks[3].actions == [Promote(large)]


def test_a_bandit_drops_an_arm_that_breaks_a_critical_trigger_and_never_promotes_it() -> None:
    """Guardrails per arm: the cheap arm breaks the quality floor; it loses its traffic and
    cannot win even though it has the best reward (cost, lower is better), and the
    rollout goes on with the others instead of rolling back as a whole."""
    from optimizer_operator.analysis.bandit import ArmReward
    from optimizer_operator.api.llmconfig import ModelConfig
    from optimizer_operator.decide.actions import SetArms
    from optimizer_operator.decide.bandit import BanditArms

    spec = RolloutSpec.model_validate(
        {
            "targetRef": {"name": "bot"},
            "candidate": {"provider": "simulator", "model": "sim-small"},
            "strategy": "bandit",
            "bandit": {
                "arms": [{"provider": "simulator", "model": "sim-medium"}],
                "metric": "cost_per_request_usd",
                "minSamples": 100,
            },
            "analysis": {
                "interval": "1m",
                "rollbackTriggers": [{"name": "quality_score", "min": "0.8"}],
            },
        }
    )
    small = ModelConfig(provider="simulator", model="sim-small")
    medium = ModelConfig(provider="simulator", model="sim-medium")
    cost = {"v1": (4.0, 0.01, 900), "c-s": (0.1, 0.01, 900), "c-m": (0.5, 0.01, 900)}
    checked: list[str] = []

    def guard(arm: str, since: float) -> list[TriggerResult] | None:
        checked.append(arm)
        broken = arm == "c-s"
        return [TriggerResult("quality_score", "critical", broken, 0.68, 0.9, "0.68 < min 0.8")]

    arms = BanditArms(
        {"v1": None, "c-s": small, "c-m": medium},
        lambda: {k: ArmReward(*v) for k, v in cost.items()},
        "lowerIsBetter",
        guard,
    )
    ticks = _walk(spec, 4, observe=_script(), bandit=arms)
    first = next(t for t in ticks if t.status.excluded_arms)
    assert first.status.excluded_arms == {"c-s": "quality_score: 0.68 < min 0.8"}
    assert ("Warning", "ArmExcluded") in [(t, r) for t, r, _ in first.events]
    dropped = [a for a in first.actions if isinstance(a, SetArms)][-1]
    assert "c-s" not in dict(dropped.weights) and sum(dict(dropped.weights).values()) == 100
    assert "v1" not in checked and "c-m" in checked  # stable is not guarded
    won = next(t for t in ticks if t.reason == "ArmWins")
    assert won.actions[-1] == Promote(medium)  # after dropping sim-small, in the same tick


def test_a_bandit_whose_every_arm_breaks_a_trigger_rolls_back() -> None:
    from optimizer_operator.analysis.bandit import ArmReward
    from optimizer_operator.api.llmconfig import ModelConfig
    from optimizer_operator.decide.bandit import BanditArms

    spec = RolloutSpec.model_validate(
        {
            "targetRef": {"name": "bot"},
            "candidate": {"provider": "simulator", "model": "sim-small"},
            "strategy": "bandit",
            "analysis": {
                "interval": "1m",
                "rollbackTriggers": [{"name": "quality_score", "min": "0.8"}],
            },
        }
    )
    arms = BanditArms(
        {"v1": None, "c-s": ModelConfig(provider="simulator", model="sim-small")},
        lambda: {"v1": ArmReward(0.9, 0.01, 900), "c-s": ArmReward(0.6, 0.01, 900)},
        "higherIsBetter",
        lambda arm, since: [TriggerResult("quality_score", "critical", True, 0.6, 0.9, "low")],
    )
    tick = _walk(spec, 2, observe=_script(), bandit=arms)[-1]
    assert tick.status.phase == "RolledBack" and tick.reason == "RollbackTrigger"
    assert tick.actions == [RestoreStable("every arm broke a guardrail", quarantine=True)]


def _bounded(state: str) -> list[TriggerResult]:
    """A critical quality floor at one check, in the given evidence state."""
    from optimizer_operator.analysis.bounds import BoundEvidence
    from optimizer_operator.analysis.confidence import Interval

    evidence = BoundEvidence(
        "quality_score",
        "min",
        0.8,
        0.81,
        Interval(0.79, 0.83),
        500.0,
        state,  # type: ignore[arg-type]
    )
    return [
        TriggerResult(
            "quality_score",
            "critical",
            state == "violated",
            0.81,
            None,
            evidence.describe(),
            state != "undecided",
            (evidence,),
        )
    ]


def _bound_watch(*states: str | Exception) -> Callable[[float], list[TriggerResult] | None]:
    queue = list(states)

    def watch(since: float) -> list[TriggerResult] | None:
        item = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(item, Exception):
            raise item
        return _bounded(item)

    return watch


FLOOR = {"interval": "1m", "rollbackTriggers": [{"name": "quality_score", "min": "0.8"}]}


def test_a_step_keeps_its_small_weight_while_a_critical_bound_is_undecided() -> None:
    spec = _spec(analysis={**FLOOR, "inconclusiveLimit": 1})
    watch = _bound_watch("undecided", "undecided", "undecided", "undecided", "holds")
    ticks = _walk(spec, 8, observe=_script(*["Pass"] * 8), watch=watch)
    weights = [t.status.canary_weight for t in ticks]
    # Step 1's two measurements pass at minutes 1-2, but the floor is open until minute 4.
    assert weights[:4] == [10, 10, 10, 10] and 50 in weights[4:], weights
    waiting = ticks[2]
    assert waiting.reason == "BoundUndecided" and waiting.status.phase == "Progressing"
    assert "not yet decided" in (waiting.status.message or "")
    assert waiting.status.bounds[0].state == "undecided"
    assert ("Normal", "BoundUndecided") in [(t, r) for t, r, _ in ticks[2].events]
    assert not any(
        isinstance(a, SetWeight) and a.weight == 50 for t in ticks[:4] for a in t.actions
    )


def test_a_bound_that_stays_undecided_ends_the_rollout_inconclusive_not_quarantined() -> None:
    spec = _spec(analysis={**FLOOR, "bounds": {"maxUndecided": "3m"}})
    ticks = _walk(spec, 10, observe=_script(*["Pass"] * 10), watch=_bound_watch("undecided"))
    end = next(t for t in ticks if t.status.phase == "Aborted")
    assert end.reason == "BoundInconclusive"
    assert end.actions[-1] == RestoreStable(
        f"bound inconclusive: {_bounded('undecided')[0].reason}", quarantine=False
    )
    assert all(t.status.canary_weight in (0, 10) for t in ticks)


def test_missing_evidence_reopens_a_bound_that_held() -> None:
    spec = _spec(analysis=FLOOR)
    down = MetricsUnavailable("Prometheus down")
    watch = _bound_watch("holds", down, down, down, down, down)
    ticks = _walk(spec, 5, observe=_script(*["Pass"] * 5), watch=watch)
    # The first check comes once the candidate has traffic (tick 1).
    assert ticks[1].status.bounds[0].state == "holds"
    assert ticks[-1].status.bounds[0].state == "undecided"
    assert "Prometheus down" in ticks[-1].status.bounds[0].message
    assert ticks[-1].status.canary_weight == 10  # never passed on an old reading


def test_a_confident_breach_rolls_back_and_an_undecided_reading_does_not() -> None:
    spec = _spec(steps=[{"setWeight": 20}, {"pause": {}}], analysis=FLOOR)
    ticks = _walk(spec, 3, observe=_script(), watch=_bound_watch("undecided", "violated"))
    # Checks begin at tick 1, once the candidate has traffic: undecided, then breached.
    assert [t.status.phase for t in ticks] == ["Paused", "Paused", "RolledBack"]
    assert ticks[1].status.bounds[0].state == "undecided"
    assert "confidently breaks" in (ticks[2].status.message or "")


def test_bound_decisions_refuse_error_rates_outside_0_to_half() -> None:
    with pytest.raises(ValidationError, match="falsePassRate"):
        _spec(analysis={"bounds": {"falsePassRate": "0.7"}})
    with pytest.raises(ValidationError, match="falseRollbackRate"):
        _spec(analysis={"bounds": {"falseRollbackRate": "0"}})


def _baked(**extra: object) -> RolloutSpec:
    return _spec(
        steps=[{"setWeight": 50}],
        postPromotion={"bake": "3m"},
        analysis={
            "interval": "1m",
            "rollbackTriggers": [{"name": "quality_score", "min": "0.8"}],
        },
        **extra,
    )


def _bake_run(
    spec: RolloutSpec, watch: Callable[[float], list[TriggerResult] | None], n: int
) -> list[Tick]:
    status, out = RolloutStatus(), []
    for i in range(n):
        tick = progress(spec, status, T0 + i * timedelta(minutes=1), _script(), watch=watch)
        out.append(tick)
        status = tick.status
    return out


def _from_bake(ticks: list[Tick]) -> list[Tick]:
    """The ticks from the promotion (the first Baking one) on."""
    first = next(i for i, t in enumerate(ticks) if t.status.phase == "Baking")
    assert any(isinstance(a, Promote) for a in ticks[first].actions)  # stable at once
    return ticks[first:]


def test_a_promotion_with_a_bake_is_watched_at_full_traffic_then_promoted() -> None:
    ticks = _from_bake(_bake_run(_baked(), _bound_watch("holds"), 8))
    assert [t.status.phase for t in ticks][:5] == [
        "Baking", "Baking", "Baking", "Promoted", "Promoted",
    ]  # fmt: skip
    assert ticks[3].reason == "BakePassed" and not ticks[3].actions


def test_a_regression_during_the_bake_reverts_to_the_previous_version() -> None:
    # The canary's checks hold; the regression starts two checks after promotion.
    ticks = _bake_run(_baked(), _bound_watch("holds", "holds", "holds", "violated"), 6)
    baked = _from_bake(ticks)
    assert "RolledBack" in [t.status.phase for t in baked]
    failed = next(t for t in baked if t.status.phase == "RolledBack")
    assert failed.reason == "BakeFailed"
    assert [type(a).__name__ for a in failed.actions] == ["Revert"]
    assert "regression after promotion" in (failed.status.message or "")


def test_missing_or_undecided_evidence_during_the_bake_never_reverts() -> None:
    gone = MetricsUnavailable("prometheus down")
    ticks = _from_bake(_bake_run(_baked(), _bound_watch("holds", gone, "undecided", gone, gone), 8))
    assert ticks[-1].status.phase == "Promoted"
    assert not any(type(a).__name__ == "Revert" for t in ticks for a in t.actions)


def test_an_abort_during_the_bake_reverts() -> None:
    spec = _baked()
    baking = _from_bake(_bake_run(spec, _bound_watch("holds"), 3))[0]
    aborted = spec.model_copy(update={"abort": True})
    later = T0 + timedelta(minutes=5)
    tick = progress(aborted, baking.status, later, _script(), watch=_bound_watch("holds"))
    assert tick.status.phase == "RolledBack" and tick.reason == "RevertedBySpec"
    assert [type(a).__name__ for a in tick.actions] == ["Revert"]
