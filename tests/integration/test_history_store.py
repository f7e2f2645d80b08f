"""PostgreSQL history: trials and decisions outlive the policy object, and the loop
carries on when the database is down. Real PostgreSQL, real API server; the cycle runs
in this process on policy bodies that are not applied, so the operator never sees them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest
from kubernetes import client

from optimizer_operator.api.llmconfig import ModelConfig
from optimizer_operator.api.policy import OptimizationPolicySpec, TrialRecord
from optimizer_operator.decide import optimizer
from optimizer_operator.local.postgres import LocalPostgres
from optimizer_operator.reconcile.policy import run_cycle
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


def _records() -> list[TrialRecord]:
    def rec(n: int, temp: str, state: str, **kw: Any) -> TrialRecord:
        return TrialRecord.model_validate(
            {"number": n, "params": {"model": "simulator/sim-medium", "temperature": temp},
             "hash": f"h{n}", "state": state, **kw}
        )  # fmt: skip

    return [
        rec(0, "0.3", "Complete", values=["0.80", "0.0004"], constraints={"minQuality": "-0.05"}),
        rec(1, "0.6", "Complete", values=["0.70", "0.0004"], constraints={"minQuality": "0.05"},
            rollout="tune-t1"),
        rec(2, "0.4", "Running", rollout="tune-t2"),
    ]  # fmt: skip


def test_the_study_lives_in_optuna_rdbstorage_and_survives_a_restart(
    namespace: str, postgres: LocalPostgres
) -> None:
    spec = OptimizationPolicySpec.model_validate(_policy(namespace)["spec"])
    stable = ModelConfig.model_validate(_bot(namespace, "0.3")["spec"])
    name = f"{namespace}.tune.uid-rdb"
    records = _records()
    study = optimizer.persistent_study(spec, records, stable, postgres.url, name)
    states = [t.state.name for t in study.get_trials()]
    assert states == ["COMPLETE", "COMPLETE", "RUNNING"]
    assert study.get_trials()[1].constraints == {"minQuality": 0.05}  # infeasible, learned
    # An operator restart: a new process has no cached storage; trial 2 finished meanwhile.
    optimizer._rdb.cache_clear()
    records[2] = records[2].model_copy(
        update={"state": "Complete", "values": ["0.82", "0.0004"],
                "constraints": {"minQuality": "-0.07"}}
    )  # fmt: skip
    again = optimizer.persistent_study(spec, records, stable, postgres.url, name)
    trials = again.get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE"] * 3  # told, not duplicated
    assert trials[2].values == [0.82, 0.0004]
    # An operator that died between ask and writing status leaves a running trial that no
    # record knows: it is failed, and the next ask continues the numbering.
    orphan = again.ask()
    optimizer._rdb.cache_clear()
    third = optimizer.persistent_study(spec, records, stable, postgres.url, name)
    assert third.get_trials()[orphan.number].state.name == "FAIL"
    assert optimizer.ask(third, spec, stable).trial.number == orphan.number + 1
    with psycopg.connect(postgres.url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM trials JOIN studies USING (study_id) WHERE study_name = %s",
            (name,),
        ).fetchone()
    assert row is not None and row[0] == 5  # in PostgreSQL, Optuna's own tables


def _auto_after_baseline(namespace: str, uid: str) -> dict[str, Any]:
    """A policy in mode auto whose baseline trial 0 is recorded: its next cycle asks the
    study for trial 1 (the body is never applied, so the Rollout is not run)."""
    baseline = _records()[0].model_copy(update={"outcome": "Baseline"}).to_wire()
    body = _body(namespace, uid, status={"trialRecords": [baseline]})
    body["spec"]["mode"] = "auto"
    return body


def test_a_cycle_keeps_its_study_in_postgres(
    api: client.ApiClient,
    kubeconfig: Path,
    operator: Path,
    namespace: str,
    postgres: LocalPostgres,
) -> None:
    _ready_bot(api, kubeconfig, namespace)
    store = HistoryStore(postgres.url)
    body = _auto_after_baseline(namespace, "uid-cyc")
    out = run_cycle(body, custom=client.CustomObjectsApi(api), source=None, store=store)
    assert out.status["historyStore"] == "ok", out.status
    started = out.status["trialRecords"][-1]
    assert started["state"] == "Running" and started["rollout"] == f"tune-t{started['number']}"
    spec = OptimizationPolicySpec.model_validate(body["spec"])
    stable = ModelConfig.model_validate(_bot(namespace, "0.3")["spec"])
    optimizer._rdb.cache_clear()
    records = [TrialRecord.model_validate(r) for r in out.status["trialRecords"]]
    study = optimizer.persistent_study(
        spec, records, stable, postgres.url, f"{namespace}.tune.uid-cyc"
    )
    trials = study.get_trials()
    assert [(t.number, t.state.name) for t in trials] == [
        (0, "COMPLETE"),
        (started["number"], "RUNNING"),
    ]
    assert {k: str(v) for k, v in trials[1].params.items()} == started["params"]


def test_versioned_migrations_tables_buffering_and_retention(
    namespace: str, postgres: LocalPostgres
) -> None:
    from optimizer_operator.api.llmconfig import VersionRecord
    from optimizer_operator.api.policy import BaselineResult, RuleEvaluation
    from optimizer_operator.store.postgres import MIGRATIONS, StoreUnavailable

    store = HistoryStore(postgres.url, timeout=2, retention_days=90)
    assert store.schema_version() == len(MIGRATIONS)
    again = HistoryStore(postgres.url)
    assert again.schema_version() == len(MIGRATIONS)  # applied once
    again.close()  # a pool left to the garbage collector is closed from its own thread
    records = _records()
    versions = [
        VersionRecord.model_validate(
            {"version": 1, "hash": "a", "provider": "simulator", "model": "sim-large",
             "parameters": {"temperature": "0.3"}, "source": "spec",
             "appliedAt": "2026-11-25T07:00:00Z"}
        ),
    ]  # fmt: skip
    store.save(
        namespace,
        "tune",
        records,
        [("TrialStarted", "trial 2: Rollout tune-t2"), ("Idle", "waiting for a trigger")],
        llmconfig="bot",
        versions=versions,
        baselines=[BaselineResult(kind="rolling", source="v1", changes={"quality_score": "+1%"})],
        rules=[RuleEvaluation(rule="r", fired=True, outcome="Applied", at="2026-11-25T07:00:00Z")],
    )

    def count(table: str) -> int:
        with psycopg.connect(postgres.url) as conn:
            row = conn.execute(
                f"SELECT count(*) FROM {table} WHERE namespace = %s",  # type: ignore[arg-type]
                (namespace,),
            ).fetchone()
        return int(row[0]) if row else 0

    assert count("llmopt_config_versions") == 1
    assert count("llmopt_rollouts") == 2  # trials 1 and 2 ran as Rollouts
    assert count("llmopt_baselines") == 1 and count("llmopt_rule_executions") == 1
    assert count("llmopt_decisions") == 2 and count("llmopt_audit") == 1  # only the change
    # Down: the rows to append wait in memory and go in with the next save.
    postgres.stop()
    try:
        try:
            store.save(namespace, "tune", records, [("TrialPromoted", "trial 2 promoted")])
        except StoreUnavailable:
            pass
        else:
            raise AssertionError("saved with the database down")
    finally:
        postgres.start()
    store.save(namespace, "tune", records, [])
    assert count("llmopt_decisions") == 3 and count("llmopt_audit") == 2
    # Retention: rows older than retention_days go at the next (hourly) prune.
    with psycopg.connect(postgres.url) as conn:
        conn.execute(
            "INSERT INTO llmopt_decisions (at, namespace, policy, reason, message) "
            "VALUES (now() - interval '100 days', %s, 'tune', 'Old', 'old')",
            (namespace,),
        )
    fresh = HistoryStore(postgres.url, retention_days=90)
    fresh.save(namespace, "tune", records, [])
    assert count("llmopt_decisions") == 3
    fresh.close()
    store.close()


@pytest.mark.faults
def test_a_cycle_asks_the_rebuilt_study_when_the_optuna_storage_is_down(
    api: client.ApiClient,
    kubeconfig: Path,
    operator: Path,
    namespace: str,
    postgres: LocalPostgres,
) -> None:
    """Mode auto keeps its study in Optuna's RDBStorage; with PostgreSQL stopped the cycle
    still proposes the next trial, from the study rebuilt from the records in status, and
    says the storage is unavailable (one Warning, no second connection timeout)."""
    _ready_bot(api, kubeconfig, namespace)
    store = HistoryStore(postgres.url, timeout=2)
    body = _auto_after_baseline(namespace, "uid-rdb-down")
    optimizer._rdb.cache_clear()  # a fresh operator process: no storage built yet
    postgres.stop()
    try:
        out = run_cycle(body, custom=client.CustomObjectsApi(api), source=None, store=store)
    finally:
        postgres.start()
    ready = next(c for c in out.status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True", ready
    assert out.status["historyStore"].startswith("unavailable:"), out.status["historyStore"]
    assert [e[1] for e in out.events].count("HistoryStoreUnavailable") == 1
    started = out.status["trialRecords"][-1]
    assert started["number"] == 1 and started["state"] == "Running", started
    assert started["rollout"] == "tune-t1"
    # Back up: the next cycle loads the RDB study and tells it the trial the outage asked.
    optimizer._rdb.cache_clear()
    spec = OptimizationPolicySpec.model_validate(body["spec"])
    stable = ModelConfig.model_validate(_bot(namespace, "0.3")["spec"])
    records = [TrialRecord.model_validate(r) for r in out.status["trialRecords"]]
    study = optimizer.persistent_study(
        spec, records, stable, postgres.url, f"{namespace}.tune.uid-rdb-down"
    )
    assert [(t.number, t.state.name) for t in study.get_trials()] == [
        (0, "COMPLETE"),
        (1, "RUNNING"),
    ]


@pytest.mark.timeout(180)
def test_every_change_is_audited_with_who_made_it(
    api: client.ApiClient,
    kubeconfig: Path,
    crds_installed: None,
    sole_operator: None,
    namespace: str,
    postgres: LocalPostgres,
    tmp_path: Path,
) -> None:
    """An operator with PostgreSQL: a person's edit of an LLMConfig, a Rollout a person
    creates and promotes with the CLI, and what the operator does in turn all land in
    llmopt_audit, each with its actor."""
    import os
    import subprocess
    import sys

    from optimizer_operator.local.cluster import start_operator, stop_pids

    env = {"LLMOPT_ROLLOUT_TICK": "1", "LLMOPT_DATABASE_URL": postgres.url}
    proc, _ = start_operator(kubeconfig, tmp_path / "operator.log", env=env)
    custom = client.CustomObjectsApi(api)
    try:
        _ready_bot(api, kubeconfig, namespace)
        custom.patch_namespaced_custom_object(
            "optimizer.llmops.dev", "v1alpha1", namespace, "llmconfigs", "bot",
            {"spec": {"parameters": {"temperature": "0.5"}}},
        )  # fmt: skip
        wait_for(
            lambda: len(_get(api, namespace, "llmconfigs", "bot")["status"]["history"]) == 2,
            30,
            "v2 from the edit",
        )
        rollout = {
            "apiVersion": "optimizer.llmops.dev/v1alpha1",
            "kind": "Rollout",
            "metadata": {"name": "r1", "namespace": namespace},
            "spec": {
                "targetRef": {"name": "bot"},
                "candidate": {"provider": "simulator", "model": "sim-small"},
                "steps": [{"setWeight": 20}, {"pause": {}}],
            },
        }
        custom.create_namespaced_custom_object(
            "optimizer.llmops.dev", "v1alpha1", namespace, "rollouts", rollout
        )
        wait_for(
            lambda: (
                (_get(api, namespace, "rollouts", "r1").get("status") or {}).get("phase")
                == "Paused"
            ),
            30,
            "r1 paused",
        )
        cli = subprocess.run(
            [str(Path(sys.executable).parent / "llm-optimizer"), "rollout", "promote", "r1",
             "--full", "-n", namespace],
            capture_output=True, text=True, timeout=60,
            env={**os.environ, "KUBECONFIG": str(kubeconfig)},
        )  # fmt: skip
        assert cli.returncode == 0, cli.stderr

        def rows() -> list[tuple[str, str, str]] | None:
            with psycopg.connect(postgres.url) as conn:
                found = conn.execute(
                    "SELECT object, action, actor FROM llmopt_audit WHERE namespace = %s "
                    "ORDER BY id",
                    (namespace,),
                ).fetchall()
            got = [(str(o), str(a), str(w)) for o, a, w in found]
            return got if ("Rollout/r1", "Promoted", "llm-optimizer operator") in got else None

        audited = wait_for(rows, 60, "the promotion in llmopt_audit")
    finally:
        stop_pids([proc.pid])
    by = {(o, a): w for o, a, w in audited}
    assert by[("LLMConfig/bot", "NewVersion")] not in ("", "llm-optimizer operator")
    assert by[("Rollout/r1", "Started")] not in ("", "llm-optimizer operator")  # a person's
    assert by[("Rollout/r1", "PromotedBySpec")].endswith(" via llm-optimizer-cli")
    assert by[("Rollout/r1", "WeightSet")] == "llm-optimizer operator"


def test_handler_threads_share_a_bounded_pool_of_connections(postgres: LocalPostgres) -> None:
    """Twelve threads saving at once (as policy cycles and audits do) go through at most
    ``pool_size`` sessions, reused call after call rather than one opened per call, and
    every row they save arrives; after a restart of the database the next call works."""
    import threading

    from optimizer_operator.store.postgres import APPLICATION_NAME

    store = HistoryStore(postgres.url, timeout=5, pool_size=3)
    namespace = "pool-test"
    seen: list[int] = []
    errors: list[BaseException] = []

    def sessions() -> int:
        with psycopg.connect(postgres.url) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                (APPLICATION_NAME,),
            ).fetchone()
        return int(row[0]) if row else 0

    def work(k: int) -> None:
        try:
            for j in range(5):
                store.save(namespace, f"p{k}", [], [("Idle", f"cycle {j}")])
                seen.append(sessions())
        except BaseException as exc:  # reported below, with the thread's failure
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert max(seen) <= 3, max(seen)
    with psycopg.connect(postgres.url) as conn:
        row = conn.execute(
            "SELECT count(*), count(DISTINCT (policy, message)) FROM llmopt_decisions "
            "WHERE namespace = %s",
            (namespace,),
        ).fetchone()
    assert row is not None and row[0] == row[1] == 60  # every row, none twice
    postgres.stop()
    postgres.start()
    store.save(namespace, "p0", [], [("Idle", "after the restart")])
    assert store.decisions(namespace, "p0")[-1] == ("Idle", "after the restart")
    store.close()
