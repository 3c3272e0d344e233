"""Noise-aware best: retrain the top configurations of a study with new seeds and rank them by the mean.

One run's validation accuracy is a noisy number (the study's own BaseNet moved 9 points between two runs), and the
best of many trials is the one whose noise happened to be high. ``reevaluate`` takes the top K distinct
configurations by validation accuracy, trains each with S seeds it has not used yet, and ranks them by the mean
validation accuracy of those new runs. The original run is shown but left out of the mean: it was selected for
being high, so including it would bias the mean of the winner upwards (the winner's curse).

Each run is a trial of the same study tagged ``reeval_of: <trial number>`` and ``seed``; rerunning reuses the
completed ones, so an interrupted re-evaluation resumes and a larger ``--seeds`` only adds runs. Nothing here prints.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

from tuner._replay import ReplayRun, SeedStats, diff_se, is_done, pct, run_replays, seed_stats
from tuner.errors import CnntuneError, StorageError
from tuner.accel import accel_of
from tuner.experiment import from_meta, load_data
from tuner.objective import Runner
from tuner.plan import Artifacts
from tuner.records import Display, TrialRecord
from tuner.study import best_record, candidates, open_study, read_records, study_meta

__all__ = ["REEVAL_SEED_STRIDE", "ReevalReport", "ReevalRow", "config_key", "pick", "rank_configs", "reeval_seeds",
           "reevaluate", "top_configs"]

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


@dataclass
class ReevalReport:
    """What ``reevaluate`` returns.

    Attributes:
        rows: ranked by mean validation accuracy of the new runs.
        lead_pp: winner's mean minus the runner-up's, in percentage points.
        lead_se_pp: standard error of that lead (needs two runs per config).
        ran: the runs this call trained.
    """

    study: str
    meta: dict[str, Any]
    seeds: int
    rows: list[ReevalRow]
    lead_pp: float | None = None
    lead_se_pp: float | None = None
    ran: list[TrialRecord] = field(default_factory=list)

    @property
    def winner(self) -> ReevalRow | None:
        return self.rows[0] if self.rows and self.rows[0].val_mean is not None else None


def config_key(params: dict[str, Any]) -> str:
    """One string per distinct configuration (key order does not matter)."""
    return json.dumps(params, sort_keys=True)


def reeval_seeds(rec: TrialRecord, count: int) -> list[int]:
    """The ``count`` new seeds of a trial: its seed plus multiples of ``REEVAL_SEED_STRIDE``."""
    base = int(rec.seed if rec.seed is not None else rec.number)
    return [base + REEVAL_SEED_STRIDE * k for k in range(1, int(count) + 1)]


def top_configs(records: Sequence[TrialRecord], k: int) -> list[TrialRecord]:
    """The best trial of each of the ``k`` best distinct configurations, by validation accuracy.

    The candidates are ``best``'s (``tuner.study.candidates``: no replays); ties go to the earlier trial.
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


def pick(records: Sequence[TrialRecord]) -> tuple[TrialRecord | None, ReevalRow | None]:
    """The trial ``best`` reports and exports, and how it was picked.

    When the study holds re-evaluation runs (``best --reeval``, or a search's ``--reeval-share``), the pick is the
    re-evaluated configuration with the highest mean validation accuracy over its new seeds, and its ``ReevalRow`` is
    returned with it; otherwise the single-run best (``tuner.study.best_record``) and ``None``.
    """
    reevaluated = {r.tags["reeval_of"] for r in records if r.tags.get("reeval_of") is not None}
    pool = sorted((r for r in candidates(records) if r.number in reevaluated), key=lambda r: (-r.val_accuracy, r.number))
    if pool:
        seeds = max(sum(1 for r in records if r.tags.get("reeval_of") == c.number) for c in pool)
        rows = rank_configs(pool, records, seeds)
        if rows[0].val_mean is not None:
            return next(r for r in pool if r.number == rows[0].trial), rows[0]
    return best_record(records), None


def reevaluate(
    *,
    study: str | None = None,
    storage: str | None = None,
    top: int = 3,
    seeds: int = 3,
    display: Display | None = None,
    runner: Runner | None = None,
) -> ReevalReport:
    """Retrains the top ``top`` distinct configurations with ``seeds`` new seeds each and ranks them by the mean.

    Args:
        study: study name; default the only study in the storage.
        storage: Optuna storage URL.
        top: how many configurations (distinct, best by validation accuracy).
        seeds: new seeds per configuration.
        display: receives progress; default shows nothing.
        runner: trains one configuration; default ``tuner.runner.run_trial``.

    Returns:
        A ``ReevalReport`` ranked by mean validation accuracy over the new runs.

    Raises:
        CnntuneError: ``top`` or ``seeds`` below 1, an unknown study, a study without completed trials.
    """
    display = display or Display()
    if top < 1:
        raise CnntuneError(f"--reeval must be at least 1 (how many top configurations to retrain). Received: {top}")
    if seeds < 1:
        raise CnntuneError(f"--seeds must be at least 1. Received: {seeds}")
    url, st = open_study(storage, study)
    meta = study_meta(st)
    records = read_records(st)
    candidates = top_configs(records, top)
    if not candidates:
        raise StorageError(f"study {st.study_name!r} has no completed trial yet; run `cnntune search` first")
    if not meta.get("space"):
        raise StorageError(f"study {st.study_name!r} was not made by cnntune (no space recorded); cannot retrain it")
    done = {(r.tags.get("reeval_of"), r.seed) for r in records if r.tags.get("reeval_of") is not None and is_done(r)}
    runs = [ReplayRun(cand.params, s, {"reeval_of": cand.number})
            for cand in candidates for s in reeval_seeds(cand, seeds) if (cand.number, s) not in done]
    ran: list[TrialRecord] = []
    if runs:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.ERROR)
        exp = from_meta(meta)
        data = load_data(exp, skip_bad_images=bool(meta.get("skip_bad_images", False)))
        display.search_begin(study=st.study_name, space=exp.space_name, data=exp.data.label(), trials=len(runs),
                             baselines=0)
        try:
            # the study's precision and JIT: its top configurations retrain as they were searched
            ran = run_replays(st, exp, data, Artifacts.of(meta, url, st.study_name), runs, display, runner,
                              accel=accel_of(meta.get("settings")))
        finally:
            display.search_end()
        records = read_records(st)
    rows = rank_configs(candidates, records, seeds)
    report = ReevalReport(study=st.study_name, meta=meta, seeds=int(seeds), rows=rows, ran=ran)
    if len(rows) > 1 and rows[0].val_mean is not None and rows[1].val_mean is not None:
        report.lead_pp = rows[0].val_mean - rows[1].val_mean
        report.lead_se_pp = diff_se(rows[0].val_std, rows[0].runs, rows[1].val_std, rows[1].runs)
    return report
