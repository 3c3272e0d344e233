"""A study as cnntune reads and writes it: opening it, its records, its metadata, and what a trial is.

* **replays**: reproduction and re-evaluation runs repeat known configurations, so they are never search results
  (``is_replay``); the baselines a search has run (``done_baselines``);
* the **metadata schema** stored on the study (what it trains on; the options a worker reuses are
  ``tuner.options.SearchOptions.stored``'s record);
* the **backend**: a study's trials train on one Keras backend unless told otherwise (``check_backends``).

The budget is ``_budget.Budget``'s, the best trial ``_best.best_trial``'s.

Nothing here imports Keras; Optuna is imported where a study is opened.
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable

from tuner.errors import CnntuneError, StorageError
from tuner.records import FINISHED, FailureKind, TrialRecord
from tuner.store._rdb import read_tables
from tuner.store._storage import DEFAULT_STORAGE, META_KEY, load_study, open_storage, sqlite_file, study_meta

if TYPE_CHECKING:  # the experiment (and the spaces it loads) is not needed to read a study
    from tuner.experiment import Experiment

__all__ = [
    "KERAS_BACKENDS",
    "check_backends",
    "check_same_experiment",
    "current_backend",
    "done_baselines",
    "is_replay",
    "jsonable",
    "new_meta",
    "open_study",
    "StudyRecords",
    "read_records",
    "read_study",
    "start_trial",
    "study_meta",
    "that_ran",
    "write_meta",
]



# -- opening and reading ---------------------------------------------------------------------------------------------
def open_study(storage: str | None, study: str | None):
    """Opens an existing study for reading; never creates a store as a side effect.

    Returns:
        ``(url, optuna.Study)``.

    Raises:
        StorageError: no store at a SQLite path, a URL that cannot be opened, an unknown study.
    """
    url = _existing(storage)
    return url, load_study(open_storage(url, existing=True), study, url)


def _existing(storage: str | None) -> str:
    """The store's URL (the default when ``None``), checked to exist where it is a file: a reading command never
    creates one as a side effect.

    Raises:
        StorageError: no SQLite file at the URL's path.
    """
    url = storage or DEFAULT_STORAGE
    file = sqlite_file(url)
    if file is not None and not file.is_file():
        raise StorageError(f"no study store at {file}; run `cnntune search` here first or pass --storage")
    return url


def read_records(study, *, url: str | None = None, history: bool = True) -> list[TrialRecord]:
    """Every trial of an ``optuna.Study`` as a ``TrialRecord``, in order; trials that a process created after the
    budget was full ran nothing (``FailureKind.BUDGET_FULL``) and are left out. With the storage's ``url``, an RDB
    storage's trials are read from its tables (``read_tables``; ``history=False`` then skips the per-epoch
    histories), else through Optuna's API."""
    read = read_tables(url, study.study_name, history=history) if url else None
    records = read[2] if read is not None else [TrialRecord.from_trial(t) for t in study.get_trials(deepcopy=False)]
    return that_ran(records)


def that_ran(records: Iterable[TrialRecord]) -> list[TrialRecord]:
    """``records`` without the trials a process created after the budget was full: they ran nothing, and every
    reader leaves them out (Optuna cannot delete a trial)."""
    return [r for r in records if r.kind is not FailureKind.BUDGET_FULL]


@dataclass
class StudyRecords:
    """A study as the reading commands read it: its name, cnntune metadata and records (in trial-number order)."""

    name: str
    meta: dict[str, Any]
    records: list[TrialRecord]


def read_study(storage: str | None, study: str | None, *, history: bool = True) -> StudyRecords:
    """Reads an existing study (without a name: the only study in the storage) for ``trials``, ``best`` and
    ``export``: straight from an RDB storage's tables when their schema is the one the reader knows, without
    importing Optuna (``read_tables``); else through Optuna. Never creates a store.

    Raises:
        StorageError: no store at a SQLite path, a URL that cannot be opened, an unknown study.
    """
    url = _existing(storage)
    read = read_tables(url, study, history=history)
    if read is not None:
        name, meta, records = read
    else:
        _, st = open_study(url, study)
        name, meta, records = st.study_name, study_meta(st), [TrialRecord.from_trial(t)
                                                             for t in st.get_trials(deepcopy=False)]
        if not history:
            for rec in records:
                rec.history = {}
    return StudyRecords(name, meta, that_ran(records))


# -- the rules -------------------------------------------------------------------------------------------------------
def is_replay(rec: TrialRecord) -> bool:
    """A reproduction or re-evaluation run: a repeat of a known config, not a result of the search."""
    return bool(rec.tags.get("reproduce")) or rec.tags.get("reeval_of") is not None


def done_baselines(records: Iterable[TrialRecord]) -> set[str]:
    """Names of the baselines a search has run, is running or has queued (its own runs, not replays)."""
    return {r.baseline for r in records if r.baseline and r.state in (*FINISHED, "running", "waiting")
            and r.kind is not FailureKind.INTERRUPTED and not is_replay(r)}


