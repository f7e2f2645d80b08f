"""abTest: a fixed split until the sample is reached, then one two-sided test."""

from __future__ import annotations

from datetime import datetime

from ..analysis.measurement import ABOutcome
from ..api.common import parse_duration
from ..api.rollout import ABTest, RolloutSpec, RolloutStatus
from ..api.timestamps import parse_optional as _parse
from .actions import Promote, RestoreStable, Tick, finish, record_step, result_status


def ab_step(
    spec: RolloutSpec,
    s: RolloutStatus,
    now: datetime,
    tick: Tick,
    i: int,
    ab: ABTest,
    outcome: ABOutcome | None,
) -> Tick:
    """Collect until the sample and ``minDuration`` are reached (give up after
    ``maxDuration``), then promote the winner, roll back to stable, or keep stable when
    neither is significantly better."""
    elapsed = (now - (_parse(s.step_started_at) or now)).total_seconds()
    if outcome is None or elapsed < parse_duration(ab.min_duration):
        if elapsed > parse_duration(ab.max_duration):
            record_step(s, i, "Inconclusive", now)
            return finish(
                tick,
                "Aborted",
                "SampleNotReached",
                f"abTest: {ab.min_samples} requests per variant not reached within "
                f"{ab.max_duration}; stable kept",
                RestoreStable("abTest sample not reached"),
                "Warning",
            )
        s.verdict, tick.reason = "Inconclusive", "Analyzing"
        s.message = (
            f"abTest at {s.canary_weight}%: collecting (need {ab.min_samples} requests per "
            f"variant and {ab.min_duration})"
        )
        return tick
    s.results = [result_status(outcome.result)]
    s.verdict = outcome.result.verdict if outcome.result.verdict != "NoData" else "Inconclusive"
    record_step(s, i, s.verdict, now)
    if outcome.winner == "canary":
        return finish(
            tick,
            "Promoted",
            "CandidateWins",
            f"abTest: the candidate wins on {ab.metric} ({outcome.result.reason})",
            Promote(),
        )
    if outcome.winner == "stable":
        return finish(
            tick,
            "RolledBack",
            "StableWins",
            f"abTest: stable wins on {ab.metric} ({outcome.result.reason}); stable restored",
            RestoreStable(outcome.result.reason, quarantine=True),
            "Warning",
        )
    return finish(
        tick,
        "Aborted",
        "NoSignificantDifference",
        f"abTest: no significant difference on {ab.metric} ({outcome.result.reason}); stable kept",
        RestoreStable("no significant difference"),
    )
