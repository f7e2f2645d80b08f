"""Safe under real operations: what people and crashes do to a running system.

Against the real API server and the session's operator: a Rollout deleted mid-canary,
a person's edit of the LLMConfig during a Rollout, two Rollouts created at once, names
at the Kubernetes limits. With an operator of the test's own that a fault-injection
point stops: a crash between recording a trial and creating its Rollout.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from optimizer_operator import faults
from optimizer_operator.act.configmap import default_configmap_name
from optimizer_operator.api import GROUP, VERSION
from optimizer_operator.api.variants import TOTAL_WEIGHT
from optimizer_operator.local.cluster import start_operator, stop_pids
from optimizer_operator.local.prometheus import LocalPrometheus
from optimizer_operator.providers.simulator import SimulatorProvider
from tests.conftest import wait_for
from tests.integration.test_canary_e2e import ANALYSIS, traffic

pytestmark = pytest.mark.cluster


def _custom(api: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api)


def _llmconfig(ns: str, name: str, temperature: str = "0.3") -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "LLMConfig",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "provider": "simulator",
            "model": "sim-medium",
            "parameters": {"temperature": temperature},
        },
    }


def _rollout(
    ns: str, name: str, target: str, steps: list[dict[str, Any]], temperature: str = "0.5"
) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Rollout",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "targetRef": {"name": target},
            "candidate": {
                "provider": "simulator",
                "model": "sim-medium",
                "parameters": {"temperature": temperature},
            },
            "steps": steps,
        },
    }


def _get(api: client.ApiClient, ns: str, plural: str, name: str) -> dict[str, Any] | None:
    try:
        obj: dict[str, Any] = _custom(api).get_namespaced_custom_object(
            GROUP, VERSION, ns, plural, name
        )
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return obj


def _status(api: client.ApiClient, ns: str, plural: str, name: str) -> dict[str, Any]:
    return dict((_get(api, ns, plural, name) or {}).get("status") or {})


def _create(api: client.ApiClient, ns: str, plural: str, body: dict[str, Any]) -> None:
    _custom(api).create_namespaced_custom_object(GROUP, VERSION, ns, plural, body)


def _split(api: client.ApiClient, ns: str, llmconfig: str) -> list[tuple[str, int]]:
    """(variant, percent) of the ConfigMap the gateway reads."""
    name = default_configmap_name(llmconfig)
    cm = client.CoreV1Api(api).read_namespaced_config_map(name, ns)
    doc = json.loads(cm.data["variants.json"])
    return [(v["id"], v["weight"] * 100 // TOTAL_WEIGHT) for v in doc["variants"]]


def _ready(api: client.ApiClient, ns: str, name: str) -> bool:
    conds = _status(api, ns, "llmconfigs", name).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)


def _phase(api: client.ApiClient, ns: str, name: str) -> str | None:
    return _status(api, ns, "rollouts", name).get("phase")


def test_a_rollout_deleted_mid_canary_gives_all_traffic_back_to_stable(
    api: client.ApiClient, operator: Path, namespace: str
) -> None:
    ns = namespace
    _create(api, ns, "llmconfigs", _llmconfig(ns, "bot"))
    wait_for(lambda: _ready(api, ns, "bot"), 30, "LLMConfig bot Ready")
    _create(api, ns, "rollouts", _rollout(ns, "r1", "bot", [{"setWeight": 40}, {"pause": {}}]))
    wait_for(lambda: [w for _, w in _split(api, ns, "bot")] == [60, 40], 30, "40% canary")
    _custom(api).delete_namespaced_custom_object(GROUP, VERSION, ns, "rollouts", "r1")
    wait_for(
        lambda: (
            [w for _, w in _split(api, ns, "bot")] == [100]
            and not _status(api, ns, "llmconfigs", "bot").get("activeRollout")
        ),
        30,
        "stable alone and the claim released after the delete",
    )
    # Nothing waits on the deleted Rollout any more: the next one runs.
    _create(api, ns, "rollouts", _rollout(ns, "r2", "bot", [{"setWeight": 20}, {"pause": {}}]))
    wait_for(lambda: _phase(api, ns, "r2") == "Paused", 30, "r2 runs")
    assert _status(api, ns, "llmconfigs", "bot")["activeRollout"] == "r2"


@pytest.mark.parametrize("step", [{"pause": {}}, {"analysis": {"measurements": 3}}])
def test_a_persons_edit_during_a_rollout_wins_and_the_rollout_ends_stable_changed(
    api: client.ApiClient, operator: Path, namespace: str, step: dict[str, Any]
) -> None:
    ns = namespace
    _create(api, ns, "llmconfigs", _llmconfig(ns, "bot", "0.3"))
    wait_for(lambda: _ready(api, ns, "bot"), 30, "LLMConfig bot Ready")
    _create(api, ns, "rollouts", _rollout(ns, "r1", "bot", [{"setWeight": 20}, step]))
    wait_for(
        lambda: _status(api, ns, "rollouts", "r1").get("currentStepIndex") == 1,
        30,
        "r1 at its second step",
    )
    # The person's edit (delivery: immediate): becomes stable v2 at once.
    _custom(api).patch_namespaced_custom_object(
        GROUP, VERSION, ns, "llmconfigs", "bot", {"spec": {"parameters": {"temperature": "0.9"}}}
    )
    wait_for(lambda: _phase(api, ns, "r1") == "Aborted", 30, "r1 aborted")
    rollout = _status(api, ns, "rollouts", "r1")
    assert any(c["reason"] == "StableChanged" for c in rollout["conditions"]), rollout
    assert "stable changed under the rollout" in rollout["message"]
    llmc = _status(api, ns, "llmconfigs", "bot")
    assert [h["source"] for h in llmc["history"]] == ["spec", "spec"]
    assert llmc["history"][-1]["parameters"]["temperature"] == "0.9"
    wait_for(lambda: _split(api, ns, "bot") == [("v2", 100)], 30, "v2 alone serves")
    assert not llmc.get("activeRollout")
    events = client.CoreV1Api(api).list_namespaced_event(ns).items
    assert any(e.reason == "StableChanged" for e in events)


def test_two_rollouts_created_at_once_exactly_one_claims(
    api: client.ApiClient, operator: Path, namespace: str
) -> None:
    ns = namespace
    targets = [f"bot{i}" for i in range(4)]
    for t in targets:
        _create(api, ns, "llmconfigs", _llmconfig(ns, t))
    for t in targets:
        wait_for(lambda t=t: _ready(api, ns, t), 30, f"LLMConfig {t} Ready")
    steps = [{"setWeight": 20}, {"pause": {}}]
    for t in targets:
        bodies = [
            _rollout(ns, f"{t}-a", t, steps, temperature="0.5"),
            _rollout(ns, f"{t}-b", t, steps, temperature="0.7"),
        ]
        threads = [threading.Thread(target=_create, args=(api, ns, "rollouts", b)) for b in bodies]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    for t in targets:
        a, b = f"{t}-a", f"{t}-b"
        wait_for(
            lambda a=a, b=b: {_phase(api, ns, a), _phase(api, ns, b)} == {"Paused", "Pending"},
            30,
            f"one of {a}, {b} running, the other waiting",
        )
        winner = a if _phase(api, ns, a) == "Paused" else b
        loser = b if winner == a else a
        assert _status(api, ns, "llmconfigs", t)["activeRollout"] == winner
        assert "waiting: Rollout" in _status(api, ns, "rollouts", loser)["message"]
        canary = _status(api, ns, "rollouts", winner)["canaryVariant"]
        assert [v for v, _ in _split(api, ns, t)] == ["v1", canary]  # only the winner's


def test_names_at_the_kubernetes_limits(
    api: client.ApiClient, operator: Path, namespace: str
) -> None:
    """Object names may be 253 characters; label values only 63: the derived names and
    labels stay valid (the 422s on labels are gone) and the rollout runs."""
    ns = namespace
    llmconfig = "b" * 250
    rollout = "r" * 253
    _create(api, ns, "llmconfigs", _llmconfig(ns, llmconfig))
    wait_for(lambda: _ready(api, ns, llmconfig), 30, "the long-named LLMConfig Ready")
    _create(
        api, ns, "rollouts", _rollout(ns, rollout, llmconfig, [{"setWeight": 20}, {"pause": {}}])
    )
    wait_for(lambda: _phase(api, ns, rollout) == "Paused", 30, "the long-named Rollout runs")
    cms = client.CoreV1Api(api).list_namespaced_config_map(ns).items
    [cm] = [c for c in cms if c.metadata.name == default_configmap_name(llmconfig)]
    assert len(cm.metadata.name) <= 253 < len(f"{llmconfig}-llm-config")
    assert all(len(v) <= 63 for v in cm.metadata.labels.values())
    assert [w for _, w in _split(api, ns, llmconfig)] == [80, 20]


def _policy(ns: str) -> dict[str, Any]:
    """A policy whose stable config is outside its search space (no baseline trial), so
    its first cycle proposes a trial at once."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "OptimizationPolicy",
        "metadata": {"name": "tune", "namespace": ns},
        "spec": {
            "targetRef": {"name": "bot"},
            "mode": "auto",
            "objectives": [{"metric": "cost_per_request_usd", "direction": "minimize"}],
            "searchSpace": {"models": [{"provider": "simulator", "model": "sim-small"}]},
            "sampler": {"name": "random"},
            "schedule": {"triggers": [{"type": "interval", "every": "2s"}], "cooldown": "1s"},
        },
    }


