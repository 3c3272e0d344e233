"""Runs known configurations with given seeds as trials of a study: the engine of ``reproduce`` and ``--reeval``.

A replayed run is not sampled: its configuration and seed are fixed by what it repeats (a baseline and a seed, or a
trial and a new seed). It is therefore run through Optuna's ask/tell interface rather than enqueued:

* ``enqueue_trial`` leaves ``waiting`` trials behind when a run is interrupted, and any later ``optimize`` on the
  same study (a ``cnntune search`` or ``worker``) would consume them as ordinary trials;
* the sampler has nothing to decide, so it is never consulted;
* a pair is done exactly when the store holds a finished trial carrying its tags, which is all resume needs.

Trials are created directly in the storage instead of with ``Study.ask()``, because ``ask()`` first pops any
waiting trial of the study, and would run a search's enqueued baseline under the replay's tags.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from tuner._signals import interruptible
from tuner.engines import start_trial
from tuner.objective import Objective, Runner
from tuner.plan import Artifacts
from tuner.records import Display, TrialRecord

__all__ = ["ReplayRun", "SeedStats", "diff_se", "is_done", "mean_std", "pct", "run_replays", "seed_stats"]


@dataclass(frozen=True)
class ReplayRun:
    """One configuration to train with one seed.

    Attributes:
        params: the resolved configuration (every active choice point).
        seed: the training seed.
        attrs: user attributes that identify the run in the store (``reproduce``/``baseline`` or ``reeval_of``).
    """

    params: dict[str, Any]
    seed: int
    attrs: dict[str, Any] = field(default_factory=dict)


def is_done(rec: TrialRecord) -> bool:
    """Whether a stored replay run needs no rerun.

    Complete runs count, and so do diverged ones: a NaN loss is an outcome of that config and seed (the study's own
    BaseNet diverged once), and the same seed would diverge again. Interrupted, crashed (``fail`` for another
    reason) and orphaned ``running`` trials are rerun.
    """
    return rec.state == "complete" or (rec.state == "fail" and (rec.reason or "").startswith("diverged"))


def run_replays(study_obj, exp, data, artifacts: Artifacts, runs: Sequence[ReplayRun], display: Display,
                runner: Runner | None = None, accel: dict[str, Any] | None = None) -> list[TrialRecord]:
    """Trains each run as a new trial of ``study_obj`` and records it; returns the finished trials.

    A run that raises is recorded as failed with its reason and the next run goes on; Ctrl-C records the current
    run as failed (``interrupted``) and stops, so rerunning the same command resumes.

    Args:
        study_obj: the ``optuna.Study`` to record into.
        exp: the ``Experiment`` (space and pins).
        data: the loaded ``Dataset``.
        artifacts: where the model files and cached features go.
        runs: what to train.
        display: progress receiver.
        runner: trains one configuration; default ``tuner.runner.run_trial``.
        accel: the runner's ``precision``/``jit`` keywords (``tuner.accel.accel_of``).
    """
    from optuna.trial import TrialState

    objective = Objective(exp, data, model_dir=artifacts.root, feature_cache=artifacts.feature_cache, seed=0,
                          display=display, runner=runner, accel=accel)
    done: list[TrialRecord] = []
    with interruptible():
        for run in runs:
            trial = start_trial(study_obj)
            attrs = {**run.attrs, "seed": int(run.seed)}
            for key, value in attrs.items():
                trial.set_user_attr(key, value)
            try:
                value = objective(trial, dict(run.params), attrs)
            except KeyboardInterrupt:
                study_obj.tell(trial, state=TrialState.FAIL)
                raise
            except Exception:  # the objective recorded the reason; one bad run must not end the others
                frozen = study_obj.tell(trial, state=TrialState.FAIL)
            else:
                frozen = study_obj.tell(trial, value)
            rec = TrialRecord.from_trial(frozen)
            display.trial_end(rec)
            done.append(rec)
    return done


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
    import statistics

    vals = [float(v) for v in values if v is not None]
    if not vals:
        return None, None
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else None)


def diff_se(std_a: float | None, n_a: int, std_b: float | None, n_b: int) -> float | None:
    """Standard error of the difference of two means (unpaired), or ``None`` when a spread is unknown."""
    if std_a is None or std_b is None or n_a < 2 or n_b < 2:
        return None
    return (std_a ** 2 / n_a + std_b ** 2 / n_b) ** 0.5
