"""The study store: an Optuna storage URL is the single system of record.

Studies, trials, metrics and the locations of model artifacts live in the Optuna storage; the model files and the
trials' checkpoints live in the study's artifacts: a folder next to the study (beside the SQLite file, or under the
working directory for server storages), or a prefix in object storage (``--artifacts s3://bucket/prefix``) that
workers on hosts sharing nothing else reach. Nothing here imports Keras.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from tuner.errors import StorageError
from tuner.options import DEFAULT_HEARTBEAT_GRACE
from tuner.store._location import Location, is_url, redact

__all__ = [
    "Artifacts",
    "CHECKPOINT_OF",
    "DEFAULT_STORAGE",
    "EPOCH_REACHED",
    "GRACE_PERIOD",
    "HEARTBEAT_INTERVAL",
    "MAX_RETRY",
    "META_KEY",
    "RESUMED_FROM",
    "artifacts_root",
    "create_or_load_study",
    "heartbeat_timing",
    "load_study",
    "engine_kwargs",
    "open_storage",
    "pick_study",
    "retry_dead_trial",
    "sqlite_file",
    "study_meta",
    "study_names",
    "with_driver",
]

DEFAULT_STORAGE = "sqlite:///cnntune.db"
META_KEY = "cnntune"

def _journal_path(url: str) -> str | None:
    if url.startswith("journal:"):
        return url[len("journal:"):].removeprefix("//")
    if url.endswith((".log", ".jsonl")) and "://" not in url:
        return url
    return None


def sqlite_file(url: str) -> Path | None:
    if not url.startswith("sqlite:///"):
        return None
    path = url[len("sqlite:///"):]
    return None if path in ("", ":memory:") else Path(path)


# Heartbeats of running trials (seconds): a trial whose worker stopped beating for GRACE_PERIOD is failed and
# retried by the next worker that starts a trial (Optuna's stale-trial check): as often as its runs make progress
# (a spot machine preempted three times in one long trial), and MAX_RETRY times in all without progress (a
# configuration that kills its own process).
# CNNTUNE_HEARTBEAT_INTERVAL / CNNTUNE_GRACE_PERIOD override them (tests, very short or very long trials).
HEARTBEAT_INTERVAL = 30
GRACE_PERIOD = DEFAULT_HEARTBEAT_GRACE
MAX_RETRY = 2


def open_storage(url: str | None = None, *, heartbeat: bool = False, grace: float | None = None,
                 existing: bool = False):
    """Opens an Optuna storage from a URL.

    Accepts any SQLAlchemy URL Optuna accepts (``sqlite:///file.db``, ``postgresql://...``, ``mysql+pymysql://...``)
    and ``journal:PATH`` (Optuna's journal file storage, for many processes on one host).

    Args:
        url: the storage URL; ``None`` uses ``sqlite:///cnntune.db`` in the working directory.
        heartbeat: for database storages, record heartbeats of running trials so that the trial of a killed
            process is failed after ``grace`` seconds and retried (``retry_dead_trial``).
        grace: seconds without a heartbeat before a running trial counts as dead; default ``GRACE_PERIOD`` (or the
            ``CNNTUNE_GRACE_PERIOD`` variable).
        existing: the store exists already (reading commands): its tables are not created or checked for.

    Returns:
        An ``optuna.storages.BaseStorage``.

    Raises:
        StorageError: the URL cannot be opened (the message never shows a password).
    """
    import optuna

    url = url or DEFAULT_STORAGE
    journal = _journal_path(url)
    try:
        if journal is not None:
            from optuna.storages.journal import JournalFileBackend, JournalStorage

            parent = Path(journal).expanduser().resolve().parent
            if not parent.is_dir():
                raise StorageError(f"cannot open storage {redact(url)}: folder {parent} does not exist")
            return JournalStorage(JournalFileBackend(str(Path(journal).expanduser())))
        if "://" not in url:
            raise StorageError(
                f"cannot open storage {redact(url)!r}: expected a URL such as sqlite:///cnntune.db, "
                "postgresql://user@host/db, mysql+pymysql://user@host/db or journal:PATH"
            )
        url = with_driver(url)
        sqlite = sqlite_file(url)
        if sqlite is not None and not sqlite.expanduser().resolve().parent.is_dir():
            raise StorageError(f"cannot open storage {redact(url)}: folder {sqlite.resolve().parent} does not exist")
        with warnings.catch_warnings():
            # Heartbeats are marked experimental in Optuna; that is not the user's concern.
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs(url), skip_table_creation=existing,
                                              **_heartbeat_kwargs(heartbeat, grace))
    except StorageError:
        raise
    except Exception as exc:  # SQLAlchemy/driver errors vary; all of them mean the same to a user
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StorageError(f"cannot open storage {redact(url)}: {redact(reason)}") from None


def with_driver(url: str) -> str:
    """``postgresql://`` with the installed driver: SQLAlchemy 2.1 defaults to psycopg 3, cnntune installs psycopg2."""
    if not url.startswith("postgresql://"):
        return url
    import importlib.util

    if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2") is not None:
        return "postgresql+psycopg2://" + url[len("postgresql://"):]
    return url


def heartbeat_timing(grace: float | None = None) -> tuple[int, int]:
    """``(interval, grace)`` in whole seconds: the grace given, else ``CNNTUNE_GRACE_PERIOD``, else ``GRACE_PERIOD``;
    a heartbeat at least three times per grace period (``CNNTUNE_HEARTBEAT_INTERVAL`` overrides), so that one late
    beat of a busy worker does not fail its trial."""
    grace = int(grace if grace is not None else os.environ.get("CNNTUNE_GRACE_PERIOD", GRACE_PERIOD))
    interval = os.environ.get("CNNTUNE_HEARTBEAT_INTERVAL")
    return (int(interval) if interval else max(1, min(HEARTBEAT_INTERVAL, grace // 3))), grace


def _heartbeat_kwargs(enabled: bool, grace: float | None = None) -> dict[str, Any]:
    if not enabled:
        return {}
    from optuna import storages

    interval, grace = heartbeat_timing(grace)
    timing = {"heartbeat_interval": interval, "grace_period": grace}
    key = ("heartbeat_stale_trial_callback" if hasattr(storages, "RetryHeartbeatStaleTrialCallback")  # optuna >= 4.9
           else "failed_trial_callback")
    return {**timing, key: retry_dead_trial}


# What a trial records as it trains, for its retry: the last epoch it checkpointed, the epoch it resumed from, and
# (on the retry, in the storage's system attributes) how many runs of its chain died without progress.
EPOCH_REACHED, RESUMED_FROM, STALLS = "epoch_reached", "resumed_from_epoch", "cnntune_stalls"  # the objective
# writes the first two (tuner.trial)
# The trial whose checkpoint folder a chain of retries shares: a retry reads and rewrites its predecessor's
# checkpoint in place (object stores cannot rename). Optuna's heartbeat retry copies it with the user attributes;
# a search's retry of an interrupted trial is queued with it.
CHECKPOINT_OF = "checkpoint_of"


def retry_dead_trial(study, trial) -> None:
    """Optuna's callback for a trial whose worker died (stale heartbeat): queues the same configuration again, marked
    as Optuna marks a retry (``failed_trial``, ``retry_history``), unless its chain died ``MAX_RETRY`` times without
    training an epoch past where the run started."""
    import optuna

    progressed = int(trial.user_attrs.get(EPOCH_REACHED) or 0) > int(trial.user_attrs.get(RESUMED_FROM) or 0)
    stalls = int(trial.system_attrs.get(STALLS, 0)) + (0 if progressed else 1)
    if stalls > MAX_RETRY:
        return
    system_attrs = {"failed_trial": trial.number, **trial.system_attrs, STALLS: stalls}
    system_attrs["retry_history"] = [*trial.system_attrs.get("retry_history", []), trial.number]
    study.add_trial(optuna.create_trial(state=optuna.trial.TrialState.WAITING, params=trial.params,
                                        distributions=trial.distributions, user_attrs=trial.user_attrs,
                                        system_attrs=system_attrs))


def engine_kwargs(url: str) -> dict[str, Any]:
    if url.startswith(("postgresql", "mysql")):
        # Fail fast on a host that is down instead of hanging for minutes.
        return {"connect_args": {"connect_timeout": 10}, "pool_pre_ping": True}
    return {}


def artifacts_root(url: str | None, study_name: str, override: str | os.PathLike | None = None) -> Path:
    """The folder holding the model files of a study (and, with artifacts in object storage, this host's files).

    Next to the SQLite or journal file when the storage is a file; otherwise ``./cnntune_artifacts``.
    """
    if override and not is_url(override):
        return Path(override).expanduser().resolve() / study_name
    url = url or DEFAULT_STORAGE
    file = sqlite_file(url) or (Path(p) if (p := _journal_path(url)) else None)
    base = file.expanduser().resolve().parent if file is not None else Path.cwd()
    return base / "cnntune_artifacts" / study_name


def study_names(storage) -> list[str]:
    """The names of a storage's studies. Optuna's study summaries would read every trial of every study to count
    them: on a 5,000-trial study that doubled the time of `trials` and `best`."""
    import optuna

    return list(optuna.study.get_all_study_names(storage))


def pick_study(names: Sequence[str], name: str | None, url: str | None = None) -> str:
    """The study ``name`` among a storage's ``names``; without a name, the only one.

    Raises:
        StorageError: no such study, or several studies and no name given.
    """
    where = redact(url or DEFAULT_STORAGE)
    if name is None:
        if len(names) == 1:
            return names[0]
        if not names:
            raise StorageError(f"no studies in {where}; run `cnntune search` first")
        raise StorageError(f"{len(names)} studies in {where}; pick one with --study: {', '.join(sorted(names))}")
    if name not in names:
        known = f"; known: {', '.join(sorted(names))}" if names else ""
        raise StorageError(f"no study named {name!r} in {where}{known}")
    return name


def load_study(storage, name: str | None, url: str | None = None):
    """Loads an existing study; without a name, the only study in the storage.

    Raises:
        StorageError: no such study, or several studies and no name given.
    """
    import optuna

    return optuna.load_study(study_name=pick_study(study_names(storage), name, url), storage=storage)


def create_or_load_study(storage, name: str, sampler=None, pruner=None, directions: Sequence[str] = ("maximize",)):
    """Creates the study, or loads it when it exists (then with the directions it was created with).

    Raises:
        StorageError: the existing study optimizes other directions.
    """
    import optuna

    study = optuna.create_study(storage=storage, study_name=name, sampler=sampler, pruner=pruner,
                                directions=list(directions), load_if_exists=True)
    found = [d.name.lower() for d in study.directions]
    if found != list(directions):
        raise StorageError(f"study {name!r} optimizes {', '.join(found)}, not {', '.join(directions)}; use "
                           "another --study")
    return study


def study_meta(study) -> dict[str, Any]:
    """The cnntune description of a study (space, data, pins, classes), or ``{}`` for foreign studies."""
    return dict(study.user_attrs.get(META_KEY) or {})


@dataclass(frozen=True)
class Artifacts:
    """Where a study's files live.

    Attributes:
        root: this host's folder (``cnntune_artifacts/<study>`` next to a SQLite or journal file): what each host
            keeps for itself (the feature cache, Keras Tuner's project, the data ``--isolate`` memory-maps).
        files: the study's shared files, the trials' checkpoints and model files: ``root`` itself, or the study's
            prefix in object storage (``--artifacts s3://bucket/prefix`` -> ``s3://bucket/prefix/<study>``).
    """

    root: Path
    files: Location

    @classmethod
    def of(cls, meta: dict[str, Any], url: str, study: str, override: str | None = None) -> "Artifacts":
        """A study's artifacts: where its metadata says, else the default for its storage (or ``override``)."""
        where = meta.get("artifacts") or (f"{override.rstrip('/')}/{study}" if is_url(override) else None)
        if where and is_url(where):
            return cls(artifacts_root(url, study), Location.of(where))
        root = Path(where) if where else artifacts_root(url, study, override)
        return cls(root, Location.of(root))

    def check(self) -> "Artifacts":
        """Raises ``StorageError`` (one line) when the study's files are in object storage that cannot be written,
        so that a command says so before it loads data or trains; returns itself."""
        if self.files.remote:
            self.files.check_writable()
        return self

    @property
    def feature_cache(self) -> Path:
        """Cached backbone features, shared by every study beside this one (same data, same backbone)."""
        return self.root.parent / "feature_cache"

    @property
    def keras_tuner(self) -> Path:
        """Keras Tuner's project folder (its oracle state, for resuming)."""
        return self.root / "keras_tuner"
