"""A policy's rules, each cycle: evaluated on stable's series (``decide.rules``), the
winner applied — an alert Event, an optimizer trial now, the active Rollout aborted, or
a Rollout of the rule's candidate (recommended only, in mode ``recommend``)."""

from __future__ import annotations

from ..act import rollouts
from ..act.rollouts import LABEL_RULE, LABEL_SAFETY
from ..api.common import GROUP, parse_duration
from ..api.names import label_value
from ..api.policy import Rule, RuleCondition, RuleEvaluation
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
        return _stop_active(c, rule, ev, what, active)
    if active:
        ev.outcome = f"Deferred: Rollout {active} is active"
        return None  # not counted as fired: it applies when the system is stable
    candidate = rules.candidate(rule, c.stable, c.target.previous)
    if candidate is None:
        ev.outcome = "NothingToDo"
        return None
    if spec.mode == "recommend":
        s.rule_firings = decision.firings
        c.decide("RuleRecommendation", f"{what} -> recommend {candidate.model}")
        return DONE
    urgent = action.type == "rollback"
    name = _rule_rollout_name(c, rule)
    if name is None:
        ev.outcome = "Deferred: five Rollouts of this rule on this stable version already ended"
        return None
    s.rule_firings = decision.firings
    c.create_rollout(
        name,
        candidate,
        steps=[Step(set_weight=100)] if urgent else None,
        labels={
            LABEL_RULE: label_value(rule.name),
            **({LABEL_SAFETY: "rollback"} if urgent else {}),
        },
    )
    c.decide("RuleApplied", f"{what} -> {action.type}: Rollout {name}")
    s.state = "Deploying"
    return DONE


def _stop_active(
    c: CycleState, rule: Rule, ev: RuleEvaluation, what: str, active: str
) -> str | None:
    """A rollback rule fired while a Rollout runs: this policy's trial is aborted (told to
    the study as interrupted, not as the candidate's fault) and the rollback itself
    follows once it has stopped (the firing is counted then); a rollback already running
    is left alone; anyone else's Rollout is theirs to end, said in an Event."""
    body = rollouts.read_rollout(c.custom, c.namespace, active)
    labels = ((body or {}).get("metadata") or {}).get("labels") or {}
    if (
        body is not None
        and labels.get(LABEL_RULE)
        and labels.get(f"{GROUP}/policy") == label_value(c.name)
    ):
        ev.outcome = f"Deferred: Rollout {active} of a rule is running"
        return None
    trial = next(
        (r for r in c.status.trial_records if r.rollout == active and r.state == "Running"), None
    )
    if trial is None:
        ev.outcome = f"Deferred: Rollout {active} is not this policy's"
        c.events.append(
            ("Warning", "RuleDeferred", f"{what} -> rollback waits: Rollout {active} is active")
        )
        return None
    ev.outcome = f"Interrupted trial {trial.number}"
    trial.outcome, trial.reason = "Interrupted", f"aborted by rule {rule.name}: {what}"
    if body is not None:
        c.patch_rollout(active, {"abort": True})
    c.decide(
        "RuleRollback",
        f"{what} -> trial Rollout {active} aborted; the rollback follows once it has stopped",
    )
    return DONE


def _rule_rollout_name(c: CycleState, rule: Rule) -> str | None:
    """The rule's Rollout for this stable version: the same name when a cycle is retried
    (a Rollout created before its status was written is the one, not a second), the
    next one when an earlier Rollout of it has ended; None after five."""
    slug = rule.name.replace("_", "-").lower()
    found = rollouts.free_name(
        c.custom, c.namespace, f"{c.name}-rule-{slug}-v{c.stable.version}", attempts=5
    )
    return None if found is None else found[0]