# -- the backend -----------------------------------------------------------------------------------------------------
# Keras 3's backends; a runner that records another name (a custom training loop, a test double) is not compared.
KERAS_BACKENDS = ("tensorflow", "jax", "torch", "numpy", "openvino")


def current_backend() -> str:
    """The Keras backend this process trains with, found without importing Keras (reading commands stay light).

    Keras' own answer when it is imported already; else what Keras reads when it is imported: ``KERAS_BACKEND``,
    else ``backend`` in ``$KERAS_HOME/keras.json`` (default ``~/.keras``, or ``/tmp/.keras`` when the home folder is
    not writable), else ``tensorflow``.
    """
    keras = sys.modules.get("keras")
    if keras is not None and hasattr(keras, "config"):
        return str(keras.config.backend())
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    home = os.path.expanduser("~")
    folder = os.environ.get("KERAS_HOME") or os.path.join(home if os.access(home, os.W_OK) else "/tmp", ".keras")
    try:
        with open(os.path.join(os.path.expanduser(folder), "keras.json")) as f:
            backend = json.load(f).get("backend")
    except (OSError, ValueError, AttributeError):  # missing, unreadable or not a JSON object: Keras' default
        backend = None
    return str(backend or "tensorflow")


def check_backends(name: str, records: Iterable[TrialRecord], backend: str, allow: bool = False) -> None:
    """Refuses to add trials on ``backend`` to a study whose completed trials trained on another Keras backend.

    The same configuration and seed start from other random weights and run other kernels on another backend, so
    such trials differ in something no hyperparameter records, and the study would rank them as if it did not.

    Raises:
        CnntuneError: one line naming the backends and ``--allow-mixed-backends``, unless ``allow``.
    """
    if allow:
        return
    other = sorted({r.backend for r in records if r.state == "complete" and r.backend in KERAS_BACKENDS
                    and r.backend != backend})
    if other:
        raise CnntuneError(f"study {name!r} holds trials trained on the {'/'.join(other)} backend, this process "
                           f"trains on {backend}: set KERAS_BACKEND={other[0]}, use another --study, or pass "
                           "--allow-mixed-backends to mix them")


# -- the metadata schema ---------------------------------------------------------------------------------------------
def jsonable(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` as they read back from the store (JSON types: tuples become lists)."""
    return json.loads(json.dumps(values))


def new_meta(exp: Experiment, data, artifacts: str, skip_bad_images: bool = False) -> dict[str, Any]:
    """The cnntune description stored on a new study: what it trains on and where its files go (a folder or a URL),
    so reading commands and workers need no words."""
    return {
        "space": exp.space_name,
        "data": exp.data.to_dict(),
        "pins": jsonable(exp.pins),
        "options": jsonable(exp.options),
        "skip_bad_images": bool(skip_bad_images),
        "class_names": list(data.class_names),
        "input_shape": list(data.input_shape),
        "num_classes": int(data.num_classes),
        "n_train": int(len(data.x_train)),
        "n_val": int(len(data.x_val)),
        "n_test": int(len(data.x_test)),
        "artifacts": artifacts,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def write_meta(study, meta: dict[str, Any]) -> None:
    """Stores ``meta`` as the study's cnntune description."""
    study.set_user_attr(META_KEY, meta)


def check_same_experiment(name: str, meta: dict[str, Any], exp: Experiment) -> None:
    """Refuses to add trials of another space, data or pins to an existing study (its numbers would mix).

    Raises:
        CnntuneError: one line naming what differs.
    """
    if meta.get("space") != exp.space_name:
        raise CnntuneError(
            f"study {name!r} searches space {meta.get('space')}, not {exp.space_name}; use another --study"
        )
    if meta.get("data") != exp.data.to_dict():
        raise CnntuneError(
            f"study {name!r} was run on data {meta.get('data')}; use another --study for {exp.data.to_dict()}"
        )
    if meta.get("pins", {}) != jsonable(exp.pins):
        raise CnntuneError(
            f"study {name!r} was run with pins {meta.get('pins')}; use another --study for {jsonable(exp.pins)}"
        )
    if meta.get("options", {}) != jsonable(exp.options):
        raise CnntuneError(
            f"study {name!r} was run with {meta.get('options')}; use another --study for {jsonable(exp.options)}"
        )


def start_trial(study):
    """A new ``running`` trial of ``study`` that no sampler decides and that never takes a ``waiting`` trial.

    Replays (``reproduce``, ``best --reeval``) run fixed configurations with fixed seeds. ``Study.ask()`` would
    first pop a waiting trial of the study (a search's enqueued baseline) and run it under the replay's tags, so the
    trial is created in the storage directly: Optuna's storage API is public, the study's handle on it is not, and
    this is the one place cnntune reaches for it.
    """
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        storage = study._storage
        return optuna.Trial(study, storage.create_new_trial(study._study_id))
