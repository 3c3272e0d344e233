"""The best trial of a study, one rule for every command: by one run, or by the mean of its re-evaluation runs.

One run's validation accuracy is a noisy number (the study's own BaseNet moved 9 points between two runs), and the
best of many trials is the one whose noise happened to be high. Where a study re-evaluated its top configurations
(``search --reeval-share``, ``best --reeval``: each retrained with new seeds, tagged ``reeval_of``), ``best_trial``
picks the configuration with the highest mean validation accuracy over its new seeds; otherwise the single-run best.
``search``, ``trials``, ``best``, ``export`` and ``report`` all ask ``best_trial``. Also here: the statistics of one
configuration over seeds (re-evaluation and reproduction share them). Nothing here imports Optuna or Keras.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Sequence

from tuner.records import FailureKind, TrialRecord
from tuner.store._study import is_replay

__all__ = ["REEVAL_SEED_STRIDE", "SIZE_ATTRS", "ReevalRow", "SeedStats", "best_record", "best_trial", "candidates",
           "config_key", "diff_se", "is_done", "mean_std", "pareto_front", "pct", "rank_configs", "reeval_seeds",
           "seed_stats", "time_to_quality", "top_configs"]


def candidates(records: Iterable[TrialRecord], replays: bool = False) -> list[TrialRecord]:
    """The trials ``best`` may pick: complete, a finite validation accuracy, and no replay unless ``replays``."""
    return [r for r in records if r.state == "complete" and r.val_accuracy is not None
            and math.isfinite(r.val_accuracy) and (replays or not is_replay(r))]


def time_to_quality(records: Iterable[TrialRecord]) -> list[tuple[float, float, int]]:
    """The search's time-to-quality curve: each time the best validation accuracy so far rose, ``(seconds since the
    study's first trial started, that accuracy, the trial)``, among the trials ``best`` picks from, by when they
    finished (several workers finish out of trial order). Empty when the store recorded no times."""
    records = list(records)
    starts = [r.started for r in records if r.started is not None]
    if not starts:
        return []
    first, best, curve = min(starts), -math.inf, []
    for rec in sorted((r for r in candidates(records) if r.finished is not None), key=lambda r: r.finished):
        if rec.val_accuracy > best:
            best = rec.val_accuracy
            curve.append((rec.finished - first, best, rec.number))
    return curve


def best_record(records: Sequence[TrialRecord], replays: bool = False) -> TrialRecord | None:
    """The single-run best: the candidate with the highest validation accuracy (ties go to the earlier trial, so a
    baseline wins a tie against a search result); ``None`` without candidates. Where a study may hold re-evaluation
    runs, ask ``best_trial``."""
    done = candidates(records, replays)
    if not done:
        return None
    return max(done, key=lambda r: (r.val_accuracy, -r.number))


# The trial attribute each second objective reads (``search --objective accuracy,KEY``).
SIZE_ATTRS = {"params": "n_params", "latency": "latency_ms"}


def pareto_front(records: Sequence[TrialRecord], objective: str = "params") -> list[TrialRecord]:
    """The completed, non-replay trials no other trial beats on both validation accuracy (higher) and size or
    latency (lower), smallest first; trials without the measure are left out. Ties keep the earlier trial."""
    attr = SIZE_ATTRS[objective]
    pool = [r for r in candidates(records) if getattr(r, attr) is not None]
    pool.sort(key=lambda r: (getattr(r, attr), -r.val_accuracy, r.number))
    front: list[TrialRecord] = []
    for r in pool:
        if not front or r.val_accuracy > front[-1].val_accuracy:
            front.append(r)
    return front


def is_done(rec: TrialRecord) -> bool:
    """Whether a stored replay run needs no rerun.

    Complete runs count, and so do diverged ones: a NaN loss is an outcome of that config and seed (the study's own
    BaseNet diverged once), and the same seed would diverge again. Interrupted, crashed (``fail`` for another
    reason) and orphaned ``running`` trials are rerun.
    """
    return rec.state == "complete" or rec.kind is FailureKind.DIVERGED


def pct(v: float | None) -> float | None:
    """An accuracy in [0, 1] as percent."""
    return None if v is None else 100.0 * float(v)


@dataclass
class SeedStats:
    """One configuration over several seeds.

    Attributes:
        runs: completed runs among the wanted seeds; ``seeds`` their seeds, ``trials`` their trial numbers.
        diverged: wanted seeds whose run diverged (NaN loss) and never completed.
        val_mean, val_std, test_mean, test_std: in percent over the completed runs (std needs two runs).
    """

    runs: int
    diverged: int
    val_mean: float | None
    val_std: float | None
    test_mean: float | None
    test_std: float | None
    seeds: list[int] = field(default_factory=list)
    trials: list[int] = field(default_factory=list)


def seed_stats(records: Sequence[TrialRecord], seeds: Sequence[int]) -> SeedStats:
    """Statistics of the runs of one configuration (``records``, already filtered to it) over ``seeds``.

    Per seed the earliest finished run counts, and a later complete run replaces a diverged one; runs that are
    not done (interrupted, crashed, orphaned) are ignored.
    """
    wanted = set(seeds)
    per_seed: dict[int, TrialRecord] = {}
    for rec in sorted(records, key=lambda r: r.number):
        if rec.seed not in wanted or not is_done(rec):
            continue
        known = per_seed.get(rec.seed)
        if known is None or (known.state != "complete" and rec.state == "complete"):
            per_seed[rec.seed] = rec
    complete = [per_seed[s] for s in seeds if s in per_seed and per_seed[s].state == "complete"]
    val_mean, val_std = mean_std([pct(r.val_accuracy) for r in complete])
    test_mean, test_std = mean_std([pct(r.test_accuracy) for r in complete])
    return SeedStats(
        runs=len(complete), diverged=sum(1 for r in per_seed.values() if r.state != "complete"),
        val_mean=val_mean, val_std=val_std, test_mean=test_mean, test_std=test_std,
        seeds=[int(r.seed) for r in complete], trials=[r.number for r in complete],
    )


def mean_std(values: Sequence[float | None]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (``ddof=1``, ``None`` below two values) of the non-missing values."""
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return None, None
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else None)


