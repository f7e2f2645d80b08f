"""The operator's settings from the environment, each checked once at start so a bad
value stops it in one line naming the variable."""

from __future__ import annotations

import os
from pathlib import Path


def env_number(name: str, default: float, minimum: float, *, whole: bool = True) -> float:
    """A numeric setting from the environment; a ValueError naming the variable (one
    line, for the operator to print before it starts) when it is not a number of that
    kind or is below ``minimum``."""
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    kind = "a whole number" if whole else "a number"
    try:
        value = float(int(raw)) if whole else float(raw)
    except ValueError:
        raise ValueError(f"{name}: expected {kind} >= {minimum:g}, got {raw!r}") from None
    if not value >= minimum or value == float("inf"):
        raise ValueError(f"{name}: expected {kind} >= {minimum:g}, got {raw!r}")
    return value


def check_environment() -> None:
    """Read every setting once, so a bad one stops the operator in one line."""
    from ..act.notify import ENV, parse_webhooks
    from ..observe.prometheus_access import PrometheusAccess

    connection_limit()
    policy_workers()
    database_pool_size()
    prometheus_timeout()
    prometheus_cooldown()
    PrometheusAccess.from_env()
    parse_webhooks(os.environ.get(ENV))
    trim_seconds()
    recordings_dir()
    retrain_timeout()


def prometheus_timeout() -> float:
    """Seconds each Prometheus query may take (LLMOPT_PROMETHEUS_TIMEOUT, default 10)."""
    return env_number("LLMOPT_PROMETHEUS_TIMEOUT", 10, 0.1, whole=False)


def prometheus_cooldown() -> float:
    """Seconds Prometheus is not asked after it could not be reached
    (LLMOPT_PROMETHEUS_COOLDOWN, default 5)."""
    return env_number("LLMOPT_PROMETHEUS_COOLDOWN", 5, 0, whole=False)


def policy_workers() -> int:
    """Threads for policy cycles, apart from kopf's (LLMOPT_POLICY_WORKERS, default 4)."""
    return int(env_number("LLMOPT_POLICY_WORKERS", 4, 1))


def database_pool_size() -> int:
    """Most connections the history store holds open (LLMOPT_DATABASE_POOL_SIZE)."""
    return int(env_number("LLMOPT_DATABASE_POOL_SIZE", 4, 1))


def connection_limit() -> int:
    """Connections kopf may hold open to the API server (0: no limit, kopf's default).

    Without a limit, the start-up storm (every object resumed at once) opens hundreds of
    TLS connections, each with buffers of its own: at 1,000 Rollouts that was about 90 MB
    of the operator's peak RSS (``make bench-scale``). Too tight a limit queues the
    handlers' status patches instead (at 28, start-up took twice as long and the timers
    fell behind). Each watch holds one connection for good, so the default leaves room for
    them: 60 for requests plus four per watched namespace (three kinds and kopf's own),
    or for the cluster-wide watches."""
    explicit = os.environ.get("LLMOPT_API_CONNECTIONS")
    if explicit is not None:
        if not explicit.strip().isdigit():
            raise ValueError(
                f"LLMOPT_API_CONNECTIONS: expected a whole number >= 0 (0: no limit), "
                f"got {explicit!r}"
            )
        return int(explicit)
    namespaces = [n for n in os.environ.get("LLMOPT_NAMESPACES", "").split(",") if n]
    if any(set(n) & set("*?[!") for n in namespaces):
        return 0  # how many namespaces a glob matches is not known up front
    return 60 + 4 * max(1, len(namespaces))


def trim_seconds() -> float:
    """Seconds between heap trims (LLMOPT_MALLOC_TRIM_SECONDS, default 30; 0: never)."""
    return env_number("LLMOPT_MALLOC_TRIM_SECONDS", 30, 0, whole=False)


def recordings_dir() -> Path | None:
    """Where the gateways' recordings are, for router retraining (LLMOPT_RECORDINGS_DIR:
    a directory, e.g. a volume the gateways write ``--record`` files to; unset: no
    retraining)."""
    raw = os.environ.get("LLMOPT_RECORDINGS_DIR", "").strip()
    if not raw:
        return None
    path = Path(raw)
    if not path.is_dir():
        raise ValueError(f"LLMOPT_RECORDINGS_DIR: {raw!r} is not a directory")
    return path


def retrain_timeout() -> float:
    """Seconds one router retraining may take (LLMOPT_RETRAIN_TIMEOUT, default 600)."""
    return env_number("LLMOPT_RETRAIN_TIMEOUT", 600, 1, whole=False)
