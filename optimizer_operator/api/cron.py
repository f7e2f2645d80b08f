"""Cron syntax for policy schedules: five fields, minute hour day-of-month month
day-of-week (0 = Sunday), in UTC."""

from __future__ import annotations

from datetime import datetime

_RANGES = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 6)]


class CronError(ValueError):
    """A cron expression that is not five valid fields."""


def _field(text: str, low: int, high: int) -> set[int]:
    out: set[int] = set()
    for part in text.split(","):
        base, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if base == "*":
            start, end = low, high
        elif "-" in base:
            a, b = base.split("-", 1)
            start, end = int(a), int(b)
        else:
            start = int(base)
            end = high if step_text else start
        if not (low <= start <= end <= high) or step < 1:
            raise CronError(f"{part!r} is outside {low}-{high}")
        out.update(range(start, end + 1, step))
    return out


def parse_cron(expr: str) -> list[set[int]]:
    """Five fields: minute hour day-of-month month day-of-week (0 = Sunday)."""
    fields = expr.split()
    if len(fields) != 5:
        raise CronError(f"{expr!r}: want five fields, got {len(fields)}")
    try:
        return [_field(f, lo, hi) for f, (lo, hi) in zip(fields, _RANGES, strict=True)]
    except ValueError as exc:
        raise CronError(f"{expr!r}: {exc}") from None


def cron_matches(expr: str, when: datetime) -> bool:
    minute, hour, dom, month, dow = parse_cron(expr)
    return (
        when.minute in minute
        and when.hour in hour
        and when.day in dom
        and when.month in month
        and (when.isoweekday() % 7) in dow
    )