def diff_se(std_a: float | None, n_a: int, std_b: float | None, n_b: int) -> float | None:
    """Standard error of the difference of two means (unpaired), or ``None`` when a spread is unknown."""
    if std_a is None or std_b is None or n_a < 2 or n_b < 2:
        return None
    return (std_a ** 2 / n_a + std_b ** 2 / n_b) ** 0.5


# New seeds are original + k * stride (k = 1..S): never the original seed, and clear of the seeds ``search`` gives
# its trials (seed + trial number) for any study under 10,000 trials. Fixed per trial, so a rerun finds its runs.
REEVAL_SEED_STRIDE = 10_000


@dataclass(kw_only=True)
class ReevalRow(SeedStats):
    """One configuration: its original single run and its re-evaluation (accuracies in percent).

    The statistics of the re-evaluation runs (``runs``, ``diverged``, means and spreads, ``seeds``, ``trials``)
    are ``SeedStats``'s.

    Attributes:
        rank: position by mean validation accuracy of the new runs (1 = best).
        original_rank: position by the original single run.
        trial: the original trial's number.
        baseline: the baseline name when the original trial was a baseline.
        params: the configuration.
        original_val, original_test, original_seed: the original run.
    """

    rank: int
    original_rank: int
    trial: int
    baseline: str | None
    params: dict[str, Any]
    original_val: float | None
    original_test: float | None
    original_seed: int | None


def config_key(params: dict[str, Any]) -> str:
    """One string per distinct configuration (key order does not matter)."""
    return json.dumps(params, sort_keys=True)


def reeval_seeds(rec: TrialRecord, count: int) -> list[int]:
    """The ``count`` new seeds of a trial: its seed plus multiples of ``REEVAL_SEED_STRIDE``."""
    base = int(rec.seed if rec.seed is not None else rec.number)
    return [base + REEVAL_SEED_STRIDE * k for k in range(1, int(count) + 1)]


def top_configs(records: Sequence[TrialRecord], k: int) -> list[TrialRecord]:
    """The best trial of each of the ``k`` best distinct configurations, by validation accuracy.

    The candidates are ``best``'s (``tuner.store.candidates``: no replays); ties go to the earlier trial.
    """
    done = candidates(records)
    seen: set[str] = set()
    top = []
    for rec in sorted(done, key=lambda r: (-r.val_accuracy, r.number)):
        key = config_key(rec.params)
        if key in seen:
            continue
        seen.add(key)
        top.append(rec)
        if len(top) == k:
            break
    return top


def rank_configs(candidates: Sequence[TrialRecord], records: Sequence[TrialRecord],
                 seeds: int) -> list[ReevalRow]:
    """Ranks candidates by the mean validation accuracy of their re-evaluation runs (those without any last).

    Args:
        candidates: the original trials, best first.
        records: all trials of the study (the re-evaluation runs among them).
        seeds: how many new seeds count per candidate.
    """
    rows = []
    for original_rank, cand in enumerate(candidates, start=1):
        wanted = reeval_seeds(cand, seeds)
        runs = [r for r in records if r.tags.get("reeval_of") == cand.number]
        rows.append(ReevalRow(
            rank=0, original_rank=original_rank, trial=cand.number, baseline=cand.baseline, params=dict(cand.params),
            original_val=pct(cand.val_accuracy), original_test=pct(cand.test_accuracy), original_seed=cand.seed,
            **asdict(seed_stats(runs, list(wanted))),
        ))
    rows.sort(key=lambda r: (r.val_mean is None, -(r.val_mean or 0.0), r.original_rank))
    for rank, row in enumerate(rows, start=1):
        row.rank = rank
    return rows


def best_trial(records: Sequence[TrialRecord]) -> tuple[TrialRecord | None, ReevalRow | None]:
    """The study's best trial, and how it was picked: the one rule that ``search``, ``trials``, ``best``, ``export``,
    ``report`` and the search strategy ask.

    When the study holds re-evaluation runs (``best --reeval``, or a search's ``--reeval-share``), the best is the
    re-evaluated configuration with the highest mean validation accuracy over its new seeds, and its ``ReevalRow`` is
    returned with it; otherwise the single-run best (``best_record``) and ``None``.
    """
    reevaluated = {r.tags["reeval_of"] for r in records if r.tags.get("reeval_of") is not None}
    pool = sorted((r for r in candidates(records) if r.number in reevaluated),
                  key=lambda r: (-r.val_accuracy, r.number))
    if pool:
        seeds = max(sum(1 for r in records if r.tags.get("reeval_of") == c.number) for c in pool)
        rows = rank_configs(pool, records, seeds)
        if rows[0].val_mean is not None:
            return next(r for r in pool if r.number == rows[0].trial), rows[0]
    return best_record(records), None
