"""``cnntune track``: an existing study's finished trials logged to MLflow, the ones its experiment does not hold
yet (a search without ``--track``, or one whose tracking server was down), so running it twice logs nothing twice."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from tuner.errors import CnntuneError
from tuner.experiment import from_meta, trial_config
from tuner.records import FINISHED, Display
from tuner.reporting._export import read_export_metadata
from tuner.store import Location, StudyRecords, is_replay, one_line, read_study, redact
from tuner.tracking import Tracked, need, register_model, tracked

__all__ = ["TrackResult", "register", "registry_uri", "track"]


@dataclass
class TrackResult:
    """What ``track`` logged: the study, the URI (password hidden), the trials logged now and those already there,
    what could not be logged and the warnings."""

    study: str
    uri: str
    logged: list[int]
    already: int
    unlogged: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


class _Collect(Display):
    def __init__(self) -> None:
        self.lines: list[str] = []

    def message(self, text: str) -> None:
        self.lines.append(text)


def track(*, study: str | None = None, storage: str | None = None, uri: str | None = None) -> TrackResult:
    """Logs the study's finished trials that its MLflow experiment does not hold yet.

    Args:
        study, storage: the study (without a name: the only one in the storage).
        uri: the tracking server; default the one the study was searched with (``--track``).

    Raises:
        CnntuneError: no URI given nor stored; the server cannot be reached; MLflow is not installed.
    """
    read = read_study(storage, study)
    uri = _uri(read, uri, "pass --track URI")
    exp = from_meta(read.meta)
    shown = _Collect()
    # A reproduction's runs go under one parent run per baseline, as ``reproduce --track`` logs them.
    role = "reproduce" if read.records and all(r.tags.get("reproduce") for r in read.records) else "backfill"
    tracker = tracked(shown, track=uri, tensorboard=None, study=read.name, role=role,
                      defaults=trial_config(exp.space, exp.pins))
    assert isinstance(tracker, Tracked)
    there = _logged(tracker, uri)
    missing = [r for r in read.records if r.state in FINISHED and r.number not in there]
    for rec in missing:
        tracker.trial_end(rec)
    tracker.search_end()
    now = _logged(tracker, uri) if missing else there
    return TrackResult(read.name, redact(uri), [r.number for r in missing if r.number in now], len(there),
                       tracker.unlogged, shown.lines)


def _logged(tracker: Tracked, uri: str) -> set[int]:
    try:
        return tracker.logged_trials()
    except Exception as exc:  # the server's own errors vary; all mean it cannot be read
        raise CnntuneError(f"cannot read MLflow at {redact(uri)}: {one_line(exc, 200)}") from None


def _uri(read: StudyRecords, uri: str | None, instead: str) -> str:
    """The tracking server: ``uri``, else the one the study was searched with (``--track``), else MLflow's standard
    ``MLFLOW_TRACKING_URI``.

    Raises:
        CnntuneError: none of them; ``instead`` says what to do.
    """
    found = uri or (read.meta.get("search") or {}).get("track") or os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if not found:
        raise CnntuneError(f"study {read.name!r} was not searched with --track and MLFLOW_TRACKING_URI is not set; "
                           f"{instead}")
    return found


_REGISTER_NEEDS = "--register needs --track URI"


def registry_uri(*, study: str | None, storage: str | None, uri: str | None, name: str | None,
                 export: str | None) -> str | None:
    """``best``'s options checked before any work: the server ``--register NAME`` uses (``None`` without it).

    Raises:
        CnntuneError: --register without --export, --track without --register, no server; MLflow not installed.
    """
    if name is None:
        if uri is not None:
            raise CnntuneError("--track names the server for --register NAME; add it")
        return None
    if export is None:
        raise CnntuneError(f"--register {name} registers the model --export writes; add --export FILE.keras")
    need("mlflow", "--register")
    return _uri(read_study(storage, study, history=False), uri, _REGISTER_NEEDS)


def register(exported, name: str, *, study: str | None = None, storage: str | None = None,
             uri: str | None = None) -> str:
    """Registers an exported model (``best --export``, local or in object storage) as a new version of ``name`` in
    MLflow's model registry, logged with the trial's configuration, its accuracy, its difference to each of the
    study's baselines (percentage points), seed and backend. Returns the version.

    Raises:
        CnntuneError: no tracking server given nor stored, or it cannot take the model; MLflow not installed.
    """
    need("mlflow", "--register")
    read = read_study(storage, study, history=False)
    uri = _uri(read, uri, _REGISTER_NEEDS)
    with Location.of(exported).fetched() as path:
        info = read_export_metadata(path)
        baselines = [r for r in read.records if r.baseline and r.state == "complete" and not is_replay(r)]
        metrics = {"val_accuracy": info.get("val_accuracy"), "test_accuracy": info.get("test_accuracy")}
        for b in baselines:
            for split, theirs, ours in (("val", b.val_accuracy, info.get("val_accuracy")),
                                        ("test", b.test_accuracy, info.get("test_accuracy"))):
                if theirs is not None and ours is not None:
                    metrics[f"{split}_vs_{b.baseline}_pp"] = 100 * (ours - theirs)
        tags = {"cnntune.trial": info.get("trial"), "cnntune.seed": info.get("seed"),
                "cnntune.backend": info.get("backend"), "cnntune.space": info.get("space"),
                "cnntune.baseline": info.get("baseline"), "cnntune.exported": str(exported)}
        try:
            return register_model(uri, name, path, study=read.name, run_name=f"export trial {info.get('trial')}",
                                  params=dict(info.get("params") or {}), metrics=metrics, tags=tags)
        except Exception as exc:  # the server's and the registry's errors vary; each is one line here
            raise CnntuneError(f"cannot register the model in MLflow at {redact(uri)}: {one_line(exc)}") from None
