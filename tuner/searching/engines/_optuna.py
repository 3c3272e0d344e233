"""The Optuna engine: spaces written in the Keras Tuner vocabulary, sampled by Optuna.

``OptunaHP`` maps each ``Choice/Int/Float/Boolean`` call onto ``trial.suggest_*``; pinned and ``Fixed`` values are
recorded but never suggested, so samplers do not vary them. ``run(plan)`` enqueues the baselines the study has not run
(trials carrying their name), the strategy's first trials and retries of interrupted trials, then lets
``Study.optimize`` propose the rest; when the strategy takes turns (growth, climbing), after each finished trial it
queues what the strategy proposes next (``plan.strategy``). The plan decides the budget, the timeout and the failure
streak through its ``trial_finished`` callback.
"""

from __future__ import annotations

import time
import warnings
from typing import Any, Mapping

from tuner.errors import SpaceError
from tuner.experiment import grid_values, tunable
from tuner.hp import Boolean, Choice, Fixed, Float, HyperParameters, Int, Param, resolve
from tuner.options import OPTUNA, SAMPLERS, SearchOptions
from tuner.records import FailureKind, TrialRecord
from tuner.searching._plan import SearchPlan
from tuner.searching.engines._pruning import make_pruner
from tuner.store import CHECKPOINT_OF, SIZE_ATTRS, done_baselines, heartbeat_timing, is_replay
from tuner.trial import long_lived

__all__ = ["NAME", "OptunaHP", "check", "make_sampler", "model_dir", "prepare", "run"]

NAME = OPTUNA
# What the engine can do (asked instead of its name): queue the strategy's trials one at a time in the study, retry
# interrupted trials from their checkpoints, run ``--workers`` processes on a shared storage; ``TAG`` is recorded
# on each trial as its ``engine`` (``None``: the default engine records none).
QUEUES_TRIALS = True
RESUMES_TRIALS = True
POOLED_WORKERS = True
TAG = None


class OptunaHP(HyperParameters):
    """The Keras Tuner vocabulary on top of an Optuna trial.

    Args:
        trial: the ``optuna.trial.Trial`` being run.
        pins: values the user fixed on the command line; never suggested.
        given: values of non-tunable choices for this trial (a baseline's), used where Optuna is not asked.
    """

    def __init__(self, trial, pins: Mapping[str, Any] | None = None, given: Mapping[str, Any] | None = None):
        super().__init__()
        self.trial = trial
        self.pins = dict(pins or {})
        self.given = dict(given or {})

    def _value(self, param: Param) -> Any:
        if param.name in self.pins:
            return self.pins[param.name]
        if isinstance(param, Fixed) or not param.is_tunable:
            return self.given.get(param.name, param.default)
        t = self.trial
        if isinstance(param, Choice):
            return t.suggest_categorical(param.name, list(param.values))
        if isinstance(param, Boolean):
            return t.suggest_categorical(param.name, [False, True])
        if isinstance(param, Int):
            return t.suggest_int(param.name, param.min_value, param.max_value, step=param.step or 1,
                                 log=param.sampling == "log")
        if isinstance(param, Float):
            return t.suggest_float(param.name, param.min_value, param.max_value, step=param.step,
                                   log=param.sampling == "log")
        raise TypeError(f"Unknown hyperparameter type. Received: {param!r}")


def make_sampler(name: str, space, pins: Mapping[str, Any], seed: int | None, *, startup: int | None = None):
    """An Optuna sampler by name: ``tpe`` (default), ``random``, or ``grid`` over a finite space.

    ``tpe`` is Optuna's multivariate TPE with ``group=True``: the spaces are conditional (a body's widths exist only
    for that body), and grouping models each set of choice points that occur together jointly instead of falling back
    to independent sampling. ``constant_liar`` (Optuna's default) keeps parallel workers from proposing the same point.

    Args:
        startup: trials before TPE models the study (default Optuna's 10); the warm-start trials take this role.

    Raises:
        SpaceError: unknown sampler, or ``grid`` over a continuous choice.
    """
    import optuna

    if name == "tpe":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # ``group`` is marked so
            return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True,
                                              n_startup_trials=10 if startup is None else max(int(startup), 1))
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "grid":
        return optuna.samplers.GridSampler(grid_values(space, pins), seed=seed)
    if name == "nsga2":  # Optuna's genetic sampler for two-objective studies (TPE handles them too)
        return optuna.samplers.NSGAIISampler(seed=seed)
    raise SpaceError(f"unknown sampler {name!r}; valid: {', '.join(SAMPLERS)}")


