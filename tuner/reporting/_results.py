"""Reading a study: ``trials`` (every trial, and which one is the best) and ``best`` (the best against each baseline).

Both only read the store, never create one, and never print. The best trial is ``tuner.store.best_trial``'s (by the mean
of new seeds where the study re-evaluated its top configurations, else by one run), so the trials table highlights
exactly the trial ``best`` reports and exports.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tuner.errors import CnntuneError, StorageError
from tuner.options import number
from tuner.records import TrialRecord, val_noise_pp
from tuner.store import ReevalRow, best_record, best_trial, candidates, is_replay, read_study

__all__ = ["BestReport", "Comparison", "StudyView", "best", "trials"]


@dataclass
class StudyView:
    """A study's trials in order, its cnntune metadata, and the number of its best trial (``None``: none yet).

    Attributes:
        defaults: the space's hand-chosen configuration under the study's pins (``{}`` when the space cannot be
            loaded here), so that a table can show only what each trial changed.
    """

    study: str
    meta: dict[str, Any]
    records: list[TrialRecord]
    best: int | None = None
    defaults: dict[str, Any] = field(default_factory=dict)


@dataclass
class Comparison:
    """The best trial against one baseline of the same study (differences in percentage points, and percent)."""

    baseline: TrialRecord
    d_val_pp: float | None
    d_test_pp: float | None
    d_test_pct: float | None


@dataclass
class BestReport:
    """The best trial, its comparisons with every completed baseline, and the validation noise at its accuracy.

    Attributes:
        picked_by_mean: when the study re-evaluated its top configurations, the pick's statistics over its new seeds
            (it was picked by their mean validation accuracy); ``None`` when picked by one run.
        single_run_best: the single-run best trial when it is not the pick.
    """

    study: str
    meta: dict[str, Any]
    best: TrialRecord
    comparisons: list[Comparison] = field(default_factory=list)
    noise_pp: float | None = None
    picked_by_mean: ReevalRow | None = None
    single_run_best: TrialRecord | None = None


def trials(*, study: str | None = None, storage: str | None = None, history: bool = True) -> StudyView:
    """All trials of a study, in order; ``history=False`` leaves the per-epoch histories out (faster on large
    studies).

    Raises:
        StorageError: no store, an unknown study, or several studies and no name.
    """
    read = read_study(storage, study, history=history)
    top, _ = best_trial(read.records)
    return StudyView(read.name, read.meta, read.records, None if top is None else top.number,
                     _hand_chosen(read.meta))


def _hand_chosen(meta: dict[str, Any]) -> dict[str, Any]:
    """The space's defaults (the study's hand-chosen configuration) under the study's pins; ``{}`` when the space
    is not known here (a user's space file that moved, a foreign study)."""
    import search_spaces
    from tuner.hp import Defaults, resolve

    try:
        space = search_spaces.get_space(str(meta["space"]))
        return resolve(space, Defaults(dict(meta.get("pins") or {})))
    except Exception:  # noqa: BLE001 - only the table's compact view needs it; it then shows every value
        return {}


def _within(name: str, records: list[TrialRecord], replays: bool, max_params: int | None,
            max_latency_ms: float | None) -> TrialRecord | None:
    """The most accurate candidate within the limits (ties: the earlier trial).

    Raises:
        StorageError: no candidate within them; the message names the smallest/fastest there is.
    """
    pool = candidates(records, replays)
    for limit, attr, unit in ((max_params, "n_params", "parameters"), (max_latency_ms, "latency_ms", "ms per image")):
        if limit is None or not pool:
            continue
        measured = [r for r in pool if getattr(r, attr) is not None]
        if not measured:
            raise StorageError(f"no trial of study {name!r} measured its {unit}; search with --objective "
                               f"accuracy,{'params' if attr == 'n_params' else 'latency'}")
        inside = [r for r in measured if getattr(r, attr) <= limit]
        if not inside:
            least = min(getattr(r, attr) for r in measured)
            raise StorageError(f"no completed trial of study {name!r} has at most {limit:,} {unit} (the least: "
                               f"{least:,}); raise the limit")
        pool = inside
    return best_record(pool, replays)


def _pp(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else 100.0 * (a - b)


def best(*, study: str | None = None, storage: str | None = None, replays: bool = False,
         max_params: int | None = None, max_latency_ms: float | None = None, history: bool = True) -> BestReport:
    """The best trial by validation accuracy and its improvement over each baseline of the study.

    Args:
        study: study name; default the only study in the storage.
        storage: Optuna storage URL.
        replays: also consider reproduction and re-evaluation runs (``reproduce`` / ``reeval_of`` tags);
            by default they are repeats of known configs with other seeds, not candidates.
        max_params: the most accurate trial with at most this many parameters (any study; the natural question of
            a ``--objective accuracy,params`` search).
        max_latency_ms: the most accurate trial at most this many milliseconds per image (trials that measured it:
            ``--objective accuracy,latency``).
        history: read the trials' per-epoch histories (``False``: faster on large studies).

    Raises:
        StorageError: unknown study, a study without a completed trial, or none within the limits.
        CnntuneError: a limit that no trial can meet (below 1 parameter, not a positive number of milliseconds).
    """
    number(int, 1, why="at least 1 (parameters)")("max_params", max_params)
    if number(float)("max_latency_ms", max_latency_ms) is not None and max_latency_ms <= 0:
        raise CnntuneError(f"--max-latency-ms must be above 0 (milliseconds per image). Received: {max_latency_ms}")
    read = read_study(storage, study, history=history)
    name, meta, records = read.name, read.meta, read.records
    if max_params is not None or max_latency_ms is not None:
        top, by_mean = _within(name, records, replays, max_params, max_latency_ms), None
    else:
        top, by_mean = (best_record(records, True), None) if replays else best_trial(records)
    if top is None and best_record(records, True) is not None:
        raise StorageError(f"study {name!r} holds only reproduction or re-evaluation runs; "
                           "add --include-replays to pick among them")
    if top is None:
        raise StorageError(f"study {name!r} has no completed trial yet; run `cnntune search` first")
    comps = []
    for rec in records:
        if rec.baseline and rec.state == "complete" and (replays or not is_replay(rec)):
            d_test = _pp(top.test_accuracy, rec.test_accuracy)
            pct = (None if d_test is None or not rec.test_accuracy
                   else 100.0 * (top.test_accuracy - rec.test_accuracy) / rec.test_accuracy)
            comps.append(Comparison(rec, _pp(top.val_accuracy, rec.val_accuracy), d_test, pct))
    single = best_record(records, replays)
    return BestReport(name, meta, top, comps, val_noise_pp(top.val_accuracy, meta.get("n_val")),
                      picked_by_mean=by_mean, single_run_best=single if single is not None and single is not top and
                      single.number != top.number else None)
