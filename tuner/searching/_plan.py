"""What one search process does, decided once by ``_search`` and carried out by an engine's ``run(plan)``.

An engine only decides *which configuration to try next* (Optuna's sampler, Keras Tuner's oracle). Everything else
is decided here, the same for both: the budget (searched trials the study should hold), the timeout, the failure
streak, the baselines and their configurations, where model files and cached features go, and how a finished trial
is shown and counted. An engine calls ``plan.objective(trial, params, attrs)`` for each trial and
``plan.trial_finished(record)`` after it, and stops as soon as that returns ``True``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuner.errors import CnntuneError
from tuner.experiment import Experiment
from tuner.records import Display, TrialRecord
from tuner.signals import raise_if_interrupted
from tuner.store import Artifacts
from tuner.records import FINISHED, FailureKind
from tuner.store import Budget, SearchSettings
from tuner.trial import Objective

__all__ = ["BaselineRun", "FailureStreak", "SearchPlan", "search_pins"]


def search_pins(experiment: Experiment, settings: SearchSettings) -> dict[str, Any]:
    """The values the sampler never varies in *searched* trials: the experiment's pins and, under a pruner, the
    epochs fidelity (``settings.max_epochs``). Baselines get the experiment's pins only: they keep their own epochs."""
    if settings.max_epochs is None:
        return dict(experiment.pins)
    return {**experiment.pins, "epochs": int(settings.max_epochs)}


@dataclass(frozen=True)
class BaselineRun:
    """A baseline of the space with its full configuration (its values over the space's defaults, pins winning)."""

    name: str
    reported: float | None
    config: dict[str, Any]

    @property
    def attrs(self) -> dict[str, Any]:
        """The user attributes that mark a trial as this baseline."""
        return {"baseline": self.name, "reported": self.reported}


class FailureStreak:
    """Counts consecutive failed trials of this process; ``check`` raises once ``limit`` is reached (0: never)."""

    def __init__(self, limit: int):
        self.limit = limit
        self.streak: list[TrialRecord] = []

    def add(self, record: TrialRecord) -> None:
        if record.state == "fail" and record.kind is not FailureKind.INTERRUPTED:
            self.streak.append(record)
        elif record.state in ("complete", "pruned"):
            self.streak = []

    @property
    def stopped(self) -> bool:
        return bool(self.limit) and len(self.streak) >= self.limit

    def check(self) -> None:
        """Raises:
            CnntuneError: ``limit`` consecutive trials failed; the message names the last one's reason.
        """
        if self.stopped:
            last = self.streak[-1]
            raise CnntuneError(
                f"search stopped: {len(self.streak)} consecutive trials failed (last, trial {last.number}: "
                f"{last.reason or 'no reason recorded'}); fix the cause or raise --max-failures"
            )


