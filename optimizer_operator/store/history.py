"""Version history of an LLMConfig, kept in its status (the default store)."""

from __future__ import annotations

from typing import Any

from ..api.llmconfig import ModelConfig, VersionRecord


def record_version(
    history: list[dict[str, Any]] | None,
    config: ModelConfig,
    *,
    source: str,
    now: str,
    limit: int,
) -> tuple[list[dict[str, Any]], int, bool]:
    """Add ``config`` as the newest version unless it already is the newest.

    Returns ``(history, current_version, is_new_version)``. Versions are numbered
    monotonically (never reused after trimming) and only a change of config
    hash makes a new version, so edits to targets or limits do not.
    """
    records = [VersionRecord.model_validate(r) for r in history or []]
    config_hash = config.config_hash()
    if records and records[-1].hash == config_hash:
        trimmed = records[-limit:]
        return [r.to_wire() for r in trimmed], trimmed[-1].version, False
    version = (records[-1].version + 1) if records else 1
    records.append(
        VersionRecord(
            version=version,
            hash=config_hash,
            provider=config.provider,
            model=config.model,
            parameters=config.parameters,
            endpoint=config.endpoint,
            router=config.router,
            source=source,
            applied_at=now,
        )
    )
    trimmed = records[-limit:]
    return [r.to_wire() for r in trimmed], version, True