@pytest.mark.timeout(240)
@pytest.mark.parametrize("point", [faults.TRIAL_RECORDED, faults.TRIAL_ROLLOUT_CREATED])
def test_an_operator_killed_while_starting_a_trial_neither_wedges_nor_duplicates(
    api: client.ApiClient,
    kubeconfig: Path,
    crds_installed: None,
    sole_operator: None,
    namespace: str,
    tmp_path: Path,
    point: str,
) -> None:
    ns = namespace
    env = {"LLMOPT_ROLLOUT_TICK": "1", "LLMOPT_POLICY_TICK": "1"}
    log = tmp_path / "operator.log"
    proc, _ = start_operator(kubeconfig, log, env={**env, faults.ENV: point})
    try:
        _create(api, ns, "llmconfigs", _llmconfig(ns, "bot"))
        wait_for(lambda: _ready(api, ns, "bot"), 30, "LLMConfig bot Ready")
        _create(api, ns, "optimizationpolicies", _policy(ns))
        wait_for(lambda: proc.poll() is not None, 60, f"the operator to stop at {point}")
        assert proc.returncode == faults.EXIT_CODE, log.read_text()[-2000:]
    finally:
        stop_pids([proc.pid])
    [record] = _status(api, ns, "optimizationpolicies", "tune")["trialRecords"]
    assert (record["state"], record["outcome"]) == ("Running", "Starting")  # written first
    created = _get(api, ns, "rollouts", record["rollout"]) is not None
    assert created == (point == faults.TRIAL_ROLLOUT_CREATED)
    proc, _ = start_operator(kubeconfig, log, env=env)  # restarted, no fault this time
    try:

        def settled() -> list[dict[str, Any]] | None:
            records = _status(api, ns, "optimizationpolicies", "tune").get("trialRecords") or []
            first = records[0] if records else {}
            return records if first.get("outcome") != "Starting" else None

        records = wait_for(settled, 60, "the interrupted trial settled after the restart")
        rollouts = _custom(api).list_namespaced_custom_object(GROUP, VERSION, ns, "rollouts")
        names = [r["metadata"]["name"] for r in rollouts["items"]]
        if point == faults.TRIAL_RECORDED:
            # Never created: the trial failed with the reason; the next trial has its own.
            assert (records[0]["state"], records[0]["outcome"]) == ("Failed", "NotStarted")
            assert "before Rollout tune-t0 was created" in records[0]["reason"]

            def next_trial() -> list[str] | None:
                found = _custom(api).list_namespaced_custom_object(GROUP, VERSION, ns, "rollouts")
                return [r["metadata"]["name"] for r in found["items"]] or None

            assert wait_for(next_trial, 60, "the next trial's Rollout") == ["tune-t1"]
            later = _status(api, ns, "optimizationpolicies", "tune")["trialRecords"]
            assert [r.get("rollout") for r in later] == ["tune-t0", "tune-t1"]
        else:
            # Created: adopted, the trial goes on with it; no second Rollout.
            assert (records[0]["state"], records[0]["outcome"]) == ("Running", "")
            assert names == ["tune-t0"]
            assert _status(api, ns, "llmconfigs", "bot").get("activeRollout") == "tune-t0"
    finally:
        stop_pids([proc.pid])


