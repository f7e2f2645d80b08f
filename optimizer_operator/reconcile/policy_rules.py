"""A policy's rules, each cycle: evaluated on stable's series (``decide.rules``), the
winner applied — an alert Event, an optimizer trial now, the active Rollout aborted, or
a Rollout of the rule's candidate (recommended only, in mode ``recommend``)."""

from __future__ import annotations

from ..api.common import parse_duration
from ..api.policy import Rule, RuleCondition
from ..api.rollout import Step
from ..api.variants import stable_variant_id
from ..decide import rules
from ..observe.prometheus import MetricsUnavailable
from .cycle_state import CycleState

DONE = "done"  # the rule acted for this cycle


def _signal(c: CycleState, rule: Rule | RuleCondition, variant: str) -> float | None:
    if not c.metrics.configured:
        return None
    span = parse_duration(rule.for_ or "5m")
    step = max(span / 20.0, 5.0)
    try:
        series = c.metrics.series(
            rule.metric, variant, span=span, step=step, window=f"{int(2 * step)}s"
        )
    except MetricsUnavailable:
        return None
    return rules.signal_value(rule, series, step)


def apply_rules(c: CycleState, active: str | None) -> str | None:
    """Evaluate the rules and apply the winner. Returns DONE when the rule acted for this
    cycle, a trigger description when it asks for an optimizer trial now."""
    s, spec = c.status, c.spec
    variant = stable_variant_id(c.stable.version)
    decision = rules.evaluate(spec.rules, lambda r: _signal(c, r, variant), s.rule_firings, c.now)
    s.rule_evaluations = decision.evaluations
    c.fresh_rules = list(decision.evaluations)
    rule = decision.applied
    if rule is None:
        s.rule_firings = decision.firings
        return None
    action = rule.action
    ev = next(e for e in decision.evaluations if e.rule == rule.name)
    what = f"rule {rule.name}: {rule.metric} {rule.signal} {ev.value} {rule.operator} {rule.value}"
    if action.type == "alert":
        s.rule_firings = decision.firings
        c.events.append(("Warning", "RuleAlert", what))
        s.last_decision = f"{what} -> alert"
        return None
    if action.type == "experiment":
        s.rule_firings = decision.firings
        c.decide("RuleExperiment", f"{what} -> an optimizer trial now")
        return f"rule {rule.name}"
    if action.type == "rollback" and active:
        s.rule_firings = decision.firings
        c.patch_rollout(active, {"abort": True})
        c.decide("RuleRollback", f"{what} -> Rollout {active} aborted")
        return DONE
    if active:
        ev.outcome = f"Deferred: Rollout {active} is active"
        return None  # not counted as fired: it applies when the system is stable
    candidate = rules.candidate(rule, c.stable, c.target.previous)
    if candidate is None:
        ev.outcome = "NothingToDo"
        return None
    s.rule_firings = decision.firings
    if spec.mode == "recommend":
        c.decide("RuleRecommendation", f"{what} -> recommend {candidate.model}")
        return DONE
    name = f"{c.name}-rule-{rule.name.replace('_', '-').lower()}-{c.now:%H%M%S}"
    urgent = action.type == "rollback"
    c.create_rollout(name, candidate, steps=[Step(set_weight=100)] if urgent else None)
    c.decide("RuleApplied", f"{what} -> {action.type}: Rollout {name}")
    s.state = "Deploying"
    return DONE