def check(options: SearchOptions, experiment) -> None:
    """Checks the Optuna engine's options against the space before any data is loaded.

    Raises:
        SpaceError: a grid over a continuous choice point.
    """
    if options.sampler == "grid":
        grid_values(experiment.space, experiment.pins)


def model_dir(artifacts):
    """Where the model files and checkpoints of this engine's trials go: the study's shared files."""
    return artifacts.files


def _enqueue(plan: SearchPlan) -> None:
    """Enqueues the baselines and warm starts the study has not run, and retries of interrupted searched trials."""
    study, exp = plan.study, plan.experiment
    records = plan.records()
    done = done_baselines(records)
    for b in plan.baselines:
        if b.name not in done:
            # A baseline the search ran and was interrupted is retried as such, so that it resumes from its checkpoint.
            before = [r for r in records
                      if r.baseline == b.name and r.kind is FailureKind.INTERRUPTED and not is_replay(r)]
            attrs = {**b.attrs, **_retry_of(before[-1])} if before else b.attrs
            study.enqueue_trial(_suggestable(exp.space, exp.pins, b.config), user_attrs=attrs)
    for proposal in plan.strategy.first(records):  # the warm starts to run first; the rest in turns (``_next``)
        _enqueue_proposal(plan, proposal)
    retried = {r.tags.get("retry_of") for r in records if "retry_of" in r.tags}
    for r in records:
        # Interrupted replays are resumed by their own command (reproduce, best --reeval), not by the search;
        # Keras Tuner trials by Keras Tuner's own project state.
        if (r.kind is FailureKind.INTERRUPTED and r.number not in retried and not r.baseline and not is_replay(r)
                and "engine" not in r.tags):
            study.enqueue_trial(_suggestable(exp.space, plan.search_pins, r.params),
                                user_attrs={**_retry_of(r), "given": r.params})


def _retry_of(record) -> dict[str, Any]:
    """The attributes of a retry of ``record``: the trial it replaces, and the checkpoint folder of its chain."""
    return {"retry_of": record.number, CHECKPOINT_OF: record.tags.get(CHECKPOINT_OF, record.number)}


def _enqueue_proposal(plan: SearchPlan, proposal) -> None:
    plan.study.enqueue_trial(_suggestable(plan.experiment.space, plan.search_pins, proposal.config),
                             user_attrs={**proposal.attrs, "given": proposal.config})


def prepare(plan: SearchPlan) -> None:
    """Queues what the study must run before its sampler proposes anything (baselines, warm starts, retries), so
    that workers started afterwards find them queued and none of them queues them a second time."""
    _enqueue(plan)


def _suggestable(space, pins, config: dict[str, Any]) -> dict[str, Any]:
    names = tunable(space, pins)
    return {k: v for k, v in config.items() if k in names}


class _BudgetFull(Exception):
    """A trial created after the budget was full; Optuna records it as failed and ``read_records`` skips it."""


