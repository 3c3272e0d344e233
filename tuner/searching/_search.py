"""``search`` and ``worker``: open the study, decide the plan, hand it to an engine (or to worker processes).

Everything both engines share is decided here, once, after the options are checked (``_options``): the budget,
the timeout, the failure streak, the baselines and their configurations, the artifacts folder, the feature cache and
the settings a worker reuses. The engine only runs the plan (``engines``); ``--workers``/``--gpus`` start
``cnntune worker`` processes instead (``tuner.searching._workers``). Nothing here prints.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

from tuner.errors import CnntuneError, SpaceError
from tuner.experiment import Experiment, from_meta, load_data, split_words, trial_config
from tuner.records import Display, TrialRecord
from tuner.replays import reevaluate
from tuner.searching._options import OBJECTIVES, check_engine_options, check_settings, with_fidelity
from tuner.searching._plan import Artifacts, BaselineRun, SearchPlan, search_pins
from tuner.searching._warm_start import perturbations, study_trend
from tuner.searching._workers import WorkerPool, worker_pool
from tuner.searching.engines import ENGINES, get_engine, wait_for_chief
from tuner.signals import interruptible
from tuner.store import DEFAULT_STORAGE, create_or_load_study, open_storage, redact, study_names
from tuner.store import best_trial, top_configs
from tuner.trial import accel_of
from tuner.trial import Objective, Runner
from tuner.records import FINISHED
from tuner.store import (
    Budget,
    SearchSettings,
    check_backends,
    check_same_experiment,
    current_backend,
    pareto_front,
    done_baselines,
    new_meta,
    open_study,
    read_records,
    study_meta,
    write_meta,
)

__all__ = ["SearchResult", "baseline_runs", "search", "worker"]

# Storages whose running trials send heartbeats, so that a dead worker's trial is failed and retried.
_HEARTBEAT_SCHEMES = ("sqlite", "postgresql", "mysql")

# New seeds per configuration in the re-evaluation phase when the budget is trials, not time.
_REEVAL_SEEDS = 2


@dataclass
class SearchResult:
    """What ``search`` and ``worker`` return.

    Attributes:
        study: the study's name; ``storage`` its URL without password.
        ran: the trials this call finished, in order.
        best: the study's best trial (``tuner.store.best_trial``: the one ``best`` reports and exports).
        message: why nothing ran, when nothing did.
    """

    study: str
    storage: str
    ran: list[TrialRecord]
    best: TrialRecord | None
    message: str = ""
    pareto: list[TrialRecord] = field(default_factory=list)


def baseline_runs(exp: Experiment) -> list[BaselineRun]:
    """The space's baselines with their full configurations under the experiment's pins."""
    return [BaselineRun(b.name, b.reported, trial_config(exp.space, exp.pins, b.params)) for b in exp.space.BASELINES]


def search(
    words: Sequence[str] = (),
    *,
    trials: int = 10,
    study: str | None = None,
    storage: str | None = None,
    sampler: str | None = None,
    seed: int = 0,
    timeout: float | None = None,
    baselines: bool = True,
    artifacts: str | None = None,
    display: Display | None = None,
    skip_bad_images: bool = False,
    engine: str = "optuna",
    kt_tuner: str | None = None,
    pruner: str | None = None,
    max_failures: int = 5,
    chief: str | None = None,
    worker_id: str | None = None,
    runner: Runner | None = None,
    warm_start: int | None = None,
    climb: float | None = None,
    grow: bool | None = None,
    max_epochs: int | None = None,
    reeval_share: float | None = None,
    reeval_top: int | None = None,
    workers: int | None = None,
    gpus: str | Sequence[str] | None = None,
    heartbeat_grace: float | None = None,
    isolate: bool = False,
    worker_timeout: float | None = None,
    objective: str | Sequence[str] | None = None,
    allow_mixed_backends: bool = False,
    mixed_precision: str | None = None,
    jit: bool | None = None,
    trials_per_gpu: int | None = None,
    device_data: str | None = None,
) -> SearchResult:
    """Searches a space; resumes the study when it exists.

    Args:
        words: ``key=value`` words: ``space=``, data keys, pinned hyperparameters.
        trials: searched trials the study should hold in total (baselines are extra and run first).
        study: study name; defaults to the space's name.
        storage: Optuna storage URL; default ``sqlite:///cnntune.db`` in the working directory.
        sampler: Optuna engine: ``tpe`` (default), ``random`` or ``grid``.
        seed: seeds the sampler; trial ``n`` trains with seed ``seed + n``.
        timeout: start no new trial after this many seconds.
        baselines: run the space's baselines as the first trials.
        artifacts: folder for model files; default next to the study.
        display: receives progress; default shows nothing.
        skip_bad_images: skip unreadable image files (named in a warning) instead of failing; a resumed study
            keeps the setting it was created with.
        engine: ``optuna`` (default) or ``keras-tuner``; both record into the same Optuna study.
        kt_tuner: Keras Tuner engine: ``random`` (default), ``bayesian``, ``hyperband`` or ``grid``.
        pruner: Optuna engine: ``none`` (default), ``median``, ``asha`` or ``hyperband``.
        max_failures: stop the search after this many consecutive failed trials (``0``: never).
        chief: Keras Tuner engine: ``HOST:PORT`` to serve the oracle on; workers run the trials.
        worker_id: set by ``worker``: this process joins the study; its sampler is not seeded, so that
            workers do not all propose the same configurations.
        runner: trains one configuration; default ``tuner.trial.run_trial`` (a custom training loop or a test
            double with its signature).
        warm_start: the first searched trials perturb the space's hand-chosen configuration (``_warm_start``)
            instead of being drawn over the whole space; ``0`` leaves the start-up to the sampler.
        climb: Optuna engine: once the study continued (the first warm starts) has run, this share of the searched
            trials perturb the best trial so far (``tuner.searching.climb``), taking turns with the other warm
            starts and then with the sampler; ``0``: the warm starts, then the sampler.
        grow: Optuna engine: while the best trial so far trained in less time than the longest baseline, the next
            trial is it made bigger (``tuner.searching.grow``); default on with the default strategy.
        max_epochs: under a pruner, every trial may train up to this many epochs (default: the space's maximum) and
            ``epochs`` is not searched.
        reeval_share: keep this share of ``timeout`` to retrain the top ``reeval_top`` configurations with new seeds
            (without a timeout: 2 seeds each after the trials); ``best`` then picks by their mean; ``0``: off.
        reeval_top: how many configurations the re-evaluation ranks.
        (``None`` for any of these five, and for ``sampler`` and ``pruner``, is cnntune's default strategy.)
        workers: ``None`` or 1: this process runs the trials; ``0``: create the study (settings, queued baselines)
            and run nothing, for workers started elsewhere; ``N > 1``: start ``N`` ``cnntune worker`` processes on the
            study, wait for them, then run the re-evaluation phase if one is set (``tuner.searching._workers``).
        gpus: ``"0,1,3"``, a list, or ``"all"`` (``nvidia-smi -L``): one worker per GPU, each seeing only its own
            (``CUDA_VISIBLE_DEVICES``); with ``workers`` as well, the workers take the GPUs in turn.
        heartbeat_grace: seconds without a heartbeat after which a running trial's worker counts as dead and the
            trial is retried (database storages; default ``tuner.store.GRACE_PERIOD``); stored for workers.
        isolate: run each trial in a child process (``tuner.trial._isolate``); stored for workers.
        worker_timeout: set by ``worker``: start no new trial after this many seconds.
        objective: ``"accuracy"`` (default), or ``"accuracy,params"`` / ``"accuracy,latency"``: a two-objective
            study (validation accuracy up, parameters or milliseconds per image down); the result then holds the
            Pareto front.
        allow_mixed_backends: add trials to a study whose completed trials trained on another Keras backend than
            this process's (``tuner.store.check_backends``); refused otherwise.
        mixed_precision: ``bfloat16`` or ``float16``: train under Keras's mixed-precision policy; ``None``/``off``:
            float32. Stored for workers, recorded per trial (``tuner.trial._accel``).
        jit: ``True``/``False`` sets every model's ``jit_compile`` (XLA, ``torch.compile``); ``None``: Keras's
            ``"auto"``. Stored for workers, recorded per trial when set.
        trials_per_gpu: run this many workers on each GPU of ``gpus`` (default ``"all"``), each taking a share of
            its memory (``tuner.trial.share_gpu_env``), so that small models keep a GPU busy.
        device_data: ``auto`` (default: on for JAX and PyTorch on a GPU), ``on`` or ``off``: each trial's data
            copied to the accelerator once and batched there (``tuner.trial._device_data``); stored for workers.

    Returns:
        A ``SearchResult`` with the trials this call ran and the study's best trial.

    Raises:
        CnntuneError: bad input, a study of another Keras backend, or ``max_failures`` consecutive failed trials.
    """
    display = display or Display()
    settings = check_settings(engine=engine, trials=trials, seed=seed, baselines=baselines, max_failures=max_failures,
                         timeout=timeout, sampler=sampler, pruner=pruner, kt_tuner=kt_tuner, chief=chief,
                         warm_start=warm_start, climb=climb, grow=grow, max_epochs=max_epochs,
                         reeval_share=reeval_share, reeval_top=reeval_top, heartbeat_grace=heartbeat_grace,
                         isolate=isolate, objective=objective, mixed_precision=mixed_precision, jit=jit,
                         device_data=device_data)
    kv = split_words(words)
    url = storage or DEFAULT_STORAGE
    pool = worker_pool(workers, gpus, url=url, engine=settings.engine, chief=chief,
                       allow_mixed_backends=allow_mixed_backends,
                       trials_per_gpu=trials_per_gpu) if worker_id is None else None
    heartbeat = url.startswith(_HEARTBEAT_SCHEMES)
    store = open_storage(url, heartbeat=heartbeat, grace=settings.heartbeat_grace)
    name = study or kv.get("space")
    if not name:
        raise SpaceError("say which space to search with space=NAME (or resume one with --study NAME)")
    meta: dict[str, Any] = {}
    if name in study_names(store):
        import optuna

        meta = study_meta(optuna.load_study(study_name=name, storage=store))
    exp = from_meta(meta, words)
    settings = with_fidelity(exp, settings)
    if meta:
        check_same_experiment(name, meta, exp)
    check_engine_options(settings, exp, chief)
    skip_bad_images = bool(skip_bad_images or meta.get("skip_bad_images", False))
    with interruptible():
        return _run(settings, exp, name=name, url=url, store=store, meta=meta, heartbeat=heartbeat,
                    timeout=worker_timeout if worker_id else timeout, artifacts=artifacts, display=display,
                    skip_bad_images=skip_bad_images, chief=chief, worker_id=worker_id, runner=runner, pool=pool,
                    allow_mixed_backends=allow_mixed_backends)


def _run(settings: SearchSettings, exp: Experiment, *, name: str, url: str, store, meta: dict[str, Any],
         heartbeat: bool, timeout: float | None, artifacts: str | None, display: Display, skip_bad_images: bool,
         chief: str | None, worker_id: str | None, runner: Runner | None,
         pool: WorkerPool | None = None, allow_mixed_backends: bool = False) -> SearchResult:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    if hasattr(exp.space, "prepare"):  # e.g. backbone weights: fail before any trial, with one line
        exp.space.prepare(exp.options)
    data = load_data(exp, skip_bad_images=skip_bad_images)
    study_obj = create_or_load_study(store, name, directions=[OBJECTIVES[o] for o in settings.objective])
    art = Artifacts.of(meta, url, name, artifacts)
    records = read_records(study_obj)
    # Before the settings are rewritten: a refused search changes nothing. Keras is not imported for it (with
    # --workers or --isolate this process may never train).
    check_backends(name, records, current_backend(), allow_mixed_backends)
    if not meta:
        meta = new_meta(exp, data, art.root, skip_bad_images=skip_bad_images)
        meta["settings"] = settings.to_dict()
        write_meta(study_obj, meta)
    elif not worker_id and meta.get("settings") != settings.to_dict():
        meta["settings"] = settings.to_dict()  # the settings a worker joining the study reuses: the latest search's
        write_meta(study_obj, meta)

    study_configs = baseline_runs(exp)  # the warm starts cross them even when they do not run
    runs = study_configs if settings.baselines else []
    done = done_baselines(records)
    pending = [b for b in runs if b.name not in done]
    waiting = sum(1 for r in records if r.state == "waiting")
    used = Budget(settings.trials).used(records)
    # A Keras Tuner chief serves even a finished study: its oracle tells the workers to stop, so they exit.
    serving = settings.engine == "keras-tuner" and chief is not None and worker_id is None
    if used >= settings.trials and not pending and not waiting and not serving:
        return SearchResult(name, redact(url), [], best_trial(records)[0],
                            f"study {name!r} already holds {used} searched trials; raise --trials to add more")

    if settings.isolate:
        from tuner.trial import isolated

        runner = isolated(runner, workdir=art.root)  # the data the children memory-map go beside the study
    objective = Objective(exp, data, model_dir=art.model_dir(settings.engine), feature_cache=art.feature_cache,
                          seed=settings.seed, display=display, prune=(settings.pruner or "none") != "none",
                          engine=None if settings.engine == "optuna" else settings.engine, runner=runner,
                          latency="latency" in settings.objective, accel=accel_of(settings.to_dict()))
    # The re-evaluation phase is the main search process's; workers and a serving chief only search.
    reeval = settings.reeval_share if worker_id is None and not serving else 0.0
    pins, mix = search_pins(exp, settings), [b.config for b in study_configs]
    warm = perturbations(exp.space, pins, min(settings.warm_start, settings.trials), settings.seed, mix=mix)
    plan = SearchPlan(study=study_obj, experiment=exp, data=data, objective=objective, settings=settings,
                      baselines=runs, artifacts=art, display=display,
                      timeout=None if timeout is None else timeout * (1 - reeval), chief=chief,
                      worker_id=worker_id, heartbeat=heartbeat, warm_starts=warm,
                      warm_lead=min(len(study_trend(exp.space, pins, mix)), len(warm)))
    if settings.reeval_share and plan.timeout is not None and not serving:
        # A long last trial cannot take the re-evaluation's share: here, in the workers of --workers N (their
        # --timeout is the search phase's time left) and under either engine.
        objective.stop_at = plan.started + plan.timeout
    if pool is not None:
        ENGINES[settings.engine].prepare(plan)
        if pool.size == 0:
            return SearchResult(name, redact(url), [], best_trial(read_records(study_obj))[0],
                                f"study {name!r} is ready: {max(settings.trials - used, 0)} searched trials and "
                                f"{len(pending)} baselines to run; start workers with: cnntune worker --study {name} "
                                f"--storage {redact(url)}")
        before = {r.number for r in records if r.state in FINISHED}
        left = None if plan.timeout is None else max(plan.timeout - (time.monotonic() - plan.started), 1.0)
        pool.run(name, timeout=left, display=display)
        ran = [r for r in read_records(study_obj) if r.state in FINISHED and r.number not in before]
    else:
        if not serving:
            display.search_begin(study=name, space=exp.space_name, data=exp.data.label(),
                                 trials=max(settings.trials - used, 0), baselines=len(pending) + waiting)
        try:
            ENGINES[settings.engine].run(plan)
        finally:
            display.search_end()
        plan.failures.check()
        ran = list(plan.ran)
    message = ""
    if reeval:
        left = None if timeout is None else timeout - (time.monotonic() - plan.started)
        ran_again, message = _reevaluate_top(name, url, settings, left, display, runner)
        ran += ran_again
    records = read_records(study_obj)
    top, _ = best_trial(records)
    front = pareto_front(records, settings.objective[1]) if len(settings.objective) > 1 else []
    return SearchResult(name, redact(url), ran, top, message, front)


def _reevaluate_top(name: str, url: str, settings: SearchSettings, left: float | None, display: Display,
                    runner: Runner | None) -> tuple[list[TrialRecord], str]:
    """The re-evaluation phase: the top configurations retrained with new seeds (``tuner.replays``), as many seeds
    as the time left allows (each run estimated by its original's seconds), up to 3; ``_REEVAL_SEEDS`` without a
    timeout. When one round of the top ``reeval_top`` does not fit, the top 2 or more that do are retrained.
    Returns the runs and, when there was no time for one round of the top 2, why nothing ran."""
    records = read_records(open_study(url, name)[1])
    top = top_configs(records, settings.reeval_top)
    if len(top) < 2:
        return [], ""
    seeds = _REEVAL_SEEDS
    if left is not None:
        rounds = {k: sum(r.seconds or 0.0 for r in top[:k]) or 1.0 for k in range(2, len(top) + 1)}
        fits = [k for k, seconds in rounds.items() if seconds <= left]
        if not fits:
            return [], (f"no time left to re-evaluate the top {len(top)} configurations ({left:.0f} s left, a round "
                        f"of the top 2 takes about {rounds[2]:.0f} s); `cnntune best --reeval {len(top)}` does it")
        top = top[:max(fits)]
        seeds = min(3, math.floor(left / rounds[len(top)]))
    report = reevaluate(study=name, storage=url, top=len(top), seeds=seeds, display=display, runner=runner)
    return report.ran, ""


def worker(
    *,
    study: str,
    storage: str | None = None,
    engine: str | None = None,
    chief: str | None = None,
    worker_id: str | None = None,
    max_failures: int | None = None,
    wait: float = 600.0,
    display: Display | None = None,
    runner: Runner | None = None,
    timeout: float | None = None,
    heartbeat_grace: float | None = None,
    allow_mixed_backends: bool = False,
) -> SearchResult:
    """Joins an existing study and runs its trials until the study's ``--trials`` budget is reached.

    The study's settings (space, data, pins, budget, engine and its options, seed, baselines) come from its metadata,
    written by ``search``. Optuna engine: any number of workers share the storage URL; on a database storage
    heartbeats let the next worker retry the trial of a worker that was killed. Keras Tuner engine: the worker
    asks the chief at ``chief`` for trials until it answers that the search is done.

    Args:
        study: the study to join.
        storage: its storage URL (PostgreSQL or MySQL across machines; SQLite or journal on one host).
        engine: ``optuna`` or ``keras-tuner``; default: the study's.
        chief: Keras Tuner engine: ``HOST:PORT`` of the chief.
        worker_id: this worker's name (Keras Tuner's ``KERASTUNER_TUNER_ID``); default ``worker-PID``.
        max_failures: default: the study's.
        wait: Keras Tuner engine: seconds to wait for the chief to start serving.
        display: receives progress.
        runner: trains one configuration; default ``tuner.trial.run_trial``.
        timeout: start no new trial after this many seconds.
        heartbeat_grace: default: the study's (``search --heartbeat-grace``).
        allow_mixed_backends: join a study whose completed trials trained on another Keras backend.

    Raises:
        CnntuneError: no such study, a study without stored settings, or a Keras Tuner worker without a chief.
    """
    url = storage or DEFAULT_STORAGE
    if chief is not None:
        wait_for_chief(chief, wait)
    _, st = open_study(url, study)
    settings = SearchSettings.from_meta(study_meta(st), study)
    engine = engine or settings.engine
    get_engine(engine)
    if engine != settings.engine:
        raise CnntuneError(f"study {study!r} is searched by the {settings.engine} engine; drop --engine")
    if engine == "keras-tuner" and chief is None:
        raise CnntuneError("a Keras Tuner worker needs --chief HOST:PORT (the address of `cnntune search --chief`)")
    return search(
        [], trials=settings.trials, study=study, storage=url, sampler=settings.sampler, seed=settings.seed,
        baselines=settings.baselines, display=display, engine=engine, kt_tuner=settings.tuner,
        pruner=settings.pruner, max_failures=settings.max_failures if max_failures is None else max_failures,
        chief=chief, worker_id=worker_id or f"worker-{os.getpid()}", runner=runner,
        warm_start=settings.warm_start, climb=settings.climb, grow=settings.grow, max_epochs=settings.max_epochs,
        reeval_share=settings.reeval_share, reeval_top=settings.reeval_top, isolate=settings.isolate,
        worker_timeout=timeout,
        objective=settings.objective, allow_mixed_backends=allow_mixed_backends,
        mixed_precision=settings.precision, jit=settings.jit, device_data=settings.device_data,
        heartbeat_grace=settings.heartbeat_grace if heartbeat_grace is None else heartbeat_grace,
    )
