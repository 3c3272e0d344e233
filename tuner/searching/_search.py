"""``search`` and ``worker``: open the study, decide the plan, hand it to an engine (or to worker processes).

Everything both engines share is decided here, once, from the options (``tuner.options.SearchOptions``): the budget,
the timeout, the failure streak, the baselines and their configurations, the strategy, the artifacts folder and the
feature cache; the study stores the options (``SearchOptions.stored``) and a worker reads them back whole. The
engine only runs the plan (``engines``); ``--workers``/``--gpus`` start ``cnntune worker`` processes instead
(``_workers``). Nothing here prints.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from tuner.errors import CnntuneError, SpaceError
from tuner.experiment import Experiment, from_meta, load_data, split_words, trial_config
from tuner.options import OBJECTIVES, SearchOptions, option_fields, option_value
from tuner.records import Display, FINISHED, TrialRecord
from tuner.replays import reevaluate
from tuner.searching._plan import SearchPlan, baseline_runs, with_fidelity
from tuner.searching._strategy import Strategy, reeval_round
from tuner.searching._workers import WorkerPool, worker_pool
from tuner.searching.engines import get_engine, wait_for_chief
from tuner.signals import interruptible
from tuner.store import (Artifacts, Budget, DEFAULT_STORAGE, best_trial, check_backends, check_same_experiment,
                         create_or_load_study, current_backend, done_baselines, new_meta, open_storage, open_study,
                         pareto_front, read_records, redact, study_meta, study_names, write_meta)
from tuner.tracking import tracked
from tuner.trial import Objective, Runner

__all__ = ["SearchResult", "search", "worker"]

# Storages whose running trials send heartbeats, so that a dead worker's trial is failed and retried.
_HEARTBEAT_SCHEMES = ("sqlite", "postgresql", "mysql")
# Seconds a Keras Tuner worker waits for its chief to listen.
CHIEF_WAIT = 600.0
# What ``cnntune worker`` may set for its own run; everything else is the study's.
WORKER_OPTIONS = tuple(f.name for f, _ in option_fields("worker") if f.name not in ("study", "storage"))

Clock = Callable[[], float]


@dataclass
class SearchResult:
    """What ``search`` and ``worker`` return.

    Attributes:
        study: the study's name; ``storage`` its URL without password.
        ran: the trials this call finished, in order.
        best: the study's best trial (``tuner.store.best_trial``: the one ``best`` reports and exports).
        message: why nothing ran, when nothing did.
        pareto: a two-objective study's Pareto front.
    """

    study: str
    storage: str
    ran: list[TrialRecord]
    best: TrialRecord | None
    message: str = ""
    pareto: list[TrialRecord] = field(default_factory=list)


def search(words: Sequence[str] = (), options: SearchOptions | None = None, *, display: Display | None = None,
           runner: Runner | None = None, clock: Clock | None = None) -> SearchResult:
    """Searches a space; resumes the study when it exists.

    Args:
        words: ``key=value`` words: ``space=``, data keys, pinned hyperparameters.
        options: how to search (``tuner.options.SearchOptions``; its fields are ``cnntune search``'s options);
            default: ``SearchOptions()``, cnntune's default strategy.
        display: receives progress; default shows nothing.
        runner: trains one configuration; default ``tuner.trial.run_trial`` (a custom training loop or a test
            double with its signature).
        clock: seconds for ``--timeout`` and the re-evaluation share (default ``time.monotonic``; tests pass their
            own).

    Returns:
        A ``SearchResult`` with the trials this call ran and the study's best trial.

    Raises:
        CnntuneError: bad input, a study of another Keras backend, or ``--max-failures`` consecutive failed trials.
    """
    options = (options or SearchOptions()).resolved()
    return _search(words, options, display or Display(), runner, clock or time.monotonic, worker_id=None)


def worker(study: str, storage: str | None = None, overrides: Mapping[str, Any] | None = None, *,
           worker_id: str | None = None, wait: float = CHIEF_WAIT, display: Display | None = None,
           runner: Runner | None = None, clock: Clock | None = None) -> SearchResult:
    """Joins an existing study and runs its trials until the study's ``--trials`` budget is reached.

    The study's options (space, data, pins, budget, engine and its options, seed, baselines, strategy) are the ones
    ``search`` stored with it, read back whole. Optuna engine: any number of workers share the storage URL; on a
    database storage heartbeats let the next worker retry the trial of a worker that was killed. Keras Tuner engine:
    the worker asks the chief at ``chief`` for trials until it answers that the search is done.

    Args:
        study: the study to join.
        storage: its storage URL (PostgreSQL or MySQL across machines; SQLite or journal on one host).
        overrides: this worker's own values of ``WORKER_OPTIONS`` (``engine`` must be the study's; ``chief``,
            ``timeout``, ``max_failures``, ``heartbeat_grace``, ``allow_mixed_backends``).
        worker_id: this worker's name (Keras Tuner's ``KERASTUNER_TUNER_ID``), recorded with each trial it runs;
            default ``worker-HOST-PID`` (in a container the host name is the container's, its PID often 1).
        wait: Keras Tuner engine: seconds to wait for the chief to start serving.
        display, runner, clock: as for ``search``.

    Raises:
        CnntuneError: no such study, a study without stored options, another engine than the study's, an option a
            worker cannot set, or a Keras Tuner worker without a chief.
    """
    given = dict(overrides or {})
    unknown = sorted(set(given) - set(WORKER_OPTIONS))
    if unknown:
        raise CnntuneError(f"a worker takes the study's options; it sets only {', '.join(WORKER_OPTIONS)}. "
                           f"Received: {', '.join(unknown)}")
    url = storage or DEFAULT_STORAGE
    if given.get("chief") is not None:
        wait_for_chief(given["chief"], wait)
    _, st = open_study(url, study)
    stored = SearchOptions.from_meta(study_meta(st), study)
    engine = option_value("engine", given.pop("engine", None))
    if engine is not None and engine != stored.engine:
        raise CnntuneError(f"study {study!r} is searched by the {stored.engine} engine; drop --engine")
    options = stored.replace(study=study, storage=url, **given).resolved()
    if not get_engine(options.engine).POOLED_WORKERS and options.chief is None:
        raise CnntuneError("a Keras Tuner worker needs --chief HOST:PORT (the address of `cnntune search --chief`)")
    return _search([], options, display or Display(), runner, clock or time.monotonic,
                   worker_id=worker_id or _process_name("worker"))


def _search(words: Sequence[str], options: SearchOptions, display: Display, runner: Runner | None, clock: Clock,
            worker_id: str | None) -> SearchResult:
    """Opens (or creates) the study of ``options`` and runs the search in this process or its workers."""
    kv = split_words(words)
    url = options.storage or DEFAULT_STORAGE
    engine = get_engine(options.engine)
    pool = worker_pool(options, url=url, pooled=engine.POOLED_WORKERS) if worker_id is None else None
    heartbeat = url.startswith(_HEARTBEAT_SCHEMES)
    store = open_storage(url, heartbeat=heartbeat, grace=options.heartbeat_grace)
    name = options.study or kv.get("space")
    if not name:
        raise SpaceError("say which space to search with space=NAME (or resume one with --study NAME)")
    meta: dict[str, Any] = {}
    if name in study_names(store):
        import optuna

        meta = study_meta(optuna.load_study(study_name=name, storage=store))
    exp = from_meta(meta, words)
    options = with_fidelity(exp, options)
    if meta:
        check_same_experiment(name, meta, exp)
    engine.check(options, exp)
    Strategy.check(options, engine.QUEUES_TRIALS)
    if meta.get("skip_bad_images"):  # a study created with it keeps it
        options = options.replace(skip_bad_images=True)
    with interruptible():
        return _run(options, exp, name=name, url=url, store=store, meta=meta, heartbeat=heartbeat, display=display,
                    worker_id=worker_id, runner=runner, pool=pool, clock=clock)


def _process_name(role: str) -> str:
    """``ROLE-HOST-PID``: which process ran a trial, unique across hosts and containers."""
    return f"{role}-{socket.gethostname()}-{os.getpid()}"


def _run(options: SearchOptions, exp: Experiment, *, name: str, url: str, store, meta: dict[str, Any],
         heartbeat: bool, display: Display, worker_id: str | None, runner: Runner | None,
         pool: WorkerPool | None, clock: Clock) -> SearchResult:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    engine = get_engine(options.engine)
    if hasattr(exp.space, "prepare"):  # e.g. backbone weights: fail before any trial, with one line
        exp.space.prepare(exp.options)
    art = Artifacts.of(meta, url, name, options.artifacts).check()  # before the data is loaded
    # Every trial this process runs (its re-evaluation too) also goes to MLflow and TensorBoard, when asked.
    display = tracked(display, track=options.track, tensorboard=options.tensorboard, study=name,
                      role="worker" if worker_id else "search", defaults=trial_config(exp.space, exp.pins))
    data = load_data(exp, skip_bad_images=options.skip_bad_images)
    study_obj = create_or_load_study(store, name, directions=[OBJECTIVES[o] for o in options.objective])
    records = read_records(study_obj, url=url)
    # Before the options are stored: a refused search changes nothing. Keras is not imported for it (with
    # --workers or --isolate this process may never train).
    check_backends(name, records, current_backend(), options.allow_mixed_backends)
    if not meta:
        meta = new_meta(exp, data, art.files.where, skip_bad_images=options.skip_bad_images)
        meta["search"] = options.stored()
        write_meta(study_obj, meta)
    elif not worker_id and meta.get("search") != options.stored():
        # The options a worker joining the study reuses: the latest search's (a version-1 record is replaced).
        meta.pop("settings", None)
        meta["search"] = options.stored()
        write_meta(study_obj, meta)

    study_configs = baseline_runs(exp)  # the warm starts cross them even when they do not run
    runs = study_configs if options.baselines else []
    done = done_baselines(records)
    pending = [b for b in runs if b.name not in done]
    waiting = sum(1 for r in records if r.state == "waiting")
    budget = Budget(options.trials)
    used, left = budget.used(records), budget.left(records)
    # A Keras Tuner chief serves even a finished study: its oracle tells the workers to stop, so they exit.
    serving = options.chief is not None and worker_id is None
    if used >= options.trials and not pending and not waiting and not serving:
        return SearchResult(name, redact(url), [], best_trial(records)[0],
                            f"study {name!r} already holds {used} searched trials; raise --trials to add more")

    objective = Objective.of(options, exp, data, art, display, runner, model_dir=engine.model_dir(art),
                             prune=options.pruner not in (None, "none"), engine=engine.TAG,
                             worker=worker_id or _process_name("search"),
                             resumes=engine.RESUMES_TRIALS, clock=clock)
    # The re-evaluation phase is the main search process's; workers and a serving chief only search.
    reeval = options.reeval_share if worker_id is None and not serving else 0.0
    timeout = options.timeout
    plan = SearchPlan(study=study_obj, experiment=exp, data=data, objective=objective, options=options,
                      baselines=runs, strategy=Strategy(exp, options, study_configs, seeded=worker_id is None,
                                                         n_val=len(data.x_val)),
                      artifacts=art, display=display, timeout=None if timeout is None else timeout * (1 - reeval),
                      worker_id=worker_id, heartbeat=heartbeat, clock=clock)
    if options.reeval_share and plan.timeout is not None and not serving:
        # A long last trial cannot take the re-evaluation's share: here, in the workers of --workers N (their
        # --timeout is the search phase's time left) and under either engine.
        objective.stop_at = plan.started + plan.timeout
    if pool is not None:
        engine.prepare(plan)
        if pool.size == 0:
            return SearchResult(name, redact(url), [], best_trial(read_records(study_obj, url=url))[0],
                                f"study {name!r} is ready: {left} searched trials and "
                                f"{len(pending)} baselines to run; start workers with: cnntune worker --study {name} "
                                f"--storage {redact(url)}")
        before = {r.number for r in records if r.state in FINISHED}
        left = None if plan.timeout is None else max(plan.timeout - plan.elapsed(), 1.0)
        pool.run(name, timeout=left, display=display)
        ran = [r for r in read_records(study_obj, url=url) if r.state in FINISHED and r.number not in before]
    else:
        if not serving:
            display.search_begin(study=name, space=exp.space_name, data=exp.data.label(),
                                 trials=left, baselines=len(pending) + waiting)
        try:
            engine.run(plan)
        finally:
            display.search_end()
        plan.failures.check()
        ran = list(plan.ran)
    message = ""
    if reeval:
        top, seeds, message = reeval_round(read_records(study_obj, url=url), options.reeval_top,
                                           None if timeout is None else timeout - plan.elapsed())
        if top:
            ran += reevaluate(study=name, storage=url, top=len(top), seeds=seeds, display=display,
                              runner=runner, track=False).ran  # ``display`` tracks them
    records = read_records(study_obj, url=url)
    top_trial, _ = best_trial(records)
    front = pareto_front(records, options.objective[1]) if len(options.objective) > 1 else []
    return SearchResult(name, redact(url), ran, top_trial, message, front)
