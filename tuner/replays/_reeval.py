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

from dataclasses import dataclass, field
from typing import Any

from tuner.errors import CnntuneError, StorageError
from tuner.experiment import from_meta, load_data, trial_config
from tuner.options import DEFAULT_REEVAL_TOP, MAX_REEVAL_SEEDS, SearchOptions, stored_record
from tuner.records import Display, TrialRecord
from tuner.replays._replay import ReplayRun, run_replays
from tuner.store import (Artifacts, ReevalRow, diff_se, is_done, open_study, rank_configs, read_records, reeval_seeds,
                         study_meta, top_configs)
from tuner.tracking import tracked
from tuner.trial import Runner

__all__ = ["ReevalReport", "reevaluate"]

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


def reevaluate(
    *,
    study: str | None = None,
    storage: str | None = None,
    top: int = DEFAULT_REEVAL_TOP,
    seeds: int = MAX_REEVAL_SEEDS,
    display: Display | None = None,
    runner: Runner | None = None,
    track: bool = True,
) -> ReevalReport:
    """Retrains the top ``top`` distinct configurations with ``seeds`` new seeds each and ranks them by the mean.

    Args:
        study: study name; default the only study in the storage.
        storage: Optuna storage URL.
        top: how many configurations (distinct, best by validation accuracy).
        seeds: new seeds per configuration.
        display: receives progress; default shows nothing.
        runner: trains one configuration; default ``tuner.trial.run_trial``.
        track: log the runs to the study's MLflow server and TensorBoard folder (``--track``, ``--tensorboard``),
            when it has them; ``False`` where ``display`` logs them already (a search's re-evaluation phase).

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
    records = read_records(st, url=url)
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
        art = Artifacts.of(meta, url, st.study_name).check()  # before the data is loaded
        # the study's options (isolation, precision, JIT, device data): its top configurations retrain as they were
        # searched, and go where its trials were tracked
        options = SearchOptions.from_meta(meta, st.study_name) if stored_record(meta) else None
        if track and options is not None:
            display = tracked(display, track=options.track, tensorboard=options.tensorboard, study=st.study_name,
                              role="reeval", defaults=trial_config(exp.space, exp.pins))
        data = load_data(exp, skip_bad_images=bool(meta.get("skip_bad_images", False)))
        display.search_begin(study=st.study_name, space=exp.space_name, data=exp.data.label(), trials=len(runs),
                             baselines=0)
        try:
            ran = run_replays(st, exp, data, art, runs, display, runner, options)
        finally:
            display.search_end()
        records = read_records(st, url=url)
    rows = rank_configs(candidates, records, seeds)
    report = ReevalReport(study=st.study_name, meta=meta, seeds=int(seeds), rows=rows, ran=ran)
    if len(rows) > 1 and rows[0].val_mean is not None and rows[1].val_mean is not None:
        report.lead_pp = rows[0].val_mean - rows[1].val_mean
        report.lead_se_pp = diff_se(rows[0].val_std, rows[0].runs, rows[1].val_std, rows[1].runs)
    return report
