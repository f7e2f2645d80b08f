"""Settle a policy's running trials: the baseline measured on stable's own traffic, a
trial's Rollout brought to its final gate and judged there, a Rollout that ended told to
the study as what it was (promoted, infeasible, not better, rolled back on evidence,
inconclusive), a bandit's arms measured on their own shares."""

from __future__ import annotations

from pydantic import ValidationError

from ..act import rollouts
from ..analysis.measurement import Variants, check_triggers
from ..api.common import parse_decimal, parse_duration
from ..api.policy import TrialRecord
from ..api.rollout import RolloutSpec, RolloutStatus
from ..api.timestamps import parse_optional
from ..api.variants import canary_variant_id, stable_variant_id
from ..decide import optimizer, trials
from ..observe.prometheus import MetricsUnavailable
from . import policy_quality
from .cycle_state import STARTING, CycleState

ENDED = ("Promoted", "RolledBack", "Aborted", "Failed")


def settle(c: CycleState) -> bool:
    """Bring running trials forward; True while one still runs."""
    running = False
    for record in c.status.trial_records:
        if record.state != "Running":
            continue
        settled = _baseline(c, record) if record.rollout is None else _rollout(c, record)
        running = running or not settled
    return running


def _measure(
    c: CycleState, record: TrialRecord, variant: str | None, span: float, extra: dict[str, float]
) -> None:
    """Judge the record on ``variant``'s metrics over ``span``, when they can be read."""
    if variant is None:
        return
    try:
        values = c.metrics.values(variant, span)
    except MetricsUnavailable:
        return
    trials.judge(c.spec, record, values, c.metrics.daily_requests(span), extra)


def _baseline(c: CycleState, record: TrialRecord) -> bool:
    """The baseline: stable measured as it runs. As a canary step would, no judgement on
    fewer than minSampleSize requests in the window (a fresh version's first seconds are
    noise)."""
    analysis = c.spec.rollout_template.analysis
    window = parse_duration(analysis.window)
    variant = stable_variant_id(c.stable.version)
    try:
        if c.metrics.configured:
            seen = c.metrics.requests(variant, window)
            if seen < analysis.min_sample_size:
                raise MetricsUnavailable(
                    f"{seen:.0f} of {analysis.min_sample_size} requests in the window"
                )
        values = c.metrics.values(variant, window, stable=True)
    except MetricsUnavailable as exc:
        if policy_quality.baseline_stalled(c, record):
            return True
        c.say("Collecting", f"baseline trial {record.number}: waiting for data ({exc})")
        return False
    trials.judge(c.spec, record, values, c.metrics.daily_requests(window))
    c.finish(record, "Complete", "Baseline", "the stable configuration, measured")
    policy_quality.measured(c)
    return True


def _rollout(c: CycleState, record: TrialRecord) -> bool:
    """True when the trial is settled (or just decided)."""
    assert record.rollout is not None
    body = rollouts.read_rollout(c.custom, c.namespace, record.rollout)
    if body is None and record.outcome == STARTING:
        # Recorded, then the operator stopped before the Rollout was created: no traffic
        # moved; told to the study as a failed trial (the next trial has a new number).
        c.finish(
            record,
            "Failed",
            "NotStarted",
            f"the operator stopped before Rollout {record.rollout} was created",
        )
        return True
    if body is None:
        c.finish(record, "Failed", "Failed", f"Rollout {record.rollout} was deleted")
        return True
    if record.outcome == STARTING:
        record.outcome = ""  # created just before the operator stopped: adopted, it goes on
    try:
        spec = RolloutSpec.model_validate(body.get("spec") or {})
        st = RolloutStatus.model_validate(body.get("status") or {})
    except ValidationError as exc:  # edited by hand into something else: wait, say so
        c.say("Monitoring", f"trial {record.number}: Rollout {record.rollout} unreadable: {exc}")
        return False
    started = parse_optional(st.started_at) or c.now
    span = max((c.now - started).total_seconds(), 10.0)
    if spec.strategy == "bandit":
        return _arm(c, record, st, span)
    canary, stable = st.canary_variant, st.stable_variant
    if trials.at_final_gate(spec, st) and record.values is None and canary and stable:
        return _gate(c, record, st, canary, stable, span)
    if st.phase == "Promoted":
        if record.values is None:
            _measure(c, record, canary, span, {})
        if record.values is None:
            c.finish(record, "Failed", "Failed", "promoted before it could be measured")
        else:
            c.finish(record, "Complete", "Promoted", record.reason or st.message or "")
        return True
    if st.phase in ("RolledBack", "Aborted", "Failed"):
        _ended(c, record, st, canary, span)
        return True
    why = f": {st.message}" if st.message and st.phase in (None, "Pending", "Holding") else ""
    c.say("Monitoring", f"trial {record.number}: Rollout {record.rollout} is {st.phase}{why}")
    return False


