"""One cycle's use of the history store: merge what PostgreSQL holds into the status,
write the cycle's additions, and say (once) when the store goes down or comes back.

The store is optional and never blocks the loop: while it is down the cycle carries on
from the policy's status and ``status.historyStore`` says why."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..api.llmconfig import VersionRecord
from ..api.policy import BaselineResult, OptimizationPolicyStatus, RuleEvaluation
from . import StoreUnavailable

if TYPE_CHECKING:
    from .postgres import HistoryStore

Event = tuple[str, str, str]  # (type, reason, message)


class HistorySession:
    """The history store as one cycle of ``namespace/policy`` sees it."""

    def __init__(
        self,
        store: HistoryStore | None,
        namespace: str,
        policy: str,
        status: OptimizationPolicyStatus,
        events: list[Event],
    ) -> None:
        self.store, self.namespace, self.policy = store, namespace, policy
        self.status, self.events = status, events
        self.error: str | None = None  # set once it failed this cycle: no second timeout

    @property
    def url(self) -> str | None:
        """The database URL, while the store is configured and has not failed this cycle."""
        return self.store.url if self.store is not None and self.error is None else None

    def load(self) -> None:
        """Merge the trials PostgreSQL holds (all of them) with those in status (the
        recent ones, freshest for the numbers both have)."""
        if self.store is None:
            return
        try:
            have = [r.number for r in self.status.trial_records]
            stored = self.store.load(self.namespace, self.policy, have)
        except StoreUnavailable as exc:
            self.down(str(exc))
            return
        merged = {r.number: r for r in stored}
        merged.update({r.number: r for r in self.status.trial_records})
        self.status.trial_records = [merged[n] for n in sorted(merged)]

    def save(
        self,
        *,
        llmconfig: str | None,
        versions: Sequence[VersionRecord],
        baselines: Sequence[BaselineResult],
        rules: Sequence[RuleEvaluation],
    ) -> None:
        """The whole current state and this cycle's decisions, baselines and rule runs."""
        s = self.status
        if self.store is None or self.error is not None:
            return  # none configured, or it failed already this cycle
        try:
            self.store.save(
                self.namespace,
                self.policy,
                s.trial_records,
                [(reason, message) for _, reason, message in self.events],
                llmconfig=llmconfig,
                versions=versions,
                baselines=baselines,
                rules=rules,
            )
        except StoreUnavailable as exc:
            self.down(str(exc))
            return
        if (s.history_store or "").startswith("unavailable"):
            self.events.append(("Normal", "HistoryStoreAvailable", "PostgreSQL history is back"))
        s.history_store = "ok"

    def down(self, why: str) -> None:
        """The store failed: a Warning the first time, the reason in status."""
        s = self.status
        if self.error is None and not (s.history_store or "").startswith("unavailable"):
            self.events.append(
                (
                    "Warning",
                    "HistoryStoreUnavailable",
                    f"PostgreSQL history unavailable, carrying on from status: {why}",
                )
            )
        self.error = why
        s.history_store = f"unavailable: {why}"