def run(plan: SearchPlan) -> None:
    """Runs trials until the plan says stop (budget, timeout, failure streak) or Ctrl-C."""
    study, exp = plan.study, plan.experiment
    pins = plan.search_pins
    study.sampler = make_sampler(plan.options.sampler, exp.space, pins, plan.seed,
                                 startup=len(plan.strategy.warm_starts) or None)
    study.pruner = make_pruner(plan.options.pruner, max_epochs=plan.options.max_epochs)
    _fail_stale(plan)  # before the baselines are counted: a dead worker's baseline is retried, not queued again
    _enqueue(plan)
    n_trials = _to_run(plan)
    if n_trials <= 0:
        return
    if plan.strategy.takes_turns:
        _next(plan)  # a resumed study whose first warm starts are done goes on with the turns
    configs = {b.name: b.config for b in plan.baselines}
    objectives = plan.options.objective

    def objective(trial) -> float:
        baseline = trial.user_attrs.get("baseline")
        if not baseline and plan.over_budget(trial.number):
            # Another process took the budget's last place while this one created its trial: run nothing, and
            # leave a mark that every reader skips (Optuna cannot delete a trial).
            trial.set_user_attr("over_budget", True)
            trial.set_user_attr("fail_kind", FailureKind.BUDGET_FULL.value)
            trial.set_user_attr("fail_reason", "not run: the study's budget was full")
            raise _BudgetFull(trial.number)
        given = configs.get(baseline, {}) if baseline else dict(trial.user_attrs.get("given") or {})
        params = resolve(exp.space, OptunaHP(trial, exp.pins if baseline else pins, given))
        accuracy = plan.objective(trial, params, dict(trial.user_attrs))
        if len(objectives) == 1:
            return accuracy
        # The second objective, as the objective recorded it (parameters, or milliseconds per image).
        other = trial.user_attrs.get(SIZE_ATTRS[objectives[1]])
        return accuracy, float("inf") if other is None else float(other)

    def after_trial(st, frozen) -> None:
        if plan.trial_finished(TrialRecord.from_trial(frozen)):
            st.stop()
        elif plan.strategy.takes_turns:
            _next(plan)

    # No garbage collection after each trial (Optuna's gc_after_trial): the runner collects as the next trial starts.
    with long_lived():
        while n_trials > 0:
            study.optimize(objective, n_trials=n_trials, catch=(Exception,), callbacks=[after_trial])
            if plan.failures.stopped or plan.timed_out():
                break
            n_trials = _to_run(plan)


def _fail_stale(plan: SearchPlan) -> None:
    """Fails the trials of workers that died (no heartbeat for the grace period) and queues their retries."""
    import optuna

    if plan.heartbeat:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(plan.study)


def _to_run(plan: SearchPlan) -> int:
    """How many trials this process runs next: the budget's places no trial holds and the trials queued.

    While there are none but a trial that another process runs holds a place, it waits: that process may be dead
    (a preempted machine), and then, once its heartbeat is older than the grace period, Optuna's check fails the
    trial and queues its retry (``tuner.store.retry_dead_trial``), which this process runs. 0 once nothing is queued
    and no trial runs elsewhere, or when the search's time is up while it waits. Without heartbeats (a journal
    file) nothing is waited for.
    """
    interval, grace = heartbeat_timing(plan.options.heartbeat_grace)
    said = False
    while True:
        _fail_stale(plan)  # before the budget is counted
        records = plan.records()
        n_trials = plan.budget.free(records) + sum(1 for r in records if r.state == "waiting")
        if n_trials > 0 or not plan.heartbeat:
            return n_trials
        running = [r.number for r in records if r.state == "running" and not is_replay(r)]
        if not running or plan.timed_out():
            return 0
        if not said:
            plan.display.message(f"waiting for trial {', '.join(map(str, running))} of another worker: retried here "
                                 f"if its worker sends no heartbeat for {grace} s")
            said = True
        time.sleep(interval)


def _next(plan: SearchPlan) -> None:
    """Queues what the strategy proposes next (``Strategy.next``) when nothing is queued, budget and time are left.
    Two workers finishing at once may both queue: a configuration then runs twice, nothing is lost."""
    records = plan.records()
    if any(r.state == "waiting" for r in records) or plan.remaining(records) <= 0 or plan.timed_out():
        return
    proposal = plan.strategy.next(records)
    if proposal is not None:
        _enqueue_proposal(plan, proposal)