def _ended(
    c: CycleState, record: TrialRecord, st: RolloutStatus, canary: str | None, span: float
) -> None:
    """A trial whose Rollout ended without promotion: inconclusive (no verdict), aborted
    at our gate (infeasible or not better), or rolled back on evidence."""
    phase = str(st.phase)
    interrupted = trials.ended_interrupted(st)
    if record.outcome == "Interrupted" or interrupted:
        # Stopped for a reason that is not the candidate's (a rule's rollback, a person's
        # edit of the LLMConfig): no verdict on it (Optuna FAIL); it may be tried again.
        c.finish(record, "Failed", "Interrupted", record.reason or interrupted or phase)
        return
    if record.outcome == "Inconclusive" or trials.ended_inconclusive(st):
        # Neither side of a bound was shown: told as what it is (Optuna FAIL, no verdict),
        # never as infeasible; the config may be tried again later.
        if record.values is None:
            _measure(c, record, canary, span, {})
        c.finish(record, "Failed", "Inconclusive", record.reason or st.message or phase)
        return
    if record.values is not None and record.reason:  # aborted by us at the gate
        outcome = "Infeasible" if trials.infeasible(record) else "NotBetter"
        c.finish(record, "Complete", outcome, record.reason)
        return
    why = st.message or phase
    if trials.reverted_after_bake(st):
        # Promoted, then a regression at full traffic reverted it: its own outcome, told
        # to the study as infeasible (the bake's breach is a constraint broken).
        if record.values is None:
            _measure(c, record, canary, span, {})
        record.constraints = {**record.constraints, "bake": "1"}
        if record.values is None:
            c.finish(record, "Failed", "RevertedAfterBake", f"{why}; not measurable")
        else:
            c.finish(record, "Complete", "RevertedAfterBake", why)
        return
    _measure(c, record, canary, span, {"rollout": 1.0})  # rolled back on evidence: infeasible
    if record.values is None:
        c.finish(record, "Failed", "Failed", f"{phase}: {why}; not measurable")
    else:
        c.finish(record, "Complete", "RolledBack", why)


def _gate(
    c: CycleState, record: TrialRecord, st: RolloutStatus, canary: str, stable: str, span: float
) -> bool:
    """The final gate: promote only when every per-request constraint confidently holds
    and the weighted objectives improve enough; abort when one is confidently broken (or
    the daily cost projection is over) or no improvement; keep collecting while a bound
    is undecided, up to the template's ``bounds.maxUndecided``."""
    assert record.rollout is not None
    spec = c.spec
    analysis = spec.rollout_template.analysis
    quality = trials.trial_analysis(spec).quality
    variants = Variants(
        spec.target_ref.name,
        c.namespace,
        stable=stable,
        canary=canary,
        evaluators=quality.weights() if quality else (),
    )
    try:
        c_values = c.metrics.values(canary, span)
        s_values = c.metrics.values(stable, span, stable=True)
        assert c.metrics.source is not None  # values() raised otherwise
        bounds = check_triggers(
            trials.constraint_triggers(spec), analysis, c.metrics.source, variants, span
        )
        if bounds is None:
            raise MetricsUnavailable(f"fewer than {analysis.min_sample_size} candidate requests")
    except MetricsUnavailable as exc:
        c.say("Collecting", f"trial {record.number}: waiting for data ({exc})")
        return False
    waited = (c.now - (parse_optional(st.step_started_at) or c.now)).total_seconds()
    limit = analysis.bounds.max_undecided
    if trials.collecting(bounds, waited, limit):
        undecided = "; ".join(r.reason for r in bounds if not r.decided)
        c.say(
            "Collecting",
            f"trial {record.number}: at the final gate, collecting evidence ({undecided})",
        )
        return False
    trials.judge(spec, record, c_values, c.metrics.daily_requests(span))
    gain = optimizer.improvement(spec.objectives, c_values, s_values)
    record.score = f"{gain:.4g}"
    verdict = trials.gate_verdict(
        bounds,
        daily_over=float(record.constraints.get("maxDailyCostUsd", "0")) > 0,
        gain=gain,
        threshold=float(parse_decimal(spec.budgets.min_improvement)),
        limit=limit,
    )
    record.reason = verdict.reason
    if verdict.inconclusive:
        record.outcome = "Inconclusive"
    c.patch_rollout(record.rollout, {"promote": True} if verdict.promote else {"abort": True})
    c.status.state = "Deploying"
    return False


def _arm(c: CycleState, record: TrialRecord, st: RolloutStatus, span: float) -> bool:
    """A bandit arm: measured on its own share once the Rollout has ended."""
    if st.phase not in ENDED:
        c.say("Monitoring", f"bandit Rollout {record.rollout} is {st.phase}")
        return False
    newest = c.stable  # what runs now: the winner when the bandit promoted one
    won = (
        st.phase == "Promoted"
        and newest.hash == record.hash
        and newest.source == f"rollout/{record.rollout}"
    )
    variant = canary_variant_id(record.hash)
    dropped = st.excluded_arms.get(variant)
    _measure(c, record, variant, span, {"rollout": 1.0} if dropped else {})
    why = f"bandit {st.phase}: " + (f"dropped ({dropped})" if dropped else st.message or "")
    if record.values is None:
        c.finish(record, "Failed", "Failed", f"{why[:300]}; no measurable data")
    elif won:
        c.finish(record, "Complete", "Promoted", why[:300])
    else:
        outcome = "Infeasible" if trials.infeasible(record) else "NotBetter"
        c.finish(record, "Complete", outcome, why[:300])
    return True
