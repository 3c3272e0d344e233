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

from tuner.options import SearchOptions
from tuner.records import Display, TrialRecord
from tuner.signals import interruptible
from tuner.store import Artifacts, start_trial
from tuner.trial import Objective, Runner

__all__ = ["ReplayRun", "run_replays"]


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


def run_replays(study_obj, exp, data, artifacts: Artifacts, runs: Sequence[ReplayRun], display: Display,
                runner: Runner | None = None, options: SearchOptions | None = None) -> list[TrialRecord]:
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
        runner: trains one configuration; default ``tuner.trial.run_trial``.
        options: how the runs train (``--isolate``, ``--mixed-precision``, ``--jit``, ``--device-data``): the
            study's stored options, so that a replay trains as the trials it repeats did; default: the defaults.
    """
    from optuna.trial import TrialState

    options = (options or SearchOptions()).replace(seed=0, objective=None)  # each run has its own seed
    objective = Objective.of(options, exp, data, artifacts, display, runner)
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
