"""Faults of the Kubernetes side: the API server restarted mid-rollout with the watch
history compacted (410 Gone), and two operator processes with peering.

Each test runs its own local control plane and operators, so the faults it injects
never touch the rest of the suite.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config

from optimizer_operator.api import GROUP, VERSION
from optimizer_operator.local.cluster import ControlPlane, start_operator, stop_pids, tool_path
from tests.conftest import REPO, wait_for

pytestmark = [pytest.mark.faults, pytest.mark.cluster]


@pytest.fixture()
def plane(tmp_path: Path) -> Iterator[ControlPlane]:
    cp = ControlPlane(workdir=tmp_path / "cp")
    cp.start()
    _kubectl(cp, "apply", "-f", str(REPO / "crds"))
    _kubectl(cp, "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
    yield cp
    cp.stop()


def _kubectl(cp: ControlPlane, *args: str, stdin: str | None = None) -> str:
    out = subprocess.run(
        [str(tool_path("kubectl")), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "KUBECONFIG": str(cp.kubeconfig)},
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def _llmconfig(name: str, temperature: str = "0.3") -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "LLMConfig",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "provider": "simulator",
            "model": "sim-medium",
            "parameters": {"temperature": temperature},
        },
    }


def _rollout(
    name: str, target: str, temperature: str, steps: list[dict[str, Any]], **extra: Any
) -> dict[str, Any]:
    """A Rollout of sim-medium at ``temperature`` against LLMConfig ``target``."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Rollout",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "targetRef": {"name": target},
            "candidate": {
                "provider": "simulator",
                "model": "sim-medium",
                "parameters": {"temperature": temperature},
            },
            "steps": steps,
            **extra,
        },
    }


def _get(custom: client.CustomObjectsApi, plural: str, name: str) -> dict[str, Any]:
    obj: dict[str, Any] = custom.get_namespaced_custom_object(
        GROUP, VERSION, "default", plural, name
    )
    return obj


def _ready(custom: client.CustomObjectsApi, name: str) -> bool:
    try:
        conds = (_get(custom, "llmconfigs", name).get("status") or {}).get("conditions") or []
    except client.ApiException:
        return False
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)


