"""A policy's safety rules run every cycle: while a trial runs and while the circuit
breaker is open; a rule's rollback is never rate-limited and one firing creates at most
one Rollout.

Real API server and real Prometheus; the cycle and the Rollout tick run in-process, one
at a time, so each step of the story is checked where it happens (no operator process
acts: ``sole_operator``). The rule reads a metric whose query is ``vector(1)``: always
there, so the rule's firing does not depend on traffic.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes import client

from optimizer_operator.act.llmconfigs import claim
from optimizer_operator.act.rollouts import LABEL_SAFETY
from optimizer_operator.api import GROUP, VERSION
from optimizer_operator.api.llmconfig import LLMConfigObject, ModelConfig
from optimizer_operator.api.timestamps import format_ts
from optimizer_operator.local.prometheus import LocalPrometheus
from optimizer_operator.observe.prometheus import PrometheusSource
from optimizer_operator.reconcile.llmconfig import reconcile_llmconfig
from optimizer_operator.reconcile.policy import run_cycle
from optimizer_operator.reconcile.rollout import reconcile_rollout

pytestmark = pytest.mark.cluster

V1 = {"provider": "simulator", "model": "sim-medium", "parameters": {"temperature": "0.3"}}
V2 = {"provider": "simulator", "model": "sim-medium", "parameters": {"temperature": "0.9"}}
RULE_ROLLOUT = "tune-rule-roll-back-v2"


class Cluster:
    def __init__(self, api: client.ApiClient, ns: str, prometheus: LocalPrometheus) -> None:
        self.ns = ns
        self.core, self.apps = client.CoreV1Api(api), client.AppsV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.source = PrometheusSource(prometheus.url, timeout=10)

    def get(self, plural: str, name: str) -> dict[str, Any]:
        obj: dict[str, Any] = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.ns, plural, name
        )
        return obj

    def write_status(self, plural: str, name: str, status: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, self.ns, plural, name, {"status": status}
        )

    def create(self, plural: str, body: dict[str, Any]) -> dict[str, Any]:
        made: dict[str, Any] = self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.ns, plural, body
        )
        return made

    def reconcile_llmconfig(self) -> None:
        out = reconcile_llmconfig(
            self.get("llmconfigs", "bot"), core=self.core, apps=self.apps, custom=self.custom
        )
        self.write_status("llmconfigs", "bot", out.status)

    def tick(self, rollout: str) -> dict[str, Any]:
        out = reconcile_rollout(
            self.get("rollouts", rollout),
            core=self.core,
            apps=self.apps,
            custom=self.custom,
            source=None,
        )
        self.write_status("rollouts", rollout, out.status)
        return out.status

    def cycle(self, status: dict[str, Any] | None = None) -> dict[str, Any]:
        """One policy cycle; its status written as the handler would."""
        body = self.get("optimizationpolicies", "tune")
        if status is not None:
            body["status"] = status
        out = run_cycle(body, custom=self.custom, source=self.source)
        self.write_status("optimizationpolicies", "tune", out.status)
        return out.status

    def rollouts(self) -> list[str]:
        found = self.custom.list_namespaced_custom_object(GROUP, VERSION, self.ns, "rollouts")
        return sorted(r["metadata"]["name"] for r in found["items"])


@pytest.fixture()
def cluster(
    api: client.ApiClient,
    crds_installed: None,
    sole_operator: None,
    namespace: str,
    prometheus: LocalPrometheus,
) -> Cluster:
    """LLMConfig bot at v2 (v1 before it), and policy tune with a rollback rule that
    holds whenever Prometheus answers."""
    c = Cluster(api, namespace, prometheus)
    meta = {"name": "bot", "namespace": namespace}
    c.create("llmconfigs", {"apiVersion": f"{GROUP}/{VERSION}", "kind": "LLMConfig",
                            "metadata": meta, "spec": V1})  # fmt: skip
    c.reconcile_llmconfig()
    c.custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "llmconfigs", "bot", {"spec": V2}
    )
    c.reconcile_llmconfig()
    c.create(
        "optimizationpolicies",
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "OptimizationPolicy",
            "metadata": {"name": "tune", "namespace": namespace},
            "spec": {
                "targetRef": {"name": "bot"},
                "mode": "auto",
                "objectives": [{"metric": "cost_per_request_usd", "direction": "minimize"}],
                "searchSpace": {"models": [{"provider": "simulator", "model": "sim-small"}]},
                "schedule": {"triggers": [{"type": "interval", "every": "24h"}]},
                "metrics": [{"name": "always", "query": "vector(1)"}],
                "rules": [
                    {
                        "name": "roll_back",
                        "metric": "always",
                        "operator": "gt",
                        "value": "0",
                        "for": "1m",
                        "action": {"type": "rollback"},
                    }
                ],
            },
        },
    )
    return c


def test_a_rollback_rule_runs_while_the_breaker_is_open_once_and_unthrottled(
    cluster: Cluster,
) -> None:
    c = cluster
    until = format_ts(datetime.now(UTC) + timedelta(hours=6))
    status = c.cycle({"breakerOpenUntil": until})
    assert status["state"] == "Deploying", status
    assert c.rollouts() == [RULE_ROLLOUT]
    rollout = c.get("rollouts", RULE_ROLLOUT)
    assert rollout["metadata"]["labels"][LABEL_SAFETY] == "rollback"
    assert ModelConfig.model_validate(rollout["spec"]["candidate"]) == ModelConfig.model_validate(
        V1
    )
    assert rollout["spec"]["steps"] == [{"setWeight": 100}]
    assert status["breakerOpenUntil"] == until  # the breaker still holds the optimizer back
    # The same cycle again, as after a status write that was lost: no second Rollout.
    c.cycle({"breakerOpenUntil": until})
    assert c.rollouts() == [RULE_ROLLOUT]
    # The LLMConfig is at its rollback rate limit: an automatic Rollout would wait; the
    # safety rollback does not.
    now = datetime.now(UTC)
    recent = [format_ts(now - timedelta(minutes=m)) for m in (1, 2, 3)]
    c.write_status("llmconfigs", "bot", {"rollbacks": recent})
    tick = c.tick(RULE_ROLLOUT)
    assert tick["phase"] != "Pending", tick
    assert c.get("llmconfigs", "bot")["status"].get("activeRollout") in (RULE_ROLLOUT, None)


def test_the_rate_limit_holds_back_rule_changes_not_trials_and_the_policy_says_why(
    cluster: Cluster,
) -> None:
    """The same LLMConfig state (three rollbacks in the last hour, the default limit)
    holds back a rule's config change, not an optimizer trial (its policy's budgets bound
    trials); a trial that waits for anything is shown waiting, with the reason."""
    c = cluster
    now = datetime.now(UTC)
    recent = [format_ts(now - timedelta(minutes=m)) for m in (1, 2, 3)]
    c.write_status("llmconfigs", "bot", {"rollbacks": recent})
    policy = c.get("optimizationpolicies", "tune")
    owner = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "OptimizationPolicy",
             "name": "tune", "uid": policy["metadata"]["uid"]}  # fmt: skip
    change = _trial_rollout(c.ns, owner)
    change["metadata"]["name"] = "tune-rule-cheaper-v2"
    del change["spec"]["trial"]
    c.create("rollouts", change)
    held = c.tick("tune-rule-cheaper-v2")
    assert held["phase"] == "Pending" and "spec.delivery.maxRollbacks 3" in held["message"], held
    c.create("rollouts", _trial_rollout(c.ns, owner))
    assert c.tick("tune-t0")["phase"] == "Paused"  # the trial is not held back
    # Another Rollout holds the LLMConfig: a second trial Rollout waits, and says so.
    second = _trial_rollout(c.ns, owner)
    second["metadata"]["name"] = "tune-t1"
    second["spec"]["trial"]["number"] = 1
    second["spec"]["candidate"]["parameters"] = {"temperature": "0.2"}
    c.create("rollouts", second)
    assert c.tick("tune-t1")["phase"] == "Pending"
    record = {"number": 1, "params": {}, "hash": "h1", "state": "Running", "rollout": "tune-t1"}
    c.custom.patch_namespaced_custom_object(  # no rule now: only the trial's state matters
        GROUP, VERSION, c.ns, "optimizationpolicies", "tune", {"spec": {"rules": None}}
    )
    status = c.cycle({"trialRecords": [record]})
    assert "Rollout tune-t1 is Pending: waiting: Rollout tune-t0 is active" in status["message"]


def _trial_rollout(ns: str, owner: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Rollout",
        "metadata": {"name": "tune-t0", "namespace": ns, "ownerReferences": [owner]},
        "spec": {
            "targetRef": {"name": "bot"},
            "candidate": {"provider": "simulator", "model": "sim-small"},
            "steps": [{"setWeight": 20}, {"pause": {}}],
            "trial": {"policy": "tune", "number": 0},
        },
    }


def test_a_rollback_rule_interrupts_a_running_trial_then_rolls_back(cluster: Cluster) -> None:
    c = cluster
    policy = c.get("optimizationpolicies", "tune")
    owner = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "OptimizationPolicy",
             "name": "tune", "uid": policy["metadata"]["uid"]}  # fmt: skip
    c.create("rollouts", _trial_rollout(c.ns, owner))
    assert c.tick("tune-t0")["phase"] == "Paused"  # the trial's canary runs at 20%
    small = ModelConfig.model_validate({"provider": "simulator", "model": "sim-small"})
    record = {
        "number": 0,
        "params": {"model": "simulator/sim-small"},
        "hash": small.config_hash(),
        "state": "Running",
        "rollout": "tune-t0",
    }
    status = c.cycle({"trialRecords": [record]})
    # The rule ran although a trial runs: the trial is stopped first, told as interrupted.
    assert c.get("rollouts", "tune-t0")["spec"].get("abort") is True
    assert status["trialRecords"][0]["outcome"] == "Interrupted"
    assert "roll_back" in status["trialRecords"][0]["reason"]
    [evaluation] = status["ruleEvaluations"]
    assert evaluation["outcome"] == "Interrupted trial 0"
    assert c.rollouts() == ["tune-t0"]  # the rollback waits for the trial to stop
    assert c.tick("tune-t0")["phase"] == "Aborted"
    assert not c.get("llmconfigs", "bot")["status"].get("activeRollout")
    c.cycle()  # the trial has stopped: the rollback itself
    assert c.rollouts() == [RULE_ROLLOUT, "tune-t0"]
    status = c.cycle()  # and the trial is settled as interrupted, not as the candidate's fault
    [trial] = status["trialRecords"]
    assert (trial["state"], trial["outcome"]) == ("Failed", "Interrupted"), trial
    assert status.get("consecutiveFailures", 0) == 0


def test_a_claim_is_a_compare_and_set_two_claims_from_one_read_one_wins(
    cluster: Cluster,
) -> None:
    """Two Rollouts' ticks that read the LLMConfig at the same moment (neither claim
    there yet) and then both claim: the second finds the first's claim, never replaces it."""
    c = cluster
    seen = LLMConfigObject.parse(c.get("llmconfigs", "bot"))
    again = LLMConfigObject.parse(c.get("llmconfigs", "bot"))
    assert seen.status.active_rollout is None
    assert claim(c.custom, seen, "first") == "first"
    assert claim(c.custom, again, "second") == "first"  # from the stale read: lost
    assert c.get("llmconfigs", "bot")["status"]["activeRollout"] == "first"
    assert claim(c.custom, again, "first") == "first"  # the holder claiming again: kept
