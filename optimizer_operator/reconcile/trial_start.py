"""Start the policy's next trial: the stable config first (the baseline, measured as it
runs), then the study's proposal — settled without traffic when ``decide.proposal``
says so, recommended in mode ``recommend``, else recorded and then given its Rollout
(``<policy>-t<number>``); or, for a small discrete space, every candidate at once in one
bandit Rollout."""

from __future__ import annotations

import optuna

from ..api.common import parse_decimal
from ..api.names import object_name
from ..api.policy import TrialRecord
from ..api.timestamps import format_ts
from ..decide import optimizer, predictor, proposal, threshold_search, trials
from ..providers.catalog import list_price
from .cycle_state import CycleState
from .policy_quality import needs_rebaseline


def propose(c: CycleState, trigger: str) -> None:
    s, spec, stable = c.status, c.spec, c.stable_config
    s.state = "Deciding"
    baseline = optimizer.baseline_params(spec, stable) if not s.trial_records else None
    if baseline is not None:  # warm start: trial 0 is the stable config, as it runs
        _start_baseline(c, _record(c, 0, baseline, stable.config_hash()), trigger)
        return
    again = optimizer.baseline_params(spec, stable) if needs_rebaseline(c) else None
    if again is not None:  # the first ended without quality scores; they are here now
        asked = c.study.ask(again)
        number = asked.trial.number
        _start_baseline(c, _record(c, number, asked.params, stable.config_hash()), trigger)
        return
    if proposal.bandit_points(spec, stable) is not None:
        _bandit(c, trigger)
        return
    screen = optimizer.screening_params(spec, stable, s.trial_records, list_price)
    searched = None if screen is not None else threshold_search.next_point(spec, s.trial_records)
    asked = c.study.ask(screen or (searched[0] if searched else None))
    number = asked.trial.number
    record = _record(c, number, asked.params, asked.config.config_hash())
    record.explanation = trials.explain(
        spec, s.trial_records, record.params, screen, searched[1] if searched else None
    )
    if _asked_again(c, record):
        return
    if record.hash == stable.config_hash():
        _start_baseline(c, record, trigger)  # stable, never measured: on its own traffic
        return
    refused = proposal.refusal(spec, record, asked.config, c.target.quarantined())
    if refused is not None:
        _refuse(c, record, refused)
        return
    s.state = "Validating"
    forecast = predictor.predict(spec.search_space, s.trial_records, record.params)
    record.prediction, record.confidence = forecast.summary(), forecast.confidence
    daily = c.metrics.daily_requests(3600) if spec.constraints.max_daily_cost_usd else None
    doomed = proposal.predicted_infeasible(spec, s.trial_records, record.params, forecast, daily)
    if doomed is not None:
        # Proven or confidently predicted to break a constraint: the study is told the
        # evidence and the config gets no traffic.
        values, why = doomed
        trials.judge(spec, record, values, None, {"predicted": 1.0})
        c.record(record, "Complete", "PredictedInfeasible", why)
        return
    if spec.mode == "recommend":
        # Recorded as a trial of its own (told to the study as failed: no measurement), so
        # the search moves on; `llm-optimizer accept POLICY --trial N` rolls it out.
        record.state, record.outcome = "Failed", "Recommended"
        record.reason = f"mode recommend ({trigger})"
        record.finished_at = format_ts(c.now)
        s.trial_records.append(record)
        s.recommendation = record
        s.state = "Idle"
        c.decide(
            "Recommendation",
            f"recommend {asked.config.model} {record.params} as trial {number} (mode "
            f"recommend: no rollout; llm-optimizer accept {c.name} --trial {number})",
        )
        s.message = s.last_decision
        return
    record.rollout = object_name(f"{c.name}-t{number}")
    s.trial_records.append(record)
    c.create_trial_rollout(record, asked.config, proposal.first_weight_divisor(spec, forecast))
    s.state = "Deploying"
    c.decide(
        "TrialStarted",
        f"trial {number}: Rollout {record.rollout} for {asked.config.model} "
        f"{record.params} ({trigger})",
    )
    s.message = s.last_decision


