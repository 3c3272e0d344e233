"""What one search process does, decided once by ``_search`` and carried out by an engine's ``run(plan)``.

An engine only decides *which configuration to try next* (Optuna's sampler, Keras Tuner's oracle), asking the
strategy (``_strategy``) for the trials it proposes itself. Everything else is decided here, the same for both: the
budget (``tuner.store.Budget``), the timeout, the failure streak, the baselines and their configurations, where
model files and cached features go, and how a finished trial is shown and counted. An engine calls
``plan.objective(trial, params, attrs)`` for each trial and ``plan.trial_finished(record)`` after it, and stops as
soon as that returns ``True``. Time is the plan's ``clock`` (injected by tests), never read anywhere else.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable

from tuner.errors import CnntuneError
from tuner.experiment import Experiment, trial_config
from tuner.hp import describe
from tuner.options import SearchOptions
from tuner.records import Display, FINISHED, FailureKind, TrialRecord
from tuner.signals import raise_if_interrupted
from tuner.store import Artifacts, Budget, that_ran
from tuner.trial import Objective

__all__ = ["BaselineRun", "FailureStreak", "SearchPlan", "baseline_runs", "search_pins", "with_fidelity"]

Clock = Callable[[], float]


def search_pins(experiment: Experiment, options: SearchOptions) -> dict[str, Any]:
    """The values the sampler never varies in *searched* trials: the experiment's pins and, under a pruner, the
    epochs fidelity (``options.max_epochs``). Baselines get the experiment's pins only: they keep their own epochs."""
    if options.max_epochs is None:
        return dict(experiment.pins)
    return {**experiment.pins, "epochs": int(options.max_epochs)}


def with_fidelity(exp: Experiment, options: SearchOptions) -> SearchOptions:
    """Epochs as the pruner's fidelity: under a pruner, the searched trials do not sample ``epochs`` but may train up
    to the maximum (the space's, or ``--max-epochs``), and the pruner decides how far each one goes. Searching the
    epochs *and* pruning on them would compare trials of different lengths at the same rung. A pinned ``epochs``
    stays; baselines keep their own epochs (they are the study's configurations and are never pruned).

    Raises:
        CnntuneError: ``--max-epochs`` with a pinned ``epochs``, a space without epochs, or outside its range.
    """
    param = describe(exp.space).get("epochs")
    if options.pruner in (None, "none"):
        return options
    if "epochs" in exp.pins:
        if options.max_epochs is not None:
            raise CnntuneError(f"--max-epochs {options.max_epochs} contradicts epochs={exp.pins['epochs']}; "
                               "give one of them")
        return options
    if param is None or not param.is_tunable:
        if options.max_epochs is not None:
            raise CnntuneError(f"--max-epochs needs a space that searches epochs; {exp.space_name} does not")
        return options
    top = int(options.max_epochs or param.max_value)
    if not param.contains(top):
        raise CnntuneError(f"--max-epochs {top} is outside the space's epochs ({param.summary()})")
    return replace(options, max_epochs=top)


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


def baseline_runs(exp: Experiment) -> list[BaselineRun]:
    """The space's baselines with their full configurations under the experiment's pins."""
    return [BaselineRun(b.name, b.reported, trial_config(exp.space, exp.pins, b.params)) for b in exp.space.BASELINES]


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
        options: the search's options, resolved (engine, budget, seed, the engine's own options).
        baselines: the space's baselines, in order (empty with ``--no-baselines``); engines run those the study
            has not run yet first.
        strategy: the warm starts, growth and climbing (``_strategy.Strategy``): the trials the search proposes
            itself, asked by both engines.
        artifacts: where model files, cached features and Keras Tuner's project go.
        display: receives progress.
        timeout: start no new trial after this many seconds (from the plan's creation).
        worker_id: set when this process joins a study started elsewhere (``cnntune worker``).
        heartbeat: the storage records heartbeats, so trials of dead workers can be failed and retried.
        clock: seconds, ``time.monotonic`` unless a test injects another.
    """

    study: Any
    experiment: Experiment
    data: Any
    objective: Objective
    options: SearchOptions
    baselines: list[BaselineRun]
    strategy: Any
    artifacts: Artifacts
    display: Display = field(default_factory=Display)
    timeout: float | None = None
    worker_id: str | None = None
    heartbeat: bool = False
    clock: Clock = time.monotonic
    ran: list[TrialRecord] = field(default_factory=list)
    failures: FailureStreak = field(init=False)
    started: float = field(init=False)
    _finished: dict[int, TrialRecord] = field(init=False, default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.failures = FailureStreak(self.options.max_failures)
        self.started = self.clock()

    @property
    def trials(self) -> int:
        """Searched trials the study should hold (baselines are extra)."""
        return self.options.trials

    @property
    def search_pins(self) -> dict[str, Any]:
        """``search_pins(experiment, options)``: what the searched trials never vary."""
        return search_pins(self.experiment, self.options)

    @property
    def seed(self) -> int | None:
        """The sampler's seed; ``None`` for a worker, so that workers do not all propose the same configurations."""
        return None if self.worker_id else self.options.seed

    def elapsed(self) -> float:
        return self.clock() - self.started

    def timed_out(self) -> bool:
        return self.timeout is not None and self.elapsed() >= self.timeout

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
        return that_ran(records)

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
        if record.kind is FailureKind.BUDGET_FULL:
            return True  # it ran nothing: the budget was full
        self.ran.append(record)
        self.display.trial_end(record)
        self.failures.add(record)
        raise_if_interrupted()  # a Ctrl-C the garbage collector swallowed: stop before the next trial starts
        return self.should_stop()
