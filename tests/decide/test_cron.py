"""Policy schedules by cron, with the semantics cron users know: day-of-month OR
day-of-week, names, shorthands, time zones, and a late tick that still fires once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from optimizer_operator.api.cron import CronError, cron_due, cron_matches, parse_cron
from optimizer_operator.api.llmconfig import LLMConfigObject
from optimizer_operator.api.policy import (
    OptimizationPolicySpec,
    OptimizationPolicyStatus,
    Schedule,
    Trigger,
)
from optimizer_operator.api.validation import InvalidSpec, parse_spec
from optimizer_operator.decide.triggers import due


def test_day_of_month_or_day_of_week_when_both_are_restricted() -> None:
    # The 1st of the month, and every Monday: cron's OR, not AND.
    expr = "0 9 1 * MON"
    assert cron_matches(expr, datetime(2026, 12, 1, 9, 0, tzinfo=UTC))  # a Tuesday, the 1st
    assert cron_matches(expr, datetime(2026, 12, 7, 9, 0, tzinfo=UTC))  # a Monday, the 7th
    assert not cron_matches(expr, datetime(2026, 12, 8, 9, 0, tzinfo=UTC))
    # Only one restricted: that one alone decides.
    assert not cron_matches("0 9 * * MON", datetime(2026, 12, 1, 9, 0, tzinfo=UTC))


def test_names_and_shorthands() -> None:
    assert cron_matches("30 8 * JAN-MAR SAT,SUN", datetime(2027, 2, 6, 8, 30, tzinfo=UTC))
    assert not cron_matches("30 8 * JAN-MAR SAT,SUN", datetime(2027, 4, 3, 8, 30, tzinfo=UTC))
    assert cron_matches("@daily", datetime(2026, 12, 4, 0, 0, tzinfo=UTC))
    assert not cron_matches("@daily", datetime(2026, 12, 4, 0, 1, tzinfo=UTC))
    assert cron_matches("@hourly", datetime(2026, 12, 4, 13, 0, tzinfo=UTC))
    for ok in ("@weekly", "@monthly", "@yearly", "*/15 9-17 * * 1-5"):
        parse_cron(ok)


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ("* * * *", "want five fields"),
        ("0 * * * * *", "want five fields"),  # seconds are not cron's
        ("61 * * * *", "not a valid cron"),
        ("*/0 * * * *", "not a valid cron"),
        ("0 9 * * FUNDAY", "not a valid cron"),
        ("@reboot", "unknown shorthand"),
    ],
)
def test_what_is_not_cron_is_refused(bad: str, says: str) -> None:
    with pytest.raises(CronError, match=says):
        parse_cron(bad)


def test_a_schedule_is_read_in_its_time_zone() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    nine_in_berlin = datetime(2026, 12, 4, 9, 0, tzinfo=berlin)  # 08:00 UTC in winter
    assert cron_matches("0 9 * * *", nine_in_berlin, "Europe/Berlin")
    assert not cron_matches("0 9 * * *", nine_in_berlin.astimezone(UTC))  # 08:00 in UTC
    summer = datetime(2027, 7, 1, 7, 0, tzinfo=UTC)  # 09:00 in Berlin (CEST)
    assert cron_matches("0 9 * * *", summer, "Europe/Berlin")


def test_a_late_tick_still_fires_once_per_scheduled_time() -> None:
    last = datetime(2026, 12, 4, 8, 55, tzinfo=UTC)
    # The operator was busy at 09:00; its tick at 09:07 still runs the 09:00 cycle.
    assert cron_due("0 9 * * *", last, datetime(2026, 12, 4, 9, 7, tzinfo=UTC))
    # The cycle ran at 09:07: not again until tomorrow's 09:00.
    ran = datetime(2026, 12, 4, 9, 7, tzinfo=UTC)
    assert not cron_due("0 9 * * *", ran, ran + timedelta(hours=5))
    assert cron_due("0 9 * * *", ran, datetime(2026, 12, 5, 9, 0, 20, tzinfo=UTC))
    assert not cron_due("0 9 * * *", last, datetime(2026, 12, 4, 8, 59, tzinfo=UTC))


def _llmc() -> LLMConfigObject:
    return LLMConfigObject.parse(
        {"metadata": {"name": "bot"}, "spec": {"provider": "simulator", "model": "sim-large"}}
    )


def test_a_policys_cron_trigger_counts_from_its_last_cycle_or_its_creation() -> None:
    schedule = Schedule.model_validate(
        {"triggers": [{"type": "cron", "cron": "0 9 * * *", "timeZone": "Europe/Berlin"}]}
    )
    late = datetime(2026, 12, 4, 8, 20, tzinfo=UTC)  # 09:20 in Berlin
    created = datetime(2026, 12, 4, 7, 0, tzinfo=UTC)
    never: Any = OptimizationPolicyStatus()
    assert due(schedule, never, _llmc(), None, late, "ns", created) == (
        "cron 0 9 * * * (Europe/Berlin)"
    )
    # Created after today's 09:00 in Berlin: the first cycle is tomorrow's.
    assert due(schedule, never, _llmc(), None, late, "ns", late - timedelta(minutes=5)) is None
    ran = OptimizationPolicyStatus(last_cycle_time="2026-12-04T08:05:00Z")
    assert due(schedule, ran, _llmc(), None, late, "ns", created) is None


def test_a_bad_cron_or_time_zone_names_the_field() -> None:
    with pytest.raises(ValueError, match="not an IANA time zone"):
        Trigger.model_validate({"type": "cron", "cron": "@daily", "timeZone": "Mars/Olympus"})
    with pytest.raises(ValueError, match="only for a cron trigger"):
        Trigger.model_validate({"type": "interval", "every": "5m", "timeZone": "UTC"})
    sample = Path(__file__).resolve().parents[2] / "config" / "samples" / "optimizationpolicy.yaml"
    spec = yaml.safe_load(sample.read_text())["spec"]
    spec["schedule"] = {"triggers": [{"type": "cron", "cron": "0 9 * * *", "timeZone": "Nowhere"}]}
    with pytest.raises(InvalidSpec) as err:
        parse_spec(OptimizationPolicySpec, spec)
    assert err.value.field == "spec.schedule.triggers[0].timeZone"