def _refuse(c: CycleState, record: TrialRecord, refused: proposal.Refusal) -> None:
    """A config that cannot be tried: failed with the reason; refused for the same reason
    before, a free Duplicate instead (the sampler may ask for it again, and a run of
    these ends the search as exhausted) — no second trial spent on it."""
    s = c.status
    earlier = next(
        (r for r in s.trial_records if r.hash == record.hash and r.outcome == refused.outcome),
        None,
    )
    if earlier is None:
        c.record(record, refused.state, refused.outcome, refused.reason)
        return
    record.state, record.outcome = "Failed", "Duplicate"
    record.reason = f"refused again, as trial {earlier.number}: {refused.reason}"
    record.finished_at = format_ts(c.now)
    s.trial_records.append(record)
    s.message = f"trial {record.number}: {record.reason}"


def _asked_again(c: CycleState, record: TrialRecord) -> bool:
    """The sampler asked again for a config already measured (stable too) or already
    recommended: told its result again as a Duplicate — no traffic, no trial budget, no
    recommendation repeated every cycle. False when the config is new."""
    s = c.status
    seen = proposal.measured_before(record, s.trial_records)
    earlier = None if seen is not None else proposal.recommended_before(record, s.trial_records)
    if seen is None and earlier is None:
        return False
    # Measured: the same values told again; recommended: still nothing measured (failed).
    record.state = "Complete" if seen is not None else "Failed"
    record.outcome = "Duplicate"
    record.finished_at = format_ts(c.now)
    if seen is not None:
        record.values, record.constraints = seen.values, dict(seen.constraints)
        record.reason = f"same config as trial {seen.number}"
        s.message = f"trial {record.number}: {record.reason}; told its result again"
    else:
        assert earlier is not None
        record.reason = f"recommended already as trial {earlier.number}"
        s.message = (
            f"trial {record.number}: {record.reason} "
            f"(llm-optimizer accept {c.name} --trial {earlier.number})"
        )
    s.trial_records.append(record)
    return True


def _record(c: CycleState, number: int, params: dict[str, str], config_hash: str) -> TrialRecord:
    return TrialRecord(
        number=number,
        params=params,
        hash=config_hash,
        state="Running",
        started_at=format_ts(c.now),
    )


def _start_baseline(c: CycleState, record: TrialRecord, trigger: str) -> None:
    """A trial of the stable config: measured on its own traffic, no Rollout."""
    c.status.trial_records.append(record)
    c.decide("TrialStarted", f"trial {record.number}: baseline, the stable config ({trigger})")
    c.say("Collecting", c.status.last_decision or "")


def _bandit(c: CycleState, trigger: str) -> None:
    """Every candidate of a small discrete space at once, in one bandit Rollout whose arms
    are each guarded by the policy's constraints; each is a trial of the study, measured
    on its own share when the Rollout ends."""
    s, spec, stable = c.status, c.spec, c.stable_config
    if any((r.rollout or "").startswith(f"{c.name}-bandit") for r in s.trial_records):
        c.say("Idle", "bandit finished: every candidate of the space was served and measured")
        return
    quarantined = c.target.quarantined()
    study = c.study.study()
    proposals = []
    for point in proposal.bandit_points(spec, stable) or []:
        asked = optimizer.ask(study, spec, stable, first=point)
        h = asked.config.config_hash()
        if h == stable.config_hash() or h in quarantined:
            study.tell(asked.trial, state=optuna.trial.TrialState.FAIL)
            continue
        proposals.append(asked)
    if not proposals:
        c.say("Idle", "bandit: no candidate besides stable and quarantine")
        return
    name = object_name(f"{c.name}-bandit-t{proposals[0].trial.number}")
    records = []
    for p in proposals:
        record = _record(c, p.trial.number, p.params, p.config.config_hash())
        record.rollout = name
        record.explanation = f"bandit arm of {len(proposals)} (small discrete space)"
        records.append(record)
    s.trial_records += records
    c.write_records_first(records)
    top = max(spec.objectives, key=lambda o: float(parse_decimal(o.weight)))
    c.create_rollout(
        name,
        proposals[0].config,
        steps=None,
        trial=records[0],
        bandit={
            "arms": [p.config.to_wire() for p in proposals[1:]],
            "metric": top.metric,
            "includeStable": True,
        },
    )
    c.started(records)
    s.state = "Deploying"
    c.decide(
        "BanditStarted",
        f"Rollout {name}: {len(proposals)} candidates and stable served at once, traffic "
        f"by Thompson sampling on {top.metric}, each arm held to the constraints ({trigger})",
    )
    s.message = s.last_decision