@dataclass
class SearchPlan:
    """Everything an engine needs, and the rules it follows.

    Attributes:
        study: the ``optuna.Study`` every trial is recorded in (the single system of record).
        experiment: space, data settings, pins and run options.
        data: the loaded ``Dataset``.
        objective: runs and records one configuration.
        settings: engine, budget (``trials``), seed and the engine's own options.
        baselines: the space's baselines, in order (empty with ``--no-baselines``); engines run those the study
            has not run yet first.
        warm_starts: configurations near the hand-chosen one (``_warm_start``), run right after the baselines
            as searched trials (``warm_start: i``).
        warm_lead: how many warm starts are the study continued (``tuner.searching.study_trend``); with
            ``settings.climb`` the Optuna engine climbs only once they have run.
        artifacts: where model files, cached features and Keras Tuner's project go.
        display: receives progress.
        timeout: start no new trial after this many seconds (from the plan's creation).
        chief: Keras Tuner engine: ``HOST:PORT`` of the chief oracle.
        worker_id: set when this process joins a study started elsewhere (``cnntune worker``).
        heartbeat: the storage records heartbeats, so trials of dead workers can be failed and retried.
    """

    study: Any
    experiment: Experiment
    data: Any
    objective: Objective
    settings: SearchSettings
    baselines: list[BaselineRun]
    artifacts: Artifacts
    warm_starts: list[dict[str, Any]] = field(default_factory=list)
    warm_lead: int = 0
    display: Display = field(default_factory=Display)
    timeout: float | None = None
    chief: str | None = None
    worker_id: str | None = None
    heartbeat: bool = False
    ran: list[TrialRecord] = field(default_factory=list)
    failures: FailureStreak = field(init=False)
    started: float = field(init=False, default_factory=time.monotonic)
    _finished: dict[int, TrialRecord] = field(init=False, default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.failures = FailureStreak(self.settings.max_failures)

    @property
    def trials(self) -> int:
        """Searched trials the study should hold (baselines are extra)."""
        return self.settings.trials

    @property
    def search_pins(self) -> dict[str, Any]:
        """``search_pins(experiment, settings)``: what the searched trials never vary."""
        return search_pins(self.experiment, self.settings)

    @property
    def seed(self) -> int | None:
        """The sampler's seed; ``None`` for a worker, so that workers do not all propose the same configurations."""
        return None if self.worker_id else self.settings.seed

    def timed_out(self) -> bool:
        return self.timeout is not None and time.monotonic() - self.started >= self.timeout

    def records(self) -> list[TrialRecord]:
        """The study's records as ``read_records`` gives them, read afresh, but each finished trial converted once.

        The budget is checked twice per trial (``over_budget``, ``budget_spent``) over every trial of the study, and
        converting every trial each time made each check O(N) conversions (a read of 201 trials: 2.5-3.3 ms on 2 busy
        CPU cores, 1 ms of it in the storage; 1.1-1.3 ms with this cache). A finished trial never changes (Optuna
        refuses to update one), so its record is kept; running, waiting and new trials, which other processes change,
        are converted on every read, so the exact budget across processes holds as before.
        """
        records = []
        for trial in self.study.get_trials(deepcopy=False):
            rec = self._finished.get(trial.number)
            if rec is None:
                rec = TrialRecord.from_trial(trial)
                if rec.state in FINISHED:
                    self._finished[trial.number] = rec
            records.append(rec)
        return [r for r in records if not r.tags.get("over_budget")]  # read_records' rule: those ran nothing

    @property
    def budget(self) -> Budget:
        """The study's budget: the one authority on places, asked by both engines and every worker."""
        return Budget(self.trials)

    def remaining(self, records: list[TrialRecord] | None = None) -> int:
        """Searched trials that may still finish, by the study's records (``Budget.left``)."""
        return self.budget.left(self.records() if records is None else records)

    def budget_spent(self, elsewhere: int = 0) -> bool:
        """Every place of the budget is held by a finished or running searched trial, whichever process runs it
        (``elsewhere``: running trials the study does not show yet), and nothing is queued (``Budget.full``)."""
        return self.budget.full(self.records(), elsewhere)

    def over_budget(self, number: int) -> bool:
        """Whether searched trial ``number``, just created, has no place in the budget (``Budget.place``): another
        process took the last place first. Such a trial runs nothing."""
        return self.budget.place(self.records(), number) >= self.trials

    def should_stop(self) -> bool:
        """Whether to start no further trial: failure streak, timeout, or budget."""
        return self.failures.stopped or self.timed_out() or self.budget_spent()

    def trial_finished(self, record: TrialRecord) -> bool:
        """Shows and counts a finished trial; returns ``True`` when the engine should start no further trial."""
        if record.tags.get("over_budget"):
            return True  # it ran nothing: the budget was full
        self.ran.append(record)
        self.display.trial_end(record)
        self.failures.add(record)
        raise_if_interrupted()  # a Ctrl-C the garbage collector swallowed: stop before the next trial starts
        return self.should_stop()
