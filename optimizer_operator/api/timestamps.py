"""Timestamps as Kubernetes writes them in status: UTC, to the second, RFC 3339."""

from __future__ import annotations

from datetime import UTC, datetime

FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def format_ts(when: datetime) -> str:
    """``when`` (aware or UTC) as ``2026-01-01T00:00:00Z``."""
    return when.astimezone(UTC).strftime(FORMAT) if when.tzinfo else when.strftime(FORMAT)


def parse_ts(text: str) -> datetime:
    """A status timestamp back to an aware UTC datetime; raises ValueError on bad text."""
    return datetime.strptime(text, FORMAT).replace(tzinfo=UTC)


def parse_optional(text: str | None) -> datetime | None:
    """``parse_ts`` that passes None through."""
    return None if text is None else parse_ts(text)


def now_rfc3339() -> str:
    """The current time as Kubernetes writes it (UTC, seconds)."""
    return format_ts(datetime.now(UTC))
