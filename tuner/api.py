"""The public Python API: ``search``, ``trials``, ``best``, ``export``. Nothing here prints.

Every function takes the same store arguments (``storage`` URL and ``study`` name) and returns plain records;
errors a user can act on are ``CnntuneError``.
"""

from __future__ import annotations

import json
import math
import shutil
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from tuner._errors import CnntuneError, SpaceError, StorageError
from tuner.engines._optuna import SAMPLERS, SearchPlan, make_sampler, optimize, trial_config
from tuner.engines._pruning import PRUNERS, EpochPruning, make_pruner
from tuner.experiment import Experiment, get_space, parse_words, split_words
from tuner.records import Display, TrialRecord, val_noise_pp
from tuner.store import (
    DEFAULT_STORAGE,
    META_KEY,
    artifacts_root,
    create_or_load_study,
    load_study,
    open_storage,
    redact,
    sqlite_file,
    study_meta,
    study_names,
)

__all__ = [
    "BestReport",
    "Comparison",
    "SearchResult",
    "StudyView",
    "best",
    "export",
    "export_target",
    "search",
    "space_detail",
    "spaces",
    "trials",
    "worker",
]

ENGINES = ("optuna", "keras-tuner")

# A trial that ended in one of these states used up one unit of the trial budget.
_FINISHED = ("complete", "pruned", "fail")


@dataclass
class SearchResult:
    study: str
    storage: str
    ran: list[TrialRecord]
    best: TrialRecord | None
    message: str = ""


@dataclass
class StudyView:
    study: str
    meta: dict[str, Any]
    records: list[TrialRecord]


@dataclass
class Comparison:
    """The best trial against one baseline of the same study."""

    baseline: TrialRecord
    d_val_pp: float | None
    d_test_pp: float | None
    d_test_pct: float | None


@dataclass
class BestReport:
    study: str
    meta: dict[str, Any]
    best: TrialRecord
    comparisons: list[Comparison] = field(default_factory=list)
    noise_pp: float | None = None


# -- helpers shared by the commands ----------------------------------------------------------------------------
def _records(study) -> list[TrialRecord]:
    return [TrialRecord.from_trial(t) for t in study.get_trials(deepcopy=False)]


def _counts_toward_budget(rec: TrialRecord) -> bool:
    # A retry (of an interrupted trial or of a dead worker's) counts; the trial it replaces does not.
    return (rec.baseline is None and rec.state in _FINISHED and rec.reason != "interrupted"
            and not set(rec.tags) - {"retry_of"})


def _budget_used(records: Sequence[TrialRecord]) -> int:
    retried = {r.tags["retry_of"] for r in records if "retry_of" in r.tags}
    return sum(1 for r in records if _counts_toward_budget(r) and r.number not in retried)


def _done_baselines(records: Iterable[TrialRecord]) -> set[str]:
    # Reproduction runs carry a baseline name too, but a search measures its own baselines (its seeds).
    return {r.baseline for r in records if r.baseline and r.state in (*_FINISHED, "running", "waiting")
            and r.reason != "interrupted" and not _is_replay(r)}


def _open(storage: str | None, study: str | None):
    """Opens an existing study for reading; never creates a store as a side effect."""
    url = storage or DEFAULT_STORAGE
    file = sqlite_file(url)
    if file is not None and not file.is_file():
        raise StorageError(f"no study store at {file}; run `cnntune search` here first or pass --storage")
    store = open_storage(url)
    return url, load_study(store, study, url)


