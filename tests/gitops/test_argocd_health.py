"""Argo CD health checks (gitops/argocd/health/...) run by a real Lua interpreter.

Argo CD runs each script with the live object as the global ``obj`` and takes the
table it returns; the test does the same with Debian's lua5.4 (installed by
``make deps``) against sample objects in each state.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
HEALTH = REPO / "gitops" / "argocd" / "health" / "optimizer.llmops.dev"
LUA = shutil.which("lua5.4") or shutil.which("lua")


def _lua(value: Any) -> str:
    """A Python value as a Lua literal (lists as sequences, dicts as tables)."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # JSON string escapes are valid Lua escapes for this text
    if isinstance(value, list):
        return "{" + ", ".join(_lua(v) for v in value) + "}"
    return "{" + ", ".join(f"[{json.dumps(k)}] = {_lua(v)}" for k, v in value.items()) + "}"


def health(kind: str, obj: dict[str, Any]) -> tuple[str, str]:
    if LUA is None:
        pytest.fail("no Lua interpreter: `make deps` installs lua5.4")
    script = (HEALTH / kind / "health.lua").resolve()
    program = (
        f"obj = {_lua(obj)}\n"
        f"local hs = dofile({json.dumps(str(script))})\n"
        'io.write(hs.status, "\\t", hs.message or "")\n'
    )
    out = subprocess.run([LUA, "-"], input=program, capture_output=True, text=True, timeout=10)
    assert out.returncode == 0, out.stderr
    status, _, message = out.stdout.partition("\t")
    return status, message


def _ready(status: str, reason: str = "Accepted", message: str = "") -> list[dict[str, str]]:
    return [{"type": "Ready", "status": status, "reason": reason, "message": message}]


META = {"name": "x", "generation": 2}


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (None, "Progressing"),
        ({"phase": "Pending"}, "Progressing"),
        ({"phase": "Progressing", "observedGeneration": 2}, "Progressing"),
        ({"phase": "Holding", "message": "no data"}, "Progressing"),
        ({"phase": "Paused", "observedGeneration": 2}, "Suspended"),
        ({"phase": "Promoted", "observedGeneration": 2}, "Healthy"),
        ({"phase": "Promoted", "observedGeneration": 1}, "Progressing"),  # spec changed
        ({"phase": "RolledBack", "message": "error_rate failed"}, "Degraded"),
        ({"phase": "Aborted"}, "Degraded"),
        ({"phase": "Failed", "message": "Quarantined"}, "Degraded"),
    ],
)
def test_rollout_health(status: dict[str, Any] | None, expected: str) -> None:
    obj: dict[str, Any] = {"metadata": META, **({"status": status} if status else {})}
    got, message = health("Rollout", obj)
    assert got == expected, message
    if status and status.get("message") and expected == "Degraded":
        assert status["message"] in message


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (None, "Progressing"),
        ({"conditions": _ready("True"), "observedGeneration": 2}, "Healthy"),
        (
            {"conditions": _ready("True"), "observedGeneration": 2, "activeRollout": "r1"},
            "Progressing",
        ),
        ({"conditions": _ready("False", "InvalidSpec", "spec.model: empty")}, "Degraded"),
        ({"conditions": _ready("True"), "observedGeneration": 1}, "Progressing"),
        ({"conditions": _ready("Unknown")}, "Progressing"),
    ],
)
def test_llmconfig_health(status: dict[str, Any] | None, expected: str) -> None:
    obj: dict[str, Any] = {"metadata": META, **({"status": status} if status else {})}
    got, message = health("LLMConfig", obj)
    assert got == expected, message
    if expected == "Degraded":
        assert message == "InvalidSpec: spec.model: empty"


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (None, "Progressing"),
        ({"conditions": _ready("True"), "state": "Deploying"}, "Healthy"),
        ({"conditions": _ready("True"), "state": "Idle"}, "Healthy"),
        (
            {"conditions": _ready("True"), "breakerOpenUntil": "2026-11-25T12:00:00Z"},
            "Degraded",
        ),
        ({"conditions": _ready("False", "InvalidSpec", "spec.searchSpace")}, "Degraded"),
    ],
)
def test_policy_health(status: dict[str, Any] | None, expected: str) -> None:
    obj: dict[str, Any] = {"metadata": META, **({"status": status} if status else {})}
    got, message = health("OptimizationPolicy", obj)
    assert got == expected, message


def test_the_argocd_cm_snippet_carries_the_scripts_verbatim() -> None:
    cm = yaml.safe_load((REPO / "gitops" / "argocd" / "argocd-cm.yaml").read_text())
    for kind in ("Rollout", "LLMConfig", "OptimizationPolicy"):
        key = f"resource.customizations.health.optimizer.llmops.dev_{kind}"
        assert cm["data"][key] == (HEALTH / kind / "health.lua").read_text(), kind


def test_the_examples_of_our_kinds_validate() -> None:
    """Every example object of our kinds passes the same validation as the operator's."""
    files = sorted((REPO / "examples").rglob("*.yaml"))
    ours = [
        f
        for f in files
        if "optimizer.llmops.dev/" in f.read_text() and "kind: Kustomization" not in f.read_text()
    ]
    assert ours, "no examples of our kinds"
    out = subprocess.run(
        [sys.executable, "-m", "optimizer_operator", "validate", *map(str, ours)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr
