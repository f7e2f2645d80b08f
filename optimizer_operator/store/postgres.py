"""Optional PostgreSQL history: every trial and every decision of every policy.

The cluster keeps the recent trials in each policy's status (enough to rebuild
its study); with ``LLMOPT_DATABASE_URL`` set, PostgreSQL keeps all of them and
an audit row per decision, so a study outlives status trimming and even the
policy's deletion and re-creation. Every call has a connect and a statement
timeout; when the database is down the loop carries on from status and says so.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import psycopg

from ..api.policy import TrialRecord

SCHEMA = """
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
"""


class StoreUnavailable(RuntimeError):
    """The database could not be reached or did not answer in time."""


class HistoryStore:
    """Trials and decisions in PostgreSQL (psycopg 3, a connection per call)."""

    def __init__(self, url: str, timeout: float = 5.0) -> None:
        self.url = url
        self.timeout = timeout
        self._schema_ready = False

    def _connect(self) -> psycopg.Connection:
        try:
            conn = psycopg.connect(
                self.url,
                connect_timeout=max(1, int(self.timeout)),
                options=f"-c statement_timeout={int(self.timeout * 1000)}",
            )
        except psycopg.Error as exc:
            raise StoreUnavailable(str(exc).strip().splitlines()[0]) from None
        if not self._schema_ready:
            try:
                with conn.transaction():
                    conn.execute(SCHEMA)
            except psycopg.Error as exc:
                conn.close()
                raise StoreUnavailable(str(exc).strip().splitlines()[0]) from None
            self._schema_ready = True
        return conn

    def load(self, namespace: str, policy: str) -> list[TrialRecord]:
        try:
            with self._connect() as conn:
                rows = conn.execute(
                    "SELECT record FROM llmopt_trials WHERE namespace = %s AND policy = %s "
                    "ORDER BY number",
                    (namespace, policy),
                ).fetchall()
        except psycopg.Error as exc:
            raise StoreUnavailable(str(exc).strip().splitlines()[0]) from None
        return [TrialRecord.model_validate(r[0]) for r in rows]

    def save(
        self,
        namespace: str,
        policy: str,
        records: Sequence[TrialRecord],
        decisions: Sequence[tuple[str, str]],
    ) -> None:
        """Upsert ``records`` and append ``decisions`` (reason, message), atomically."""
        try:
            with self._connect() as conn, conn.transaction(), conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO llmopt_trials (namespace, policy, number, record) "
                    "VALUES (%s, %s, %s, %s::jsonb) ON CONFLICT (namespace, policy, number) "
                    "DO UPDATE SET record = EXCLUDED.record, updated_at = now() "
                    "WHERE llmopt_trials.record IS DISTINCT FROM EXCLUDED.record",
                    [(namespace, policy, r.number, json.dumps(r.to_wire())) for r in records],
                )
                if decisions:
                    cur.executemany(
                        "INSERT INTO llmopt_decisions (namespace, policy, reason, message) "
                        "VALUES (%s, %s, %s, %s)",
                        [(namespace, policy, reason, message) for reason, message in decisions],
                    )
        except psycopg.Error as exc:
            raise StoreUnavailable(str(exc).strip().splitlines()[0]) from None

    def decisions(self, namespace: str, policy: str) -> list[tuple[str, str]]:
        try:
            with self._connect() as conn:
                rows = conn.execute(
                    "SELECT reason, message FROM llmopt_decisions "
                    "WHERE namespace = %s AND policy = %s ORDER BY id",
                    (namespace, policy),
                ).fetchall()
        except psycopg.Error as exc:
            raise StoreUnavailable(str(exc).strip().splitlines()[0]) from None
        return [(r[0], r[1]) for r in rows]
