"""Rules: priority, cooldown, daily limit, no data, and the signals they compare."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from optimizer_operator.api.policy import Rule
from optimizer_operator.decide.rules import evaluate, signal_value

NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)


def _rule(name: str, priority: int, **extra: object) -> Rule:
    return Rule.model_validate(
        {
            "name": name,
            "metric": "error_rate",
            "operator": "gt",
            "value": "0.05",
            "action": {"type": "alert"},
            "priority": priority,
            "cooldown": "1h",
            "maxPerDay": 2,
            **extra,
        }
    )


def test_the_lowest_priority_number_wins_and_the_rest_are_recorded_as_suppressed() -> None:
    rules = [_rule("late", 50), _rule("first", 10), _rule("quiet", 5, value="0.5")]
    decision = evaluate(rules, lambda r: 0.1, {}, NOW)
    assert decision.applied is not None and decision.applied.name == "first"
    outcomes = {e.rule: e.outcome for e in decision.evaluations}
    assert outcomes == {
        "late": "Suppressed by first (priority 10)",
        "first": "Applied",
        "quiet": "NotMet",
    }
    assert decision.firings == {"first": ["2026-11-25T12:00:00Z"]}


def test_cooldown_daily_limit_and_missing_data_stop_a_rule() -> None:
    rule = _rule("r", 1)
    fired = {"r": ["2026-11-25T11:30:00Z"]}
    assert evaluate([rule], lambda r: 0.1, fired, NOW).evaluations[0].outcome == "Cooldown"
    twice = {"r": ["2026-11-25T01:00:00Z", "2026-11-25T05:00:00Z"]}
    assert evaluate([rule], lambda r: 0.1, twice, NOW).evaluations[0].outcome == "DailyLimit"
    old = {"r": ["2026-11-24T01:00:00Z", "2026-11-24T05:00:00Z"]}  # over a day ago
    assert evaluate([rule], lambda r: 0.1, old, NOW).applied is not None
    nodata = evaluate([rule], lambda r: None, {}, NOW + timedelta(hours=3))
    assert nodata.applied is None and nodata.evaluations[0].outcome == "NoData"


def test_signals_value_trend_and_anomaly() -> None:
    rng = np.random.default_rng(7)
    rising = list(np.linspace(0.01, 0.05, 30) + rng.normal(0, 0.001, 30))
    assert abs(signal_value(_rule("v", 1), rising, 10) - 0.03) < 0.002  # type: ignore[operator]
    slope = signal_value(_rule("t", 1, signal="trend"), rising, 10)
    assert slope is not None and abs(slope - 0.04 / 29 * 6) < 0.002  # per minute at 10 s steps
    spike = [*list(rng.normal(0.01, 0.001, 30)), 0.05]
    z = signal_value(_rule("a", 1, signal="anomaly"), spike, 10)
    assert z is not None and z > 10
    assert signal_value(_rule("v", 1), [], 10) is None


def test_composite_rules_combine_with_all_and_any() -> None:
    both = _rule(
        "both",
        1,
        also=[{"metric": "latency_p95_seconds", "operator": "gt", "value": "2"}],
    )
    values = {"error_rate": 0.1, "latency_p95_seconds": 1.0}

    def read(cond: object) -> float | None:
        return values.get(cond.metric)  # type: ignore[attr-defined]

    assert evaluate([both], read, {}, NOW).applied is None  # errors high, latency fine
    either = _rule(
        "either",
        1,
        combine="any",
        also=[{"metric": "latency_p95_seconds", "operator": "gt", "value": "2"}],
    )
    assert evaluate([either], read, {}, NOW).applied is not None
    values["latency_p95_seconds"] = 3.0
    assert evaluate([both], read, {}, NOW).applied is not None
    values.pop("latency_p95_seconds")  # no data on the further condition: it does not hold
    assert evaluate([both], read, {}, NOW).applied is None