def _etcd(cp: ControlPlane, path: str, body: dict[str, Any]) -> dict[str, Any]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{cp.etcd_port}{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        out: dict[str, Any] = json.loads(resp.read())
    return out


@pytest.mark.timeout(300)
def test_api_server_restart_with_compacted_history_loses_no_transition(
    plane: ControlPlane, tmp_path: Path
) -> None:
    api = config.new_client_from_config(config_file=str(plane.kubeconfig))
    custom = client.CustomObjectsApi(api)
    log = tmp_path / "operator.log"
    proc, _ = start_operator(
        plane.kubeconfig, log, env={"LLMOPT_ROLLOUT_TICK": "1", "LLMOPT_POLICY_TICK": "1"}
    )
    try:
        custom.create_namespaced_custom_object(
            GROUP, VERSION, "default", "llmconfigs", _llmconfig("bot")
        )
        wait_for(lambda: _ready(custom, "bot"), 60, "LLMConfig bot Ready")
        rollout = _rollout("cooler", "bot", "0.1", [{"setWeight": 20}, {"pause": {}}])
        custom.create_namespaced_custom_object(GROUP, VERSION, "default", "rollouts", rollout)
        wait_for(
            lambda: (
                (_get(custom, "rollouts", "cooler").get("status") or {}).get("phase") == "Paused"
            ),
            60,
            "the Rollout paused at 20%",
        )
        # Many writes the operator does not watch, then compact etcd at the head: every
        # resourceVersion the operator holds is now too old (410 Gone on resume).
        seen = _get(custom, "llmconfigs", "bot")["metadata"]["resourceVersion"]
        core = client.CoreV1Api(api)
        core.create_namespaced_config_map("default", {"metadata": {"name": "scratch"}})
        for i in range(30):
            core.patch_namespaced_config_map("scratch", "default", {"data": {"i": str(i)}})
        head = _etcd(plane, "/v3/kv/range", {"key": base64.b64encode(b"/").decode()})
        revision = int(head["header"]["revision"])
        _etcd(plane, "/v3/kv/compaction", {"revision": revision, "physical": True})
        plane.restart_apiserver(down_for=3)
        # What the operator's watches meet on resume: 410 Gone for the old version.
        stream = custom.list_namespaced_custom_object(
            GROUP,
            VERSION,
            "default",
            "llmconfigs",
            watch=True,
            resource_version=seen,
            timeout_seconds=2,
            _preload_content=False,
        )
        first = json.loads(stream.readline())
        assert first["type"] == "ERROR" and first["object"]["code"] == 410, first
        # The transition asked after the restart happens, once.
        custom.patch_namespaced_custom_object(
            GROUP, VERSION, "default", "rollouts", "cooler", {"spec": {"promote": True}}
        )
        wait_for(
            lambda: (
                (_get(custom, "rollouts", "cooler").get("status") or {}).get("phase") == "Promoted"
            ),
            90,
            "the Rollout promoted after the restart",
        )
        history = _get(custom, "llmconfigs", "bot")["status"]["history"]
        assert [h["source"] for h in history] == ["spec", "rollout/cooler"]
        # New objects are seen: the operator re-listed after its watches expired.
        custom.create_namespaced_custom_object(
            GROUP, VERSION, "default", "llmconfigs", _llmconfig("after")
        )
        wait_for(lambda: _ready(custom, "after"), 90, "a new LLMConfig Ready after the restart")
    finally:
        stop_pids([proc.pid])


def _handled(log: Path) -> int:
    """How many LLMConfig reconciles this operator ran (its plain log has no names)."""
    text = log.read_text(errors="replace") if log.exists() else ""
    return text.count("Handler 'reconcile' succeeded")


@pytest.mark.timeout(300)
def test_two_operators_with_peering_one_acts_and_the_standby_takes_over(
    plane: ControlPlane, tmp_path: Path
) -> None:
    peering = (REPO / "charts/llm-optimizer/files/crds/kopf-peering.yaml").read_text()
    _kubectl(plane, "apply", "-f", "-", stdin=peering)
    _kubectl(plane, "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
    _kubectl(
        plane,
        "apply",
        "-f",
        "-",
        stdin=yaml.safe_dump(
            {
                "apiVersion": "kopf.dev/v1",
                "kind": "ClusterKopfPeering",
                "metadata": {"name": "llm-optimizer"},
            }
        ),
    )
    api = config.new_client_from_config(config_file=str(plane.kubeconfig))
    custom = client.CustomObjectsApi(api)
    env = {"LLMOPT_ROLLOUT_TICK": "1", "LLMOPT_POLICY_TICK": "1", "LLMOPT_PEERING_LIFETIME": "8"}
    logs = {"high": tmp_path / "high.log", "low": tmp_path / "low.log"}
    high, _ = start_operator(
        plane.kubeconfig,
        logs["high"],
        extra_args=["--peering", "llm-optimizer", "--priority", "100"],
        env=env,
    )
    low, _ = start_operator(
        plane.kubeconfig,
        logs["low"],
        extra_args=["--peering", "llm-optimizer", "--priority", "50"],
        env=env,
    )
    try:
        time.sleep(3)  # both have announced themselves; the lower one pauses
        custom.create_namespaced_custom_object(
            GROUP, VERSION, "default", "llmconfigs", _llmconfig("one")
        )
        wait_for(lambda: _ready(custom, "one"), 60, "LLMConfig one Ready")
        rollout = _rollout("step", "one", "0.2", [{"setWeight": 50}])
        custom.create_namespaced_custom_object(GROUP, VERSION, "default", "rollouts", rollout)
        wait_for(
            lambda: (
                (_get(custom, "rollouts", "step").get("status") or {}).get("phase") == "Promoted"
            ),
            60,
            "the Rollout promoted",
        )
        assert _handled(logs["high"]) >= 1 and _handled(logs["low"]) == 0
        history = _get(custom, "llmconfigs", "one")["status"]["history"]
        assert [h["source"] for h in history] == ["spec", "rollout/step"]  # one promotion
        # The active operator dies without a goodbye; after the peering lifetime the
        # standby resumes and handles what comes next.
        os.kill(high.pid, signal.SIGKILL)
        high.wait(timeout=10)
        custom.create_namespaced_custom_object(
            GROUP, VERSION, "default", "llmconfigs", _llmconfig("two")
        )
        wait_for(lambda: _ready(custom, "two"), 90, "the standby handled LLMConfig two")
        assert _handled(logs["low"]) >= 1
    finally:
        stop_pids([p.pid for p in (high, low) if p.poll() is None])


@pytest.mark.timeout(240)
def test_connection_resets_and_latency_lose_no_transition(
    plane: ControlPlane, tmp_path: Path
) -> None:
    from tests.faults.tcp_proxy import FlakyProxy

    proxy = FlakyProxy(plane.apiserver_port, latency=0.05)
    flaky = tmp_path / "flaky-kubeconfig"
    flaky.write_text(
        plane.kubeconfig.read_text().replace(
            f"127.0.0.1:{plane.apiserver_port}", f"127.0.0.1:{proxy.port}"
        )
    )
    api = config.new_client_from_config(config_file=str(plane.kubeconfig))  # direct
    custom = client.CustomObjectsApi(api)
    proc, _ = start_operator(
        flaky, tmp_path / "operator.log", env={"LLMOPT_ROLLOUT_TICK": "1"}, extra_args=["-v"]
    )
    try:
        custom.create_namespaced_custom_object(
            GROUP, VERSION, "default", "llmconfigs", _llmconfig("bot")
        )
        wait_for(lambda: _ready(custom, "bot"), 60, "LLMConfig bot Ready through the proxy")
        steps = [{"setWeight": 20}, {"pause": {"duration": "4s"}}, {"setWeight": 60}]
        custom.create_namespaced_custom_object(
            GROUP, VERSION, "default", "rollouts", _rollout("reset", "bot", "0.2", steps)
        )
        # Reset every connection (watches and requests) every 1.5 s while it runs.
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            proxy.reset_all()
            if (_get(custom, "rollouts", "reset").get("status") or {}).get("phase") == "Promoted":
                break
            time.sleep(1.5)
        else:
            status = _get(custom, "rollouts", "reset").get("status")
            raise AssertionError(f"not promoted through resets: {status}")
        assert proxy.resets >= 3
        history = _get(custom, "llmconfigs", "bot")["status"]["history"]
        assert [h["source"] for h in history] == ["spec", "rollout/reset"]  # once
        custom.create_namespaced_custom_object(
            GROUP, VERSION, "default", "llmconfigs", _llmconfig("later")
        )
        wait_for(lambda: _ready(custom, "later"), 60, "a new LLMConfig Ready after the resets")
    finally:
        stop_pids([proc.pid])
        proxy.close()
