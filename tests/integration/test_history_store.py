"""PostgreSQL history: trials and decisions outlive the policy object, and the loop
carries on when the database is down. Real PostgreSQL, real API server; the cycle runs
in this process on policy bodies that are not applied, so the operator never sees them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
from kubernetes import client

from optimizer_operator.act.policy import run_cycle
from optimizer_operator.localpostgres import LocalPostgres
from optimizer_operator.store.postgres import HistoryStore
from tests.conftest import wait_for
from tests.integration.test_optimization_loop import _apply, _bot, _get, _policy


def _body(namespace: str, uid: str, status: dict[str, Any] | None = None) -> dict[str, Any]:
    body = _policy(namespace)
    body["spec"]["mode"] = "recommend"
    body["metadata"]["uid"] = uid
    if status is not None:
        body["status"] = status
    return body


def _ready_bot(api: client.ApiClient, kubeconfig: Path, namespace: str) -> None:
    _apply(kubeconfig, _bot(namespace, "0.3"))
    wait_for(
        lambda: _get(api, namespace, "llmconfigs", "bot").get("status", {}).get("history"),
        30,
        "the LLMConfig's first version",
    )


def test_trials_and_decisions_outlive_the_policy_object(
    api: client.ApiClient,
    kubeconfig: Path,
    operator: Path,
    namespace: str,
    postgres: LocalPostgres,
) -> None:
    _ready_bot(api, kubeconfig, namespace)
    custom = client.CustomObjectsApi(api)
    store = HistoryStore(postgres.url)
    first = run_cycle(_body(namespace, "uid-1"), custom=custom, source=None, store=store)
    assert first.status["historyStore"] == "ok"
    assert [r["number"] for r in first.status["trialRecords"]] == [0]
    assert [r.number for r in store.load(namespace, "tune")] == [0]
    assert ("TrialStarted", "trial 0: baseline, the stable config (every 2s)") in store.decisions(
        namespace, "tune"
    )
    # The policy is deleted and created again: its status is empty, PostgreSQL is not.
    again = run_cycle(_body(namespace, "uid-2"), custom=custom, source=None, store=store)
    records = again.status["trialRecords"]
    assert [r["number"] for r in records] == [0] and records[0]["params"]["temperature"] == "0.3"
    assert again.status["message"].startswith("baseline trial 0: waiting for data")


def test_the_loop_carries_on_without_postgres_and_syncs_when_it_returns(
    api: client.ApiClient,
    kubeconfig: Path,
    operator: Path,
    namespace: str,
    postgres: LocalPostgres,
) -> None:
    _ready_bot(api, kubeconfig, namespace)
    custom = client.CustomObjectsApi(api)
    store = HistoryStore(postgres.url, timeout=2)
    postgres.stop()
    try:
        down = run_cycle(_body(namespace, "uid-3"), custom=custom, source=None, store=store)
    finally:
        postgres.start()
    ready = next(c for c in down.status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True"  # the database is optional: the loop went on
    assert down.status["historyStore"].startswith("unavailable:")
    assert [r["number"] for r in down.status["trialRecords"]] == [0]
    assert [e[1] for e in down.events].count("HistoryStoreUnavailable") == 1
    back = run_cycle(
        _body(namespace, "uid-3", status=down.status), custom=custom, source=None, store=store
    )
    assert back.status["historyStore"] == "ok"
    assert "HistoryStoreAvailable" in [e[1] for e in back.events]
    assert [r.number for r in store.load(namespace, "tune")] == [0]  # synced once back
    with psycopg.connect(postgres.url) as conn:
        (count,) = conn.execute(
            "SELECT count(*) FROM llmopt_trials WHERE namespace = %s", (namespace,)
        ).fetchone() or (0,)
    assert count == 1