def _pp(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else 100.0 * (a - b)


# -- search ----------------------------------------------------------------------------------------------------
def search(
    words: Sequence[str] = (),
    *,
    trials: int = 10,
    study: str | None = None,
    storage: str | None = None,
    sampler: str = "tpe",
    seed: int = 0,
    timeout: float | None = None,
    baselines: bool = True,
    artifacts: str | None = None,
    display: Display | None = None,
    skip_bad_images: bool = False,
    engine: str = "optuna",
    kt_tuner: str = "random",
    pruner: str = "none",
    max_failures: int = 5,
    chief: str | None = None,
    worker_id: str | None = None,
) -> SearchResult:
    """Searches a space; resumes the study when it exists.

    Args:
        words: ``key=value`` words: ``space=``, data keys, pinned hyperparameters.
        trials: searched trials the study should hold in total (baselines are extra and run first).
        study: study name; defaults to the space's name.
        storage: Optuna storage URL; default ``sqlite:///cnntune.db`` in the working directory.
        sampler: ``tpe``, ``random`` or ``grid``.
        seed: seeds the sampler; trial ``n`` trains with seed ``seed + n``.
        timeout: start no new trial after this many seconds.
        baselines: enqueue the space's baselines as the first trials.
        artifacts: folder for model files; default next to the study.
        display: receives progress; default shows nothing.
        skip_bad_images: skip unreadable image files (named in a warning) instead of failing; a resumed study
            keeps the setting it was created with.
        engine: ``optuna`` (default) or ``keras-tuner``; both record into the same Optuna study.
        kt_tuner: the Keras Tuner tuner: ``random``, ``bayesian``, ``hyperband`` or ``grid``.
        pruner: Optuna engine: ``none``, ``median``, ``asha`` or ``hyperband``.
        max_failures: stop the search after this many consecutive failed trials (``0``: never).
        chief: Keras Tuner engine: ``HOST:PORT`` to serve the oracle on; workers run the trials.
        worker_id: set by ``worker``: this process joins the study; its sampler is not seeded, so that
            workers do not all propose the same configurations.

    Returns:
        A ``SearchResult`` with the trials this call ran and the study's best trial.

    Raises:
        CnntuneError: bad input, or ``max_failures`` consecutive failed trials.
    """
    display = display or Display()
    if trials < 1:
        raise CnntuneError(f"--trials must be at least 1. Received: {trials}")
    if timeout is not None and timeout <= 0:
        raise CnntuneError(f"--timeout must be a positive number of seconds. Received: {timeout}")
    if sampler not in SAMPLERS:
        raise CnntuneError(f"unknown sampler {sampler!r}; valid: {', '.join(SAMPLERS)}")
    if engine not in ENGINES:
        raise CnntuneError(f"unknown engine {engine!r}; valid: {', '.join(ENGINES)}")
    if pruner not in PRUNERS:
        raise CnntuneError(f"unknown pruner {pruner!r}; valid: {', '.join(PRUNERS)}")
    if max_failures < 0:
        raise CnntuneError(f"--max-failures must be 0 (never stop) or more. Received: {max_failures}")
    if engine == "keras-tuner":
        from tuner.engines._keras_tuner import check_options

        check_options(kt_tuner, chief=chief, pruner=pruner)
    kv = split_words(words)
    url = storage or DEFAULT_STORAGE
    store = open_storage(url, heartbeat=url.startswith(_HEARTBEAT_SCHEMES))
    name = study or kv.get("space")
    if not name:
        raise SpaceError("say which space to search with space=NAME (or resume one with --study NAME)")
    existing = name in study_names(store)
    meta: dict[str, Any] = {}
    if existing:
        import optuna

        meta = study_meta(optuna.load_study(study_name=name, storage=store))
    exp = parse_words(words, default_space=meta.get("space"), default_data=meta.get("data"),
                      default_pins=meta.get("pins"), default_options=meta.get("options"))
    skip_bad_images = bool(skip_bad_images or meta.get("skip_bad_images", False))
    if meta:
        _check_same_experiment(name, meta, exp)

    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    sampler_obj = make_sampler(sampler, exp.space, exp.pins, None if worker_id else seed)
    from tuner.data import load_dataset

    if hasattr(exp.space, "prepare"):  # e.g. backbone weights: fail before any trial, with one line
        exp.space.prepare(exp.options)
    data = load_dataset(exp.data.name, data_dir=exp.data.data_dir, image_size=exp.data.image_size,
                        classes=exp.data.classes, skip_bad_images=skip_bad_images)
    study_obj = create_or_load_study(store, name, sampler=sampler_obj, pruner=make_pruner(pruner))
    art = Path(meta["artifacts"]) if meta.get("artifacts") else artifacts_root(url, name, artifacts)
    is_new = not meta
    if is_new:
        meta = _new_meta(exp, data, art, skip_bad_images=skip_bad_images)
    # The settings a worker joining the study reuses (the latest search's).
    settings = {"engine": engine, "tuner": kt_tuner, "trials": trials, "sampler": sampler, "seed": seed,
                "pruner": pruner, "baselines": baselines, "max_failures": max_failures}
    if is_new or (meta.get("settings") != settings and not worker_id):
        if not worker_id:
            meta["settings"] = settings
        study_obj.set_user_attr(META_KEY, meta)
    if engine == "keras-tuner":
        from tuner.engines import _keras_tuner

        objective = _objective(exp, data, art / "keras_tuner", seed, display, engine="keras-tuner")
        before = {r.number for r in _records(study_obj)}
        _keras_tuner.search(_keras_tuner.KTPlan(
            study=study_obj, exp=exp, objective=objective, tuner=kt_tuner, seed=seed, trials=trials,
            baselines=list(getattr(exp.space, "BASELINES", [])) if baselines else [], directory=art,
            max_failures=max_failures, chief=chief, worker_id=worker_id, display=display, data=data))
        records = _records(study_obj)
        return SearchResult(name, redact(url), [r for r in records if r.number not in before], _best_record(records))

    if getattr(store, "get_heartbeat_interval", lambda: None)():
        # Fail (and queue for retry) the trials of workers that died, before counting the budget.
        optuna.storages.fail_stale_trials(study_obj)
    baseline_cfgs = _enqueue(study_obj, exp, baselines)
    records = _records(study_obj)
    done = _budget_used(records)
    waiting = sum(1 for r in records if r.state == "waiting")
    remaining = max(trials - done, 0)
    if remaining == 0 and waiting == 0:
        best_rec = _best_record(records)
        return SearchResult(name, redact(url), [], best_rec,
                            f"study {name!r} already holds {done} searched trials; raise --trials to add more")

    numbers_before = {r.number for r in records}
    waiting_before = {r.number for r in records if r.state == "waiting"}
    display.search_begin(study=name, space=exp.space_name, data=exp.data.label(), trials=remaining,
                         baselines=waiting)
    objective = _objective(exp, data, art, seed, display, prune=pruner != "none")

    def budget_spent(st) -> bool:
        recs = _records(st)
        # A worker also counts the trials other workers are running, so that together they do not overshoot.
        running = sum(1 for r in recs if r.state == "running") if worker_id else 0
        return _budget_used(recs) + running >= trials and not any(r.state == "waiting" for r in recs)

    failures = _FailureStreak(max_failures)

    def after_trial(st, frozen) -> None:
        record = TrialRecord.from_trial(frozen)
        display.trial_end(record)
        if failures.add(record):
            st.stop()

    plan = SearchPlan(study=study_obj, space=exp.space, pins=exp.pins, objective=objective,
                      n_trials=remaining + waiting, timeout=timeout, baselines=baseline_cfgs,
                      stop_when=budget_spent, after_trial=after_trial)
    try:
        optimize(plan)
    finally:
        display.search_end()
    failures.check()
    records = _records(study_obj)
    ran = [r for r in records
           if (r.number not in numbers_before or r.number in waiting_before) and r.state != "waiting"]
    return SearchResult(name, redact(url), ran, _best_record(records))


_HEARTBEAT_SCHEMES = ("sqlite", "postgresql", "mysql")


class _FailureStreak:
    """Counts consecutive failed trials of this process; ``check`` raises once ``limit`` is reached."""

    def __init__(self, limit: int):
        self.limit = limit
        self.streak: list[TrialRecord] = []

    def add(self, record: TrialRecord) -> bool:
        """Records a finished trial; returns True when the search should stop."""
        if record.state == "fail" and record.reason != "interrupted":
            self.streak.append(record)
        elif record.state in ("complete", "pruned"):
            self.streak = []
        return self.stopped

    @property
    def stopped(self) -> bool:
        return bool(self.limit) and len(self.streak) >= self.limit

    def check(self) -> None:
        if self.stopped:
            last = self.streak[-1]
            raise CnntuneError(
                f"search stopped: {len(self.streak)} consecutive trials failed (last, trial {last.number}: "
                f"{last.reason or 'no reason recorded'}); fix the cause or raise --max-failures"
            )


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
) -> SearchResult:
    """Joins an existing study and runs its trials until the study's ``--trials`` budget is reached.

    The study's settings (space, data, pins, budget, sampler, pruner, seed, baselines) come from its metadata,
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

    Raises:
        CnntuneError: no such study, a study without stored settings, or a Keras Tuner worker without a chief.
    """
    import os

    url = storage or DEFAULT_STORAGE
    if chief is not None:
        from tuner.engines._keras_tuner import wait_for_chief

        wait_for_chief(chief, wait)
    store = open_storage(url)
    st = load_study(store, study, url)
    settings = study_meta(st).get("settings")
    if not settings:
        raise CnntuneError(f"study {study!r} has no stored search settings; start it with `cnntune search` first")
    engine = engine or settings.get("engine", "optuna")
    if engine == "keras-tuner" and chief is None:
        raise CnntuneError("a Keras Tuner worker needs --chief HOST:PORT (the address of `cnntune search --chief`)")
    if engine == "keras-tuner" and settings.get("engine") != "keras-tuner":
        raise CnntuneError(f"study {study!r} is searched by the {settings.get('engine')} engine; drop --engine")
    return search(
        [], trials=int(settings["trials"]), study=study, storage=url, sampler=settings.get("sampler", "tpe"),
        seed=int(settings.get("seed", 0)), baselines=bool(settings.get("baselines", True)), display=display,
        engine=engine, kt_tuner=settings.get("tuner", "random"), pruner=settings.get("pruner", "none"),
        max_failures=int(settings.get("max_failures", 5) if max_failures is None else max_failures),
        chief=chief, worker_id=worker_id or f"worker-{os.getpid()}",
    )


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(values))


