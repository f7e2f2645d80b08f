"""Rules: conditions on a metric's value, trend or anomaly, with actions, priority,
cooldown, a daily limit, conflict resolution by priority, and a record of every
evaluation."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from ..analysis.orient import detect_anomaly, trend
from ..api.common import parse_decimal, parse_duration
from ..api.llmconfig import ModelConfig, Parameters, VersionRecord
from ..api.policy import Rule, RuleCondition, RuleEvaluation
from ..api.timestamps import format_ts, parse_ts

_OPS: dict[str, Callable[[float, float], bool]] = {
    "gt": lambda a, b: a > b,
    "gte": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "lte": lambda a, b: a <= b,
}


def _ts(now: datetime) -> str:
    return format_ts(now)


def _parse(ts: str) -> datetime:
    return parse_ts(ts)


def _holds(cond: Rule | RuleCondition, value: float) -> bool:
    return _OPS[cond.operator](value, float(parse_decimal(cond.value)))


def signal_value(
    rule: Rule | RuleCondition, series: Sequence[float], step_seconds: float
) -> float | None:
    """The number the rule compares, from the metric's samples over its window."""
    if not series:
        return None
    if rule.signal == "value":
        return sum(series) / len(series)
    if rule.signal == "trend":
        found = trend(series)
        if found is None:
            return None
        return found.slope * 60.0 / step_seconds if found.direction != "none" else 0.0
    found_anomaly = detect_anomaly(series)
    return None if found_anomaly is None else found_anomaly.score


@dataclass
class RuleDecision:
    applied: Rule | None
    evaluations: list[RuleEvaluation]
    firings: dict[str, list[str]]


def evaluate(
    rules: Sequence[Rule],
    read: Callable[[Rule | RuleCondition], float | None],
    firings: dict[str, list[str]],
    now: datetime,
) -> RuleDecision:
    """Evaluate every rule; apply at most one: the fired rule with the lowest priority
    number whose cooldown and daily limit allow it. ``read(rule)`` is the rule's signal
    value, None when there is no data (no data never fires a rule)."""
    day = {
        name: [t for t in times if (now - _parse(t)).total_seconds() < 86400]
        for name, times in firings.items()
    }
    evaluations: list[RuleEvaluation] = []
    candidates: list[tuple[Rule, RuleEvaluation]] = []
    for rule in rules:
        value = read(rule)
        ev = RuleEvaluation(rule=rule.name, fired=False, at=_ts(now))
        if value is None:
            ev.outcome = "NoData"
        else:
            ev.value = f"{value:.6g}"
            ev.fired = _holds(rule, value)
            if rule.also:
                more = [(c, read(c)) for c in rule.also]
                # No data on a further condition: it does not hold (never fires on absence).
                held = [v is not None and _holds(c, v) for c, v in more]
                combined = [ev.fired, *held]
                ev.fired = all(combined) if rule.combine == "all" else any(combined)
            ev.outcome = "Fired" if ev.fired else "NotMet"
        evaluations.append(ev)
        if not ev.fired:
            continue
        times = day.get(rule.name, [])
        if times and (now - _parse(times[-1])).total_seconds() < parse_duration(rule.cooldown):
            ev.outcome = "Cooldown"
        elif len(times) >= rule.max_per_day:
            ev.outcome = "DailyLimit"
        else:
            candidates.append((rule, ev))
    applied: Rule | None = None
    for rule, ev in sorted(candidates, key=lambda c: c[0].priority):
        if applied is None:
            applied, ev.outcome = rule, "Applied"
            day[rule.name] = [*day.get(rule.name, []), _ts(now)]
        else:
            ev.outcome = f"Suppressed by {applied.name} (priority {applied.priority})"
    return RuleDecision(applied, evaluations, {k: v for k, v in day.items() if v})


def candidate(
    rule: Rule, stable: VersionRecord, previous: VersionRecord | None
) -> ModelConfig | None:
    """What the rule's action would run instead of ``stable``: the previous version
    (rollback), another model (modelSwitch) or changed parameters (configChange);
    None when there is nothing to change to."""
    config = stable.model_config_part()
    action = rule.action
    if action.type == "rollback":
        return None if previous is None else previous.model_config_part()
    if action.type == "modelSwitch" and action.model is not None:
        return config.model_copy(
            update={
                "provider": action.model.provider,
                "model": action.model.model,
                "endpoint": action.model.endpoint or config.endpoint,
            }
        )
    if action.type == "configChange" and action.parameters:
        merged = {**config.parameters.to_wire(), **action.parameters}
        return config.model_copy(update={"parameters": Parameters.model_validate(merged)})
    return None
