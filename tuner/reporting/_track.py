"""``cnntune track``: an existing study's finished trials logged to MLflow, the ones its experiment does not hold
yet (a search without ``--track``, or one whose tracking server was down), so running it twice logs nothing twice."""

from __future__ import annotations

from dataclasses import dataclass, field

from tuner.errors import CnntuneError
from tuner.experiment import from_meta, trial_config
from tuner.records import FINISHED, Display
from tuner.store import read_study, redact
from tuner.tracking import Tracked, tracked

__all__ = ["TrackResult", "track"]


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
    uri = uri or (read.meta.get("search") or {}).get("track")
    if not uri:
        raise CnntuneError(f"study {read.name!r} was not searched with --track; pass --track URI")
    exp = from_meta(read.meta)
    shown = _Collect()
    tracker = tracked(shown, track=uri, tensorboard=None, study=read.name, role="backfill",
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
        raise CnntuneError(f"cannot read MLflow at {redact(uri)}: {redact(' '.join(str(exc).split())[:200])}") \
            from None
