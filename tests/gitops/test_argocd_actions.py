"""Argo CD resource actions for Rollout (gitops/argocd/actions/...) run by a real Lua.

Argo CD runs discovery.lua with the live object as ``obj`` to list the actions and
whether each is disabled, then an action's action.lua, whose returned ``obj`` it
applies. The test does the same with Debian's lua5.4 on Rollouts in each state, and
checks that each action writes what the CLI writes (cli/rollout.py's patch).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from optimizer_operator.cli.rollout import _patch
from tests.gitops.test_argocd_health import LUA, REPO, _lua

ACTIONS = REPO / "gitops" / "argocd" / "actions" / "optimizer.llmops.dev" / "Rollout"
NAMES = ("promote", "promote-full", "abort", "retry", "pause", "resume")
SPEC_FIELDS = ("promote", "paused", "abort", "stepPromotions", "retry")


def _run(script: Path, obj: dict[str, Any], show: str) -> str:
    if LUA is None:
        pytest.fail("no Lua interpreter: `make deps` installs lua5.4")
    program = f"obj = {_lua(obj)}\nlocal out = dofile({json.dumps(str(script))})\n{show}\n"
    out = subprocess.run([LUA, "-"], input=program, capture_output=True, text=True, timeout=10)
    assert out.returncode == 0, out.stderr
    return out.stdout


def enabled(obj: dict[str, Any]) -> set[str]:
    """The actions discovery.lua offers (not disabled) for ``obj``."""
    show = 'for name, a in pairs(out) do if not a.disabled then io.write(name, "\\n") end end'
    return set(_run(ACTIONS / "discovery.lua", obj, show).split())


def act(name: str, obj: dict[str, Any]) -> dict[str, Any]:
    """The spec fields of the object action ``name`` returns."""
    show = "".join(f'io.write("{f}", "=", tostring(out.spec.{f}), "\\n") ' for f in SPEC_FIELDS)
    pairs = (line.split("=", 1) for line in _run(ACTIONS / name / "action.lua", obj, show)
             .splitlines())  # fmt: skip
    return {k: json.loads(v) for k, v in pairs if v != "nil"}


def _rollout(phase: str | None, **spec: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "optimizer.llmops.dev/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "r", "generation": 3},
        "spec": {"targetRef": {"name": "bot"}, **spec},
    }
    if phase is not None:
        obj["status"] = {"phase": phase}
    return obj


@pytest.mark.parametrize(
    ("phase", "spec", "offered"),
    [
        (None, {}, {"promote-full", "abort", "pause"}),
        ("Pending", {}, {"promote-full", "abort", "pause"}),
        ("Progressing", {}, {"promote", "promote-full", "abort", "pause"}),
        ("Holding", {}, {"promote", "promote-full", "abort", "pause"}),
        ("Paused", {"paused": True}, {"promote", "promote-full", "abort", "resume"}),
        ("Paused", {}, {"promote", "promote-full", "abort", "pause"}),  # a pause step
        ("Progressing", {"abort": True}, set()),  # abort asked: nothing else to do
        ("Baking", {}, set()),
        ("Promoted", {}, set()),
        ("RolledBack", {}, {"retry"}),
        ("Aborted", {"abort": True}, {"retry"}),
        ("Failed", {}, {"retry"}),
    ],
)
def test_discovery_offers_what_applies_in_each_state(
    phase: str | None, spec: dict[str, Any], offered: set[str]
) -> None:
    assert enabled(_rollout(phase, **spec)) == offered


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(
    "spec", [{}, {"stepPromotions": 2, "retry": 1, "paused": True, "abort": True}]
)
def test_each_action_writes_what_the_cli_writes(name: str, spec: dict[str, Any]) -> None:
    before = {k: v for k, v in spec.items()}
    got = act(name, _rollout("Progressing", **spec))
    action, full = ("promote", True) if name == "promote-full" else (name, False)
    want = {**before, **_patch(action, dict(spec), full)}
    assert got == want


def test_the_argocd_cm_snippet_carries_the_actions_verbatim() -> None:
    cm = yaml.safe_load((REPO / "gitops" / "argocd" / "argocd-cm.yaml").read_text())
    block = yaml.safe_load(
        cm["data"]["resource.customizations.actions.optimizer.llmops.dev_Rollout"]
    )
    assert block["discovery.lua"] == (ACTIONS / "discovery.lua").read_text()
    definitions = {d["name"]: d["action.lua"] for d in block["definitions"]}
    assert list(definitions) == list(NAMES)
    for name in NAMES:
        assert definitions[name] == (ACTIONS / name / "action.lua").read_text(), name
