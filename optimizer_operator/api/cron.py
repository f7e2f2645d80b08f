"""Cron syntax for policy schedules, with standard semantics (croniter): five fields,
minute hour day-of-month month day-of-week, names (``MON``, ``JAN``), ranges, steps and
lists, the ``@hourly``/``@daily``/``@weekly``/``@monthly``/``@yearly`` shorthands, and
day-of-month OR day-of-week when both are restricted, as cron has always done. Times
are read in an IANA time zone (UTC by default)."""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

ALIASES = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")


class CronError(ValueError):
    """A cron expression or time zone that is not valid."""


def parse_cron(expr: str) -> None:
    """Refuse anything but five valid fields or a shorthand."""
    text = expr.strip()
    if text.startswith("@"):
        if text.lower() not in ALIASES:
            raise CronError(f"{expr!r}: unknown shorthand; one of {', '.join(ALIASES)}")
        return
    fields = text.split()
    if len(fields) != 5:
        raise CronError(
            f"{expr!r}: want five fields (minute hour day-of-month month day-of-week), "
            f"got {len(fields)}"
        )
    if not croniter.is_valid(text):
        raise CronError(f"{expr!r}: not a valid cron expression")


def zone(name: str | None) -> tzinfo:
    """The IANA time zone ``name`` (UTC when None)."""
    if name is None:
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise CronError(f"{name!r} is not an IANA time zone (e.g. Europe/Berlin)") from None


def previous_fire(expr: str, now: datetime, time_zone: str | None = None) -> datetime:
    """The latest scheduled time at or before ``now`` (aware, in UTC)."""
    local = now.astimezone(zone(time_zone))
    prev: datetime = croniter(expr.strip(), local).get_prev(datetime)
    if croniter.match(expr.strip(), local.replace(second=0, microsecond=0)):
        prev = local.replace(second=0, microsecond=0)
    return prev.astimezone(UTC)


def cron_due(expr: str, since: datetime, now: datetime, time_zone: str | None = None) -> bool:
    """Whether a scheduled time has passed after ``since`` (the last cycle) up to ``now``:
    a late tick still fires, and once per scheduled time."""
    return previous_fire(expr, now, time_zone) > since


def cron_matches(expr: str, when: datetime, time_zone: str | None = None) -> bool:
    """Whether ``when`` falls in a scheduled minute."""
    local = when.astimezone(zone(time_zone))
    return bool(croniter.match(expr.strip(), local))