@pytest.mark.timeout(300)
async def test_a_regression_that_starts_after_promotion_is_reverted_within_the_bake(
    api: client.ApiClient,
    kubeconfig: Path,
    operator: Path,
    namespace: str,
    prometheus: LocalPrometheus,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The candidate is good through its canary and is promoted; then its provider starts
    failing (the simulator's error rate raised at full traffic): the bake's trigger sees
    it on the new stable's own traffic and reverts to the version it replaced."""
    ns = namespace
    _create(api, ns, "llmconfigs", _llmconfig(ns, "bot"))
    wait_for(lambda: _ready(api, ns, "bot"), 30, "LLMConfig bot Ready")
    rollout = _rollout(ns, "r1", "bot", [{"setWeight": 50}, {"pause": {"duration": "3s"}}])
    rollout["spec"]["analysis"] = {
        **copy.deepcopy(ANALYSIS),
        "rollbackTriggers": [{"name": "error_rate", "max": "0.2"}],
    }
    rollout["spec"]["postPromotion"] = {"bake": "150s"}
    async with traffic(kubeconfig, ns, prometheus, monkeypatch, max_attempts=1) as gateway:
        _create(api, ns, "rollouts", rollout)
        for _ in range(120):
            if _phase(api, ns, "r1") == "Baking":
                break
            await asyncio.sleep(1)
        else:
            raise AssertionError(f"not promoted: {_status(api, ns, 'rollouts', 'r1')}")
        assert [h["source"] for h in _status(api, ns, "llmconfigs", "bot")["history"]] == [
            "spec",
            "rollout/r1",
        ]
        simulator = gateway.providers["simulator"]
        assert isinstance(simulator, SimulatorProvider)
        models = simulator.fleet.models
        models["sim-medium"] = dataclasses.replace(models["sim-medium"], error_rate=0.9)
        regressed = time.monotonic()
        for _ in range(140):
            if _phase(api, ns, "r1") != "Baking":
                break
            await asyncio.sleep(1)
        took = time.monotonic() - regressed
    status = _status(api, ns, "rollouts", "r1")
    assert status["phase"] == "RolledBack", status
    assert any(c["reason"] == "BakeFailed" for c in status["conditions"]), status
    assert took < 150  # within the bake period
    llmc = _status(api, ns, "llmconfigs", "bot")
    history = llmc["history"]
    assert [h["source"] for h in history] == ["spec", "rollout/r1", "rollout/r1:revert"]
    assert history[-1]["hash"] == history[0]["hash"]  # v1's configuration again
    assert status["candidateHash"] in [q["hash"] for q in llmc["quarantine"]]
    assert _split(api, ns, "bot") == [("v3", 100)]
    events = client.CoreV1Api(api).list_namespaced_event(ns).items
    assert {"BakeFailed", "Reverted"} <= {e.reason for e in events}
