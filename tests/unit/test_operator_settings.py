"""The operator's process settings that keep its memory down at scale (their effect is
measured by ``make bench-scale``, not here: these check what each setting does)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from optimizer_operator.handlers.settings import connection_limit


@pytest.mark.parametrize(
    ("env", "limit"),
    [
        ({}, 28),  # cluster-wide: room for the watches of one "namespace"
        ({"LLMOPT_NAMESPACES": "team-a,team-b,team-c"}, 36),  # four watches per namespace
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


@pytest.mark.parametrize(("value", "expected"), [("2", "2"), ("0", "None"), (None, "2")])
def test_malloc_arenas_are_capped_unless_turned_off(value: str | None, expected: str) -> None:
    """In a fresh process, as the operator calls it before kopf starts any thread (glibc's
    mallopt answers 1 when it took the setting)."""
    env = {"PATH": "/usr/bin:/bin"}
    if value is not None:
        env["LLMOPT_MALLOC_ARENAS"] = value
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "from optimizer_operator.handlers.settings import limit_malloc_arenas;"
            "print(limit_malloc_arenas())",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert out.stdout.strip() == expected
