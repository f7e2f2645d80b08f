"""When a policy's cycle runs: interval, cron with time windows, threshold, event, AND/OR."""

from __future__ import annotations

from datetime import datetime

from ..api.common import parse_decimal, parse_duration
from ..api.cron import cron_due, cron_matches
from ..api.llmconfig import LLMConfigObject
from ..api.policy import OptimizationPolicyStatus, Schedule, Trigger
from ..api.timestamps import parse_optional as _parse
from ..api.variants import stable_variant_id
from ..observe.prometheus import BUILTIN, MetricSource, MetricsUnavailable, render

_OPS = {
    "gt": lambda a, b: a > b,
    "gte": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "lte": lambda a, b: a <= b,
}


def fired(
    trigger: Trigger,
    status: OptimizationPolicyStatus,
    target: LLMConfigObject,
    source: MetricSource | None,
    now: datetime,
    namespace: str,
    created: datetime | None = None,
) -> bool:
    last = _parse(status.last_cycle_time)
    if trigger.type == "interval":
        assert trigger.every is not None
        return last is None or (now - last).total_seconds() >= parse_duration(trigger.every)
    if trigger.type == "cron":
        assert trigger.cron is not None
        # A scheduled time passed since the last cycle (or, before the first, since the
        # policy was created, as a CronJob counts from its creation).
        since = last or created
        if since is None:
            return cron_matches(trigger.cron, now, trigger.time_zone)
        return cron_due(trigger.cron, since, now, trigger.time_zone)
    if trigger.type == "event":
        if trigger.event == "llmConfigChanged":
            current = target.status.current_hash
            return status.seen_config_hash is not None and current != status.seen_config_hash
        finished = [
            _parse(r.finished_at) for r in status.trial_records if r.rollout and r.finished_at
        ]
        newest = max((f for f in finished if f is not None), default=None)
        return newest is not None and (last is None or newest > last)
    # threshold: the metric on the stable variant, averaged over `for`, against value
    if source is None or trigger.metric not in BUILTIN:
        return False
    stable = target.stable
    if stable is None:
        return False
    window = f"{int(parse_duration(trigger.for_ or '5m'))}s"
    try:
        value = source.value(
            render(
                BUILTIN[trigger.metric][0],
                llm_config=target.name,
                variant=stable_variant_id(stable.version),
                namespace=namespace,
                window=window,
            )
        )
    except MetricsUnavailable:
        return False  # no data, no trigger
    assert trigger.operator is not None and trigger.value is not None
    return bool(_OPS[trigger.operator](value, float(parse_decimal(trigger.value))))


def due(
    schedule: Schedule,
    status: OptimizationPolicyStatus,
    target: LLMConfigObject,
    source: MetricSource | None,
    now: datetime,
    namespace: str,
    created: datetime | None = None,
) -> str | None:
    """A description of what fired, or None when the cycle should not run now.
    ``created``: the policy's creation time, the start of a cron schedule's count."""
    results = [
        (t, fired(t, status, target, source, now, namespace, created)) for t in schedule.triggers
    ]
    status.seen_config_hash = target.status.current_hash
    hits = [t for t, ok in results if ok]
    if not hits or (schedule.combine == "all" and len(hits) != len(results)):
        return None
    return " and ".join(_describe(t) for t in hits)


def _describe(t: Trigger) -> str:
    if t.type == "interval":
        return f"every {t.every}"
    if t.type == "cron":
        return f"cron {t.cron}" + (f" ({t.time_zone})" if t.time_zone else "")
    if t.type == "event":
        return f"event {t.event}"
    return f"{t.metric} {t.operator} {t.value}"
