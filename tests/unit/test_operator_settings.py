"""The operator's API connection pool, which keeps its memory down at scale (the effect is
measured by ``make bench-scale``, not here: this checks what the setting is)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from optimizer_operator.handlers.settings import connection_limit


@pytest.mark.parametrize(
    ("env", "limit"),
    [
        ({}, 64),  # cluster-wide: room for the watches of one "namespace"
        ({"LLMOPT_NAMESPACES": "team-a,team-b,team-c"}, 72),  # four watches per namespace
        ({"LLMOPT_NAMESPACES": "team-*"}, 0),  # a glob: how many it matches is unknown
        ({"LLMOPT_NAMESPACES": "a,b", "LLMOPT_API_CONNECTIONS": "7"}, 7),  # explicit wins
        ({"LLMOPT_API_CONNECTIONS": "0"}, 0),  # kopf's default: unbounded
    ],
)
def test_the_api_connection_pool_leaves_room_for_every_watch(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], limit: int
) -> None:
    monkeypatch.delenv("LLMOPT_NAMESPACES", raising=False)
    monkeypatch.delenv("LLMOPT_API_CONNECTIONS", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert connection_limit() == limit


def test_a_bad_pool_size_is_a_one_line_error_before_anything_starts() -> None:
    """Exit code 2 and one line naming the variable; no traceback, nothing contacted."""
    env = {**os.environ, "LLMOPT_API_CONNECTIONS": "lots", "KUBECONFIG": "/nonexistent"}
    out = subprocess.run(
        [sys.executable, "-m", "optimizer_operator", "operator"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2, out
    assert out.stderr.strip().splitlines() == [
        "error: LLMOPT_API_CONNECTIONS: expected a whole number >= 0 (0: no limit), got 'lots'"
    ]


@pytest.mark.parametrize(
    ("name", "value", "line"),
    [
        ("LLMOPT_POLICY_WORKERS", "0", "expected a whole number >= 1, got '0'"),
        ("LLMOPT_DATABASE_POOL_SIZE", "four", "expected a whole number >= 1, got 'four'"),
        ("LLMOPT_PROMETHEUS_COOLDOWN", "-1", "expected a number >= 0, got '-1'"),
        ("LLMOPT_PROMETHEUS_TIMEOUT", "nan", "expected a number >= 0.1, got 'nan'"),
        ("LLMOPT_MALLOC_TRIM_SECONDS", "-5", "expected a number >= 0, got '-5'"),
        ("LLMOPT_PROMETHEUS_HEADERS", "x", "not JSON (Expecting value)"),
        ("LLMOPT_NOTIFY_WEBHOOKS", '{"url": "http://x"}', "expected a list of webhooks"),
    ],
)
def test_a_bad_setting_is_a_one_line_error_naming_it(
    name: str, value: str, line: str
) -> None:
    env = {**os.environ, name: value, "KUBECONFIG": "/nonexistent"}
    out = subprocess.run(
        [sys.executable, "-m", "optimizer_operator", "operator"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2, out
    assert out.stderr.strip().splitlines() == [f"error: {name}: {line}"]


async def test_policy_cycles_run_on_their_own_threads_not_kopfs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A cycle's slow work (Prometheus, PostgreSQL, Optuna) runs on a policy-cycle
    thread; kopf's worker threads stay for Rollout ticks and LLMConfig renders. The
    cycle itself is replaced by a recorder here: what is checked is where it runs."""
    import contextvars
    import threading

    from optimizer_operator.handlers import policy, telemetry

    def waits() -> float:
        name = "llmopt_operator_policy_queue_seconds_count"
        return telemetry.REGISTRY.get_sample_value(name) or 0.0

    ran_on: list[tuple[str, str]] = []
    kopf_context = contextvars.ContextVar[str]("kopf_context")
    monkeypatch.setattr(
        policy,
        "_cycle",
        lambda body, patch: ran_on.append(
            (threading.current_thread().name, kopf_context.get("missing"))
        ),
    )
    before = waits()
    kopf_context.set("kopf's settings")  # as kopf sets its own before a handler runs
    await policy.cycle(body={}, patch={})  # type: ignore[arg-type]
    [(thread, seen)] = ran_on
    assert thread.startswith("policy-cycle")
    # kopf.event and kopf's settings are reached through context variables: the cycle
    # runs in the handler's context, not a bare thread's.
    assert seen == "kopf's settings"
    assert waits() == before + 1  # the wait for a thread is exported


def test_the_heap_is_trimmed_periodically_unless_switched_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from optimizer_operator.handlers import memory

    monkeypatch.setenv("LLMOPT_MALLOC_TRIM_SECONDS", "0")
    assert memory.start_trimming() is None
    monkeypatch.setenv("LLMOPT_MALLOC_TRIM_SECONDS", "3600")
    thread = memory.start_trimming()  # glibc here: malloc_trim exists
    assert thread is not None and thread.daemon and thread.is_alive()
