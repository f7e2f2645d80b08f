"""A policy's Optuna study for one cycle: rebuilt from the trial records once (the
summary, the bandit and the next proposal share it), or — with a history database —
Optuna's RDBStorage study, falling back to the records when that database fails."""

from __future__ import annotations

from collections.abc import Callable

import optuna

from ..api.llmconfig import ModelConfig
from ..api.policy import OptimizationPolicySpec, OptimizationPolicyStatus
from . import optimizer


class StudySession:
    """The study of ``status.trialRecords``; ``on_down`` is told when the database fails."""

    def __init__(
        self,
        spec: OptimizationPolicySpec,
        status: OptimizationPolicyStatus,
        stable: ModelConfig,
        *,
        url: Callable[[], str | None],
        name: str,
        on_down: Callable[[str], None],
    ) -> None:
        self.spec, self.status, self.stable = spec, status, stable
        self._url, self.name, self._on_down = url, name, on_down
        self._built: optuna.Study | None = None
        self._persistent = False  # _built lives in Optuna's RDBStorage

    def study(self) -> optuna.Study:
        url = self._url()
        # Mode recommend asks without recording a trial, so it keeps the in-memory study:
        # a stored trial per cycle would only pile up.
        if self._built is None and url is not None and self.spec.mode == "auto":
            from sqlalchemy.exc import SQLAlchemyError  # only with a database configured

            try:
                self._built = optimizer.persistent_study(
                    self.spec, self.status.trial_records, self.stable, url, self.name
                )
                self._persistent = True
            except SQLAlchemyError as exc:
                self._down(exc)
        if self._built is None:
            self._built = self._rebuilt()
        return self._built

    def ask(self, first: dict[str, str] | None) -> optimizer.Proposal:
        """The next trial; if the RDB study's database fails between loading and asking,
        the study is rebuilt from the records and asked instead."""
        study = self.study()
        if not self._persistent:
            return optimizer.ask(study, self.spec, self.stable, first=first)
        from sqlalchemy.exc import SQLAlchemyError

        try:
            return optimizer.ask(study, self.spec, self.stable, first=first)
        except SQLAlchemyError as exc:
            self._down(exc)
            self._persistent = False
            self._built = self._rebuilt()
            return optimizer.ask(self._built, self.spec, self.stable, first=first)

    def _rebuilt(self) -> optuna.Study:
        return optimizer.build_study(self.spec, self.status.trial_records, self.stable)

    def _down(self, exc: Exception) -> None:
        """Said like any history-store outage (its first line)."""
        self._on_down(f"optuna storage: {str(exc).strip().splitlines()[0][:200]}")
