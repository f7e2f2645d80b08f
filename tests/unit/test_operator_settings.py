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