def _check_same_experiment(name: str, meta: dict[str, Any], exp: Experiment) -> None:
    """Refuses to add trials of another space, data or pins to an existing study (its numbers would mix)."""
    if meta.get("space") != exp.space_name:
        raise CnntuneError(
            f"study {name!r} searches space {meta.get('space')}, not {exp.space_name}; use another --study"
        )
    if meta.get("data") != exp.data.to_dict():
        raise CnntuneError(
            f"study {name!r} was run on data {meta.get('data')}; use another --study for {exp.data.to_dict()}"
        )
    if meta.get("pins", {}) != _jsonable(exp.pins):
        raise CnntuneError(
            f"study {name!r} was run with pins {meta.get('pins')}; use another --study for {_jsonable(exp.pins)}"
        )
    if meta.get("options", {}) != _jsonable(exp.options):
        raise CnntuneError(
            f"study {name!r} was run with {meta.get('options')}; use another --study for {_jsonable(exp.options)}"
        )


def _new_meta(exp: Experiment, data, art: Path, skip_bad_images: bool = False) -> dict[str, Any]:
    """The cnntune description stored on a new study: what it trains on, so reading commands need no words."""
    return {
        "space": exp.space_name,
        "data": exp.data.to_dict(),
        "pins": _jsonable(exp.pins),
        "options": _jsonable(exp.options),
        "skip_bad_images": bool(skip_bad_images),
        "class_names": list(data.class_names),
        "input_shape": list(data.input_shape),
        "num_classes": int(data.num_classes),
        "n_train": int(len(data.x_train)),
        "n_val": int(len(data.x_val)),
        "n_test": int(len(data.x_test)),
        "artifacts": str(art),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def _enqueue(study_obj, exp: Experiment, with_baselines: bool) -> dict[str, dict[str, Any]]:
    """Enqueues baselines not yet run and retries of interrupted trials; returns each baseline's config."""
    space = exp.space
    configs = {b.name: trial_config(space, exp.pins, b.params) for b in getattr(space, "BASELINES", [])}
    records = _records(study_obj)
    if with_baselines:
        done = _done_baselines(records)
        for b in getattr(space, "BASELINES", []):
            if b.name in done:
                continue
            study_obj.enqueue_trial(
                _suggestable(space, exp.pins, configs[b.name]),
                user_attrs={"baseline": b.name, "reported": b.reported},
            )
    retried = {r.tags.get("retry_of") for r in records if "retry_of" in r.tags}
    for r in records:
        # Interrupted replays are resumed by their own command (reproduce, best --reeval), not by the search;
        # Keras Tuner trials by Keras Tuner's own project state.
        if (r.reason == "interrupted" and r.number not in retried and not r.baseline and not _is_replay(r)
                and "engine" not in r.tags):
            study_obj.enqueue_trial(_suggestable(space, exp.pins, r.params),
                                    user_attrs={"retry_of": r.number, "given": r.params})
    return configs


def _suggestable(space, pins, config: dict[str, Any]) -> dict[str, Any]:
    from tuner.engines._optuna import tunable

    names = tunable(space, pins)
    return {k: v for k, v in config.items() if k in names}


def _objective(exp: Experiment, data, art: Path, seed: int, display: Display, *, prune: bool = False,
               engine: str | None = None):
    """The function that runs one trial and records it in ``trial``'s user attributes.

    ``trial`` is an Optuna trial, or any object with ``number``, ``set_user_attr``, ``report`` and
    ``should_prune`` (the Keras Tuner engine records through one). With ``prune``, each epoch's validation
    accuracy is reported and a trial the pruner stops raises ``optuna.TrialPruned`` after its record is written.
    """
    from tuner.runner import TrialDiverged, fit_options, run_trial

    def objective(trial, params: dict[str, Any], attrs: dict[str, Any]) -> float:
        # A replayed run (reproduction, re-evaluation) carries its own seed; searched trials use seed + number.
        trial_seed = int(attrs["seed"]) if attrs.get("seed") is not None else int(seed) + trial.number
        trial.set_user_attr("seed", trial_seed)
        trial.set_user_attr("config", _jsonable(params))
        if engine:
            trial.set_user_attr("engine", engine)
        epochs = fit_options(params).epochs
        display.trial_begin(number=trial.number, params=params, baseline=attrs.get("baseline"), epochs=epochs)

        def on_epoch(epoch: int, logs: dict[str, float]) -> None:
            display.epoch_end(number=trial.number, epoch=epoch, epochs=epochs, logs=logs)

        pruning = EpochPruning(trial, prune and not attrs.get("baseline"), epochs, then=on_epoch)
        try:
            out = run_trial(exp.space, params, data, seed=trial_seed,
                            model_path=art / f"trial_{trial.number:04d}.keras", on_epoch=pruning.on_epoch,
                            should_stop=pruning.should_stop, spec_options=exp.options,
                            feature_cache=art.parent / "feature_cache")
        except TrialDiverged as exc:
            trial.set_user_attr("fail_reason", str(exc))
            trial.set_user_attr("history", exc.history)
            raise
        except KeyboardInterrupt:
            trial.set_user_attr("fail_reason", "interrupted")
            raise
        except Exception as exc:
            text = str(exc).strip().splitlines()
            trial.set_user_attr("fail_reason", f"{type(exc).__name__}: {text[0] if text else ''}"[:500])
            raise
        for key, value in (
            ("val_accuracy", out.val_accuracy),
            ("test_accuracy", out.test_accuracy),
            ("n_params", out.n_params),
            ("history", out.history),
            ("best_epoch", out.best_epoch),
            ("epochs_run", out.epochs_run),
            ("seconds", round(out.seconds, 3)),
            ("model_path", out.model_path),
            ("backend", out.backend),
            *out.extra.items(),  # e.g. feature_cache: hit|built|off and feature_seconds
        ):
            trial.set_user_attr(key, value)
        if pruning.pruned_at is not None:
            import optuna

            trial.set_user_attr("fail_reason", f"pruned at epoch {pruning.pruned_at}")
            raise optuna.TrialPruned(f"pruned at epoch {pruning.pruned_at}")
        return out.val_accuracy

    return objective


# -- reading a study -------------------------------------------------------------------------------------------
def trials(*, study: str | None = None, storage: str | None = None) -> StudyView:
    """All trials of a study, in order."""
    url, st = _open(storage, study)
    return StudyView(st.study_name, study_meta(st), _records(st))


def _is_replay(rec: TrialRecord) -> bool:
    """A reproduction or re-evaluation run: a repeat of a known config, not a result of the search."""
    return bool(rec.tags.get("reproduce")) or rec.tags.get("reeval_of") is not None


def _best_record(records: Sequence[TrialRecord], replays: bool = False) -> TrialRecord | None:
    done = [r for r in records if r.state == "complete" and r.val_accuracy is not None
            and math.isfinite(r.val_accuracy) and (replays or not _is_replay(r))]
    if not done:
        return None
    # Ties go to the earlier trial: a baseline wins a tie against a search result.
    return max(done, key=lambda r: (r.val_accuracy, -r.number))


def best(*, study: str | None = None, storage: str | None = None, replays: bool = False) -> BestReport:
    """The best trial by validation accuracy and its improvement over each baseline of the study.

    Args:
        study: study name; default the only study in the storage.
        storage: Optuna storage URL.
        replays: also consider reproduction and re-evaluation runs (``reproduce`` / ``reeval_of`` tags);
            by default they are repeats of known configs with other seeds, not candidates.

    Raises:
        StorageError: unknown study, or a study without a completed trial.
    """
    url, st = _open(storage, study)
    records = _records(st)
    top = _best_record(records, replays)
    if top is None and _best_record(records, True) is not None:
        raise StorageError(f"study {st.study_name!r} holds only reproduction or re-evaluation runs; "
                           "add --include-replays to pick among them")
    if top is None:
        raise StorageError(f"study {st.study_name!r} has no completed trial yet; run `cnntune search` first")
    meta = study_meta(st)
    comps = []
    for rec in records:
        if rec.baseline and rec.state == "complete" and (replays or not _is_replay(rec)):
            d_test = _pp(top.test_accuracy, rec.test_accuracy)
            pct = (None if d_test is None or not rec.test_accuracy
                   else 100.0 * (top.test_accuracy - rec.test_accuracy) / rec.test_accuracy)
            comps.append(Comparison(rec, _pp(top.val_accuracy, rec.val_accuracy), d_test, pct))
    return BestReport(st.study_name, meta, top, comps, val_noise_pp(top.val_accuracy, meta.get("n_val")))


def export(path: str | Path, *, study: str | None = None, storage: str | None = None,
           trial: int | None = None) -> Path:
    """Writes the best (or a given) trial's model as one ``.keras`` file that takes raw uint8 images.

    The metadata (space, params, seed, epoch, backend, dataset, class names) goes inside the file as
    ``cnntune.json`` and beside it as ``<name>.json``.

    Raises:
        CnntuneError: a folder that does not exist, a missing model file, an unknown trial.
    """
    target = export_target(path)
    if trial is None:
        report = best(study=study, storage=storage)
        rec, meta, name = report.best, report.meta, report.study
    else:
        url, st = _open(storage, study)
        matches = [r for r in _records(st) if r.number == trial]
        if not matches or matches[0].state != "complete":
            raise StorageError(f"study {st.study_name!r} has no completed trial {trial}")
        rec, meta, name = matches[0], study_meta(st), st.study_name
    if not rec.model_path or not Path(rec.model_path).is_file():
        raise CnntuneError(f"the model file of trial {rec.number} is missing ({rec.model_path}); rerun the search")
    info = {
        "study": name,
        "trial": rec.number,
        "space": meta.get("space"),
        "params": rec.params,
        "seed": rec.seed,
        "epoch": rec.best_epoch,
        "backend": rec.backend,
        "dataset": meta.get("data"),
        "options": meta.get("options") or {},
        "class_names": meta.get("class_names"),
        "input_shape": meta.get("input_shape"),
        "input_dtype": "uint8",
        "val_accuracy": rec.val_accuracy,
        "test_accuracy": rec.test_accuracy,
        "baseline": rec.baseline,
    }
    tmp = target.with_name(target.name + ".tmp")
    shutil.copyfile(rec.model_path, tmp)
    with zipfile.ZipFile(tmp, "a") as zf:
        zf.writestr("cnntune.json", json.dumps(info, indent=2))
    tmp.replace(target)
    target.with_suffix(".json").write_text(json.dumps(info, indent=2))
    return target


def export_target(path: str | Path) -> Path:
    """Checks an export file name before any work is done.

    Raises:
        CnntuneError: not a ``.keras`` name, or its folder does not exist.
    """
    target = Path(path).expanduser()
    if target.suffix != ".keras":
        raise CnntuneError(f"--export needs a file name ending in .keras. Received: {path}")
    if not target.parent.is_dir():
        raise CnntuneError(f"cannot export to {target}: folder {target.parent} does not exist")
    return target


def read_export_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata ``export`` stored inside a ``.keras`` file."""
    with zipfile.ZipFile(path) as zf:
        return json.loads(zf.read("cnntune.json"))


def spaces() -> list[dict[str, Any]]:
    """Every registered space: name, number of choice points, baselines, default data, description."""
    from search_spaces import SPACES
    from tuner.hp import describe

    rows = []
    for name, module in SPACES.items():
        params = describe(module)
        rows.append({
            "name": name,
            "choices": sum(1 for p in params.values() if p.is_tunable),
            "baselines": len(getattr(module, "BASELINES", [])),
            "data": getattr(module, "DEFAULT_DATA", ""),
            "description": getattr(module, "DESCRIPTION", ""),
        })
    return rows


def space_detail(name: str) -> dict[str, Any]:
    """One space's choice points (with conditions) and baselines."""
    from tuner.hp import describe

    module = get_space(name)
    return {"name": name, "params": describe(module), "baselines": list(getattr(module, "BASELINES", []))}
