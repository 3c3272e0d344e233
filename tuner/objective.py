"""The trial objective: run one configuration and record it, the same way for both engines and for replays.

``Objective(trial, params, attrs)`` trains ``params`` with the trial runner and writes what it measured into the
trial's user attributes; it maps every way a trial can end to one record:

* completed: ``val_accuracy``, ``test_accuracy``, ``n_params``, ``history``, ``best_epoch``, ``epochs_run``,
  ``seconds``, ``model_path``, ``backend`` (and the runner's extras, e.g. ``feature_cache``); returns the validation
  accuracy;
* pruned: the same, plus ``fail_reason = "pruned at epoch N"``; raises ``optuna.TrialPruned``;
* diverged: ``fail_reason = "diverged at epoch N"`` and the history so far; re-raises;
* Ctrl-C / SIGTERM: ``fail_reason = "interrupted"``; re-raises (the study resumes by retrying it);
* any other exception: ``fail_reason = fail_reason(exc)``; re-raises (the engine records the trial as failed).

``trial`` is an Optuna trial or anything with ``number``, ``set_user_attr``, ``report`` and ``should_prune`` (the
Keras Tuner engine records through one). ``attrs`` are the trial's identifying attributes: ``baseline``,
``seed`` (a replay's own seed), ``initial_epoch`` and ``continue_from`` (a Hyperband round continuing an earlier one).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from tuner._signals import raise_if_interrupted
from tuner.experiment import Experiment
from tuner.records import Display
from tuner.runner import TrialDiverged, fit_options, run_trial
from tuner.study import jsonable

__all__ = ["EpochPruning", "Objective", "Runner", "fail_reason"]

# The function that trains one configuration: ``tuner.runner.run_trial`` or anything with its signature (a custom
# training loop, a test double).
Runner = Callable[..., Any]
_REASON_CHARS = 500


class EpochPruning:
    """The runner's ``on_epoch``/``should_stop`` hooks for one trial: report each epoch, stop when pruned.

    Steps are epoch numbers counted from 1 (``tuner.engines.make_pruner`` sets its warm-up accordingly).

    Args:
        trial: the running ``optuna.trial.Trial`` (or any object with ``report`` and ``should_prune``).
        enabled: ``False`` reports nothing and never stops (baselines, ``--pruner none``).
        epochs: the trial's epochs; the last one is never "pruned" (the trial is complete by then).
        then: called after each epoch with ``(epoch, logs)`` (progress display).
    """

    def __init__(self, trial, enabled: bool, epochs: int,
                 then: Callable[[int, dict[str, float]], None] | None = None):
        self.trial = trial
        self.enabled = enabled
        self.epochs = epochs
        self.then = then
        self.pruned_at: int | None = None

    def on_epoch(self, epoch: int, logs: dict[str, float]) -> None:
        if self.then is not None:
            self.then(epoch, logs)
        if self.enabled:
            value = logs.get("val_accuracy", logs.get("accuracy"))
            if value is not None:
                self.trial.report(float(value), epoch)

    def should_stop(self, epoch: int, logs: dict[str, Any]) -> bool:
        if self.enabled and epoch < self.epochs and self.trial.should_prune():
            self.pruned_at = epoch
            return True
        return False


def fail_reason(exc: BaseException) -> str:
    """The one line a failed trial records: ``Type: first line of the message`` (at most 500 characters)."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:_REASON_CHARS]


class Objective:
    """Runs one configuration of an experiment as a trial and records it.

    Args:
        exp: the experiment (space, pins, run options).
        data: the loaded ``Dataset``.
        model_dir: folder of the trials' model files (``trial_NNNN.keras``).
        feature_cache: folder of cached backbone features (spaces with a frozen backbone).
        seed: searched trial ``n`` trains with ``seed + n``; a replay carries its own seed in ``attrs``.
        display: receives progress.
        prune: report each epoch's validation accuracy and stop when the trial's pruner says so.
        engine: recorded as the trial's ``engine`` attribute when not the default one.
        runner: trains one configuration; default ``tuner.runner.run_trial``.
    """

    def __init__(self, exp: Experiment, data, *, model_dir: Path, feature_cache: Path, seed: int, display: Display,
                 prune: bool = False, engine: str | None = None, runner: Runner | None = None):
        self.exp = exp
        self.data = data
        self.model_dir = Path(model_dir)
        self.feature_cache = Path(feature_cache)
        self.seed = int(seed)
        self.display = display
        self.prune = prune
        self.engine = engine
        self.runner = runner or run_trial

    def model_path(self, number: int) -> Path:
        return self.model_dir / f"trial_{number:04d}.keras"

    def __call__(self, trial, params: dict[str, Any], attrs: dict[str, Any]) -> float:
        raise_if_interrupted()  # a Ctrl-C the garbage collector swallowed between trials
        trial_seed = int(attrs["seed"]) if attrs.get("seed") is not None else self.seed + trial.number
        trial.set_user_attr("seed", trial_seed)
        trial.set_user_attr("config", jsonable(params))
        if self.engine:
            trial.set_user_attr("engine", self.engine)
        epochs = fit_options(params).epochs
        display = self.display
        display.trial_begin(number=trial.number, params=params, baseline=attrs.get("baseline"), epochs=epochs)

        def on_epoch(epoch: int, logs: dict[str, float]) -> None:
            display.epoch_end(number=trial.number, epoch=epoch, epochs=epochs, logs=logs)

        pruning = EpochPruning(trial, self.prune and not attrs.get("baseline"), epochs, then=on_epoch)
        continued = {k: attrs[k] for k in ("initial_epoch", "continue_from") if attrs.get(k) is not None}
        try:
            out = self.runner(self.exp.space, params, self.data, seed=trial_seed,
                              model_path=self.model_path(trial.number), on_epoch=pruning.on_epoch,
                              should_stop=pruning.should_stop, spec_options=self.exp.options,
                              feature_cache=self.feature_cache, **continued)
        except TrialDiverged as exc:
            trial.set_user_attr("fail_reason", str(exc))
            trial.set_user_attr("history", exc.history)
            raise
        except KeyboardInterrupt:
            trial.set_user_attr("fail_reason", "interrupted")
            raise
        except Exception as exc:
            trial.set_user_attr("fail_reason", fail_reason(exc))
            raise
        for key, value in (
            ("val_accuracy", out.val_accuracy),
            ("test_accuracy", out.test_accuracy),
            ("n_params", out.n_params),
            ("history", out.history),
            ("best_epoch", out.best_epoch),
            ("epochs_run", out.epochs_run),
            ("seconds", round(out.seconds, 3)),
            ("model_path", out.model_path),
            ("backend", out.backend),
            *out.extra.items(),  # e.g. feature_cache: hit|built|off and feature_seconds
        ):
            trial.set_user_attr(key, value)
        if pruning.pruned_at is not None:
            import optuna  # only the Optuna engine prunes

            trial.set_user_attr("fail_reason", f"pruned at epoch {pruning.pruned_at}")
            raise optuna.TrialPruned(f"pruned at epoch {pruning.pruned_at}")
        return out.val_accuracy
