"""Optional PostgreSQL history: every trial and every decision of every policy.

The cluster keeps the recent trials in each policy's status (enough to rebuild
its study); with ``LLMOPT_DATABASE_URL`` set, PostgreSQL keeps all of them and
every decision, so a study outlives status trimming and even the policy's
deletion and re-creation; and config versions, rollouts, baselines, rule
executions and an audit log of the changes, in tables made by versioned
migrations, with retention. Every call has a connect and a statement timeout;
when the database is down the loop carries on from status, says so, and keeps
the rows to append in memory until the next successful save.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from ..api.llmconfig import VersionRecord
from ..api.policy import BaselineResult, RuleEvaluation, TrialRecord
from . import StoreUnavailable

__all__ = ["MIGRATIONS", "HistoryStore", "StoreUnavailable"]

DECISION, AUDIT, BASELINE, RULE = "decision", "audit", "baseline", "rule"
INSERTS = {
    DECISION: "INSERT INTO llmopt_decisions (namespace, policy, reason, message) "
    "VALUES (%s, %s, %s, %s)",
    AUDIT: "INSERT INTO llmopt_audit (namespace, object, action, detail, actor) "
    "VALUES (%s, %s, %s, %s, %s)",
    BASELINE: "INSERT INTO llmopt_baselines (namespace, policy, result) VALUES (%s, %s, %s::jsonb)",
    RULE: "INSERT INTO llmopt_rule_executions (namespace, policy, rule, outcome, value) "
    "VALUES (%s, %s, %s, %s, %s)",
}

# Versioned migrations, applied in order once each (recorded in llmopt_schema_migrations,
# under an advisory lock so two operators never migrate at once). Append; never edit.
MIGRATIONS: list[str] = [
    # 1: trials (the study) and decisions (optimization events: kind and reasoning)
    """
    CREATE TABLE IF NOT EXISTS llmopt_trials (
        namespace text NOT NULL,
        policy text NOT NULL,
        number integer NOT NULL,
        record jsonb NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (namespace, policy, number)
    );
    CREATE TABLE IF NOT EXISTS llmopt_decisions (
        id bigserial PRIMARY KEY,
        at timestamptz NOT NULL DEFAULT now(),
        namespace text NOT NULL,
        policy text NOT NULL,
        reason text NOT NULL,
        message text NOT NULL
    );
    """,
    # 2: config versions, rollouts, baselines, rule executions, the audit log
    """
    CREATE TABLE IF NOT EXISTS llmopt_config_versions (
        namespace text NOT NULL,
        llmconfig text NOT NULL,
        version integer NOT NULL,
        hash text NOT NULL,
        model text NOT NULL,
        parameters jsonb NOT NULL,
        source text NOT NULL,
        applied_at timestamptz,
        PRIMARY KEY (namespace, llmconfig, version)
    );
    CREATE TABLE IF NOT EXISTS llmopt_rollouts (
        namespace text NOT NULL,
        name text NOT NULL,
        policy text NOT NULL,
        trial integer NOT NULL,
        outcome text NOT NULL,
        reason text NOT NULL,
        quality text,
        updated_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (namespace, name, trial)
    );
    CREATE TABLE IF NOT EXISTS llmopt_baselines (
        id bigserial PRIMARY KEY,
        at timestamptz NOT NULL DEFAULT now(),
        namespace text NOT NULL,
        policy text NOT NULL,
        result jsonb NOT NULL
    );
    CREATE TABLE IF NOT EXISTS llmopt_rule_executions (
        id bigserial PRIMARY KEY,
        at timestamptz NOT NULL DEFAULT now(),
        namespace text NOT NULL,
        policy text NOT NULL,
        rule text NOT NULL,
        outcome text NOT NULL,
        value text
    );
    CREATE TABLE IF NOT EXISTS llmopt_audit (
        id bigserial PRIMARY KEY,
        at timestamptz NOT NULL DEFAULT now(),
        namespace text NOT NULL,
        object text NOT NULL,
        action text NOT NULL,
        detail text NOT NULL
    );
    CREATE INDEX IF NOT EXISTS llmopt_decisions_at ON llmopt_decisions (at);
    CREATE INDEX IF NOT EXISTS llmopt_audit_at ON llmopt_audit (at);
    """,
    # 3: who made each audited change (the operator, or a person's client and name)
    """
    ALTER TABLE llmopt_audit ADD COLUMN IF NOT EXISTS actor text NOT NULL DEFAULT '';
    """,
]
POLICY_LOOP = "llm-optimizer operator (policy loop)"
# Decisions that change what runs: each also becomes an audit row.
AUDITED = ("TrialStarted", "TrialPromoted", "TrialRolledBack", "RuleApplied", "BanditStarted",
           "CircuitBreakerOpen", "Recommendation")  # fmt: skip
BUFFER_LIMIT = 10_000
APPLICATION_NAME = "llm-optimizer"  # how the store's sessions show in pg_stat_activity
# Rows older than this are deleted (trials and versions are kept: the study needs them).
RETAINED = ("llmopt_decisions", "llmopt_baselines", "llmopt_rule_executions", "llmopt_audit")


class HistoryStore:
    """Trials and decisions in PostgreSQL (psycopg 3), through a small connection pool
    (psycopg_pool) shared by every handler thread.

    Every call waits at most ``timeout`` seconds for a connection and every statement
    is bounded by the same. A call that finds no connection in time raises
    StoreUnavailable and drops the pool, so the next call starts a fresh one (a pool
    left to its own reconnection would back off for minutes after a long outage)."""

    def __init__(
        self,
        url: str,
        timeout: float = 5.0,
        retention_days: float = 90.0,
        pool_size: int = 4,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.retention_days = retention_days
        self.pool_size = max(1, pool_size)
        self._pool: ConnectionPool | None = None
        self._schema_ready = False
        self._pending: list[tuple[str, tuple[object, ...]]] = []  # unsaved while down
        self.dropped = 0  # rows lost past BUFFER_LIMIT during a long outage
        self._pruned_at = 0.0
        self._lock = threading.Lock()  # guards the pool, the pending rows, the schema flag
        # What this process knows the database holds, per (namespace, policy): the trial
        # numbers, and a digest of the last state it upserted. A cycle that would load
        # nothing new, or save nothing but the same state, costs no round trip.
        self._numbers: dict[tuple[str, str], set[int]] = {}
        self._saved: dict[tuple[str, str], str] = {}

    def _get_pool(self) -> ConnectionPool:
        with self._lock:
            if self._pool is None:
                self._pool = ConnectionPool(
                    self.url,
                    min_size=1,
                    max_size=self.pool_size,
                    kwargs={
                        "connect_timeout": max(1, int(self.timeout)),
                        "application_name": APPLICATION_NAME,
                        "options": f"-c statement_timeout={int(self.timeout * 1000)}",
                    },
                    check=ConnectionPool.check_connection,  # a dead one is replaced
                    timeout=self.timeout,
                    name="llmopt-history",
                    num_workers=1,
                    open=False,
                )
                self._pool.open(wait=False)
            return self._pool

    def _drop_pool(self, pool: ConnectionPool) -> None:
        with self._lock:
            if self._pool is pool:
                self._pool = None
        pool.close(timeout=0)

    @contextmanager
    def _connect(self) -> Iterator[psycopg.Connection]:
        """A pooled connection (the schema migrated on first use), committed when the
        block ends; StoreUnavailable when none comes within ``timeout`` or a statement
        fails."""
        pool = self._get_pool()
        try:
            with pool.connection(timeout=self.timeout) as conn:
                if not self._schema_ready:
                    self._migrate(conn)
                    self._schema_ready = True
                yield conn
        except PoolTimeout:
            self._drop_pool(pool)
            raise StoreUnavailable(
                f"no connection to PostgreSQL within {self.timeout:g} s "
                "(the operator log names the connection error)"
            ) from None
        except psycopg.Error as exc:
            raise StoreUnavailable(str(exc).strip().splitlines()[0]) from None

    def close(self) -> None:
        """Close the pool's connections (a later call opens a new pool)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    def _migrate(self, conn: psycopg.Connection) -> None:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(7243001)")  # one migrator at a time
            conn.execute(
                "CREATE TABLE IF NOT EXISTS llmopt_schema_migrations ("
                "version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            row = conn.execute("SELECT max(version) FROM llmopt_schema_migrations").fetchone()
            done = (row[0] if row else None) or 0
            for version, sql in enumerate(MIGRATIONS, start=1):
                if version > done:
                    conn.execute(sql)  # our own constant DDL
                    conn.execute(
                        "INSERT INTO llmopt_schema_migrations (version) VALUES (%s)", (version,)
                    )

    def schema_version(self) -> int:
        with self._connect() as conn:
            row = conn.execute("SELECT max(version) FROM llmopt_schema_migrations").fetchone()
        return int(row[0]) if row and row[0] else 0

    def load(
        self, namespace: str, policy: str, have: Sequence[int] | None = None
    ) -> list[TrialRecord]:
        """Every trial of the policy the database holds; ``[]`` without asking when this
        process knows they are all among ``have`` (the numbers already in status)."""
        known = self._numbers.get((namespace, policy))
        if have is not None and known is not None and known <= set(have):
            return []
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT record FROM llmopt_trials WHERE namespace = %s AND policy = %s "
                "ORDER BY number",
                (namespace, policy),
            ).fetchall()
        records = [TrialRecord.model_validate(r[0]) for r in rows]
        self._numbers[(namespace, policy)] = {r.number for r in records}
        return records

    def save(
        self,
        namespace: str,
        policy: str,
        records: Sequence[TrialRecord],
        decisions: Sequence[tuple[str, str]],
        *,
        llmconfig: str | None = None,
        versions: Sequence[VersionRecord] = (),
        baselines: Sequence[BaselineResult] = (),
        rules: Sequence[RuleEvaluation] = (),
    ) -> None:
        """Upsert the trials, rollouts and config versions (idempotent: the whole current
        state each time), append this cycle's decisions, audit rows, baselines and rule
        executions, atomically. While the database is down the appended rows wait in memory
        (up to BUFFER_LIMIT) and go in with the next successful save."""
        appended: list[tuple[str, tuple[object, ...]]] = []
        for reason, message in decisions:
            appended.append((DECISION, (namespace, policy, reason, message)))
            if reason in AUDITED:
                appended.append((AUDIT, (namespace, f"OptimizationPolicy/{policy}", reason,
                                         message, POLICY_LOOP)))  # fmt: skip
        appended += [(BASELINE, (namespace, policy, json.dumps(b.to_wire()))) for b in baselines]
        appended += [(RULE, (namespace, policy, r.rule, r.outcome, r.value)) for r in rules]
        self._save(namespace, policy, records, appended, llmconfig, versions)

    def audit(self, rows: Sequence[tuple[str, str, str, str, str]]) -> None:
        """Append audit rows — (namespace, object as Kind/name, action, detail, actor) —
        now; while the database is down they wait with the other appended rows."""
        self._save("", "", [], [(AUDIT, row) for row in rows], None, ())

    def _save(
        self,
        namespace: str,
        policy: str,
        records: Sequence[TrialRecord],
        appended: list[tuple[str, tuple[object, ...]]],
        llmconfig: str | None,
        versions: Sequence[VersionRecord],
    ) -> None:
        key = (namespace, policy)
        digest = hashlib.sha256(
            json.dumps(
                [llmconfig, [r.to_wire() for r in records], [v.to_wire() for v in versions]],
                sort_keys=True,
            ).encode()
        ).hexdigest()
        with self._lock:  # this call takes every waiting row; a failure puts them back
            if not appended and not self._pending and self._saved.get(key) == digest:
                return  # the same state as saved last, nothing to append: no round trip
            batch = self._keep([*self._pending, *appended])
            self._pending = []
        try:
            with self._connect() as conn, conn.transaction(), conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO llmopt_trials (namespace, policy, number, record) "
                    "VALUES (%s, %s, %s, %s::jsonb) ON CONFLICT (namespace, policy, number) "
                    "DO UPDATE SET record = EXCLUDED.record, updated_at = now() "
                    "WHERE llmopt_trials.record IS DISTINCT FROM EXCLUDED.record",
                    [(namespace, policy, r.number, json.dumps(r.to_wire())) for r in records],
                )
                cur.executemany(
                    "INSERT INTO llmopt_rollouts (namespace, name, policy, trial, outcome, "
                    "reason, quality) VALUES (%s, %s, %s, %s, %s, %s, %s) "
                    "ON CONFLICT (namespace, name, trial) DO UPDATE SET outcome = "
                    "EXCLUDED.outcome, reason = EXCLUDED.reason, quality = EXCLUDED.quality, "
                    "updated_at = now()",
                    [
                        (namespace, r.rollout, policy, r.number, r.outcome or r.state,
                         r.reason, r.metrics.get("quality_score"))
                        for r in records if r.rollout
                    ],
                )  # fmt: skip
                if llmconfig is not None:
                    cur.executemany(
                        "INSERT INTO llmopt_config_versions (namespace, llmconfig, version, "
                        "hash, model, parameters, source, applied_at) VALUES "
                        "(%s, %s, %s, %s, %s, %s::jsonb, %s, %s) ON CONFLICT DO NOTHING",
                        [
                            (namespace, llmconfig, v.version, v.hash, f"{v.provider}/{v.model}",
                             json.dumps(v.parameters.to_wire()), v.source, v.applied_at)
                            for v in versions
                        ],
                    )  # fmt: skip
                for kind in (DECISION, AUDIT, BASELINE, RULE):
                    rows = [row for k, row in batch if k == kind]
                    if rows:
                        cur.executemany(INSERTS[kind], rows)
                self._prune(cur)
        except StoreUnavailable:
            with self._lock:
                self._pending = self._keep([*batch, *self._pending])
                self._saved.pop(key, None)
            raise
        if records or versions:
            with self._lock:
                self._saved[key] = digest
                self._numbers.setdefault(key, set()).update(r.number for r in records)

    def _keep(
        self, rows: list[tuple[str, tuple[object, ...]]]
    ) -> list[tuple[str, tuple[object, ...]]]:
        """The newest BUFFER_LIMIT rows; the older ones are counted as dropped."""
        if len(rows) > BUFFER_LIMIT:
            self.dropped += len(rows) - BUFFER_LIMIT
            return rows[-BUFFER_LIMIT:]
        return rows

    def _prune(self, cur: psycopg.Cursor[Any]) -> None:
        """Retention: at most hourly, delete appended rows older than retention_days."""
        if time.monotonic() - self._pruned_at < 3600 and self._pruned_at:
            return
        self._pruned_at = time.monotonic()
        for table in RETAINED:
            cur.execute(
                f"DELETE FROM {table} WHERE at < now() - make_interval(secs => %s)",
                (self.retention_days * 86400,),
            )

    def decisions(self, namespace: str, policy: str) -> list[tuple[str, str]]:
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT reason, message FROM llmopt_decisions "
                "WHERE namespace = %s AND policy = %s ORDER BY id",
                (namespace, policy),
            ).fetchall()
        return [(r[0], r[1]) for r in rows]
