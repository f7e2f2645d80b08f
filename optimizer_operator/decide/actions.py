"""The rollout's vocabulary: what a tick decides (Actions for ``act`` to carry out) and
the status bookkeeping every strategy shares."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from ..analysis.canary import MetricResult
from ..api.common import parse_duration
from ..api.llmconfig import ModelConfig
from ..api.rollout import (
    TERMINAL_PHASES,
    MetricResultStatus,
    RolloutSpec,
    RolloutStatus,
    StepResult,
)
from ..api.timestamps import format_ts as _ts
from ..api.timestamps import parse_optional as _parse
from ..observe.prometheus import MetricsUnavailable

TERMINAL = set(TERMINAL_PHASES)


@dataclass(frozen=True)
class SetWeight:
    """Give the candidate ``weight`` percent of traffic (and copies of ``mirror`` percent
    of requests, answered by stable)."""

    weight: int
    mirror: int = 0


@dataclass(frozen=True)
class Promote:
    """Make the candidate (or, for a bandit, the winning arm) the LLMConfig's stable
    version."""

    config: ModelConfig | None = None


@dataclass(frozen=True)
class SetArms:
    """bandit: percent of traffic per arm (variant id; stable's id included)."""

    weights: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class RestoreStable:
    """All traffic back to stable at once; ``quarantine`` when evidence condemned the
    candidate (so it is not retried automatically)."""

    reason: str
    quarantine: bool = False


@dataclass(frozen=True)
class Revert:
    """After promotion (the bake found a regression): the version the candidate replaced
    becomes stable again, recorded as a new version; the candidate is quarantined."""

    reason: str


Action = SetWeight | Promote | RestoreStable | SetArms | Revert


@dataclass
class Tick:
    status: RolloutStatus
    actions: list[Action] = field(default_factory=list)
    events: list[tuple[str, str, str]] = field(default_factory=list)  # type, reason, message
    reason: str = ""  # CamelCase reason of the current phase, for conditions


def _num(x: float | None) -> str | None:
    return None if x is None else f"{x:.6g}"


def result_status(r: MetricResult) -> MetricResultStatus:
    return MetricResultStatus(
        metric=r.metric,
        canary=_num(r.canary),
        stable=_num(r.stable),
        effect=_num(r.effect),
        p_value=_num(r.p_value),
        classification=r.classification,
        verdict=r.verdict,
        reason=r.reason,
        dry_run=r.dry_run,
    )


def finish(
    tick: Tick, phase: str, reason: str, message: str, action: Action, event_type: str = "Normal"
) -> Tick:
    tick.status.phase = phase  # type: ignore[assignment]
    tick.status.message = message
    tick.reason = reason
    tick.actions.append(action)
    tick.events.append((event_type, reason, message))
    return tick


def hold(
    spec: RolloutSpec, s: RolloutStatus, now: datetime, tick: Tick, exc: MetricsUnavailable
) -> Tick:
    held = _parse(s.holding_since)
    if held is None:
        s.holding_since = _ts(now)
        held = now
        tick.events.append(("Warning", "Holding", f"metrics unavailable, weight frozen: {exc}"))
    if (now - held).total_seconds() > parse_duration(spec.hold_deadline):
        return finish(
            tick,
            "Aborted",
            "HoldDeadlineExceeded",
            f"metrics unavailable for over {spec.hold_deadline}; stable restored: {exc}",
            RestoreStable("hold deadline exceeded"),
            "Warning",
        )
    s.phase, tick.reason = "Holding", "MetricsUnavailable"
    s.message = f"holding at {s.canary_weight}%: metrics unavailable ({exc})"
    return tick


def record_step(s: RolloutStatus, i: int, verdict: str, now: datetime) -> None:
    s.step_results = [r for r in s.step_results if r.step != i]
    s.step_results.append(
        StepResult(
            step=i,
            verdict=verdict,
            measurements=s.measurements,
            finished_at=_ts(now),
            results=list(s.results),
        )
    )


def next_step(s: RolloutStatus, now: datetime) -> None:
    s.current_step_index = (s.current_step_index or 0) + 1
    s.step_started_at = _ts(now)
    s.measurements = 0
    s.inconclusives = 0
    # The first measurement of a step comes one interval after it begins, so the window
    # holds traffic at the new weight, not the old one.
    s.last_measured_at = _ts(now)
    s.undecided_since = None
