"""Pruners of the Optuna engine: stop unpromising trials after an epoch, keeping what they measured.

Each trial reports its validation accuracy after every epoch (``trial.report``); the pruner compares it with
other trials at the same epoch and ``trial.should_prune()`` stops training. A pruned trial keeps its history and
its best-so-far validation accuracy, and shows as ``pruned``. Baselines are never pruned: they are the yardstick.
"""

from __future__ import annotations

from typing import Any, Callable

from tuner._errors import CnntuneError

__all__ = ["MIN_EPOCHS", "PRUNERS", "REDUCTION_FACTOR", "EpochPruning", "make_pruner"]

PRUNERS = ("none", "median", "asha", "hyperband")
# The first epoch at which ASHA and Hyperband may stop a trial; rungs follow at x4, x16, ... (reduction factor 4).
# 2, not 1: on the 50-class birds at 32 px, first-epoch accuracy ranked configurations by noise, and ASHA from
# epoch 1 lost the best configuration on 2 of 3 seeds (BENCHMARKS.md); from epoch 2 it kept it on all three.
# 4, not 3: with 15-epoch trials (BaseNet's length) factor 4 trained 46% of the epochs for a best validation
# accuracy 0.8 points under no pruning (noise: +-2.5), factor 3 trained 52% (BENCHMARKS.md).
MIN_EPOCHS = 2
REDUCTION_FACTOR = 4


def make_pruner(name: str):
    """An Optuna pruner by name.

    * ``none``: every trial trains all its epochs.
    * ``median``: stops a trial whose accuracy is below the median of earlier trials at the same epoch
      (after 3 finished trials, never in the first epoch).
    * ``asha``: asynchronous successive halving; rungs at epochs 2, 8, 32, ..., keeps the top quarter at each.
    * ``hyperband``: several successive-halving brackets of different aggressiveness.

    Raises:
        CnntuneError: an unknown name.
    """
    import optuna

    if name == "none":
        return optuna.pruners.NopPruner()
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1)
    if name == "asha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=MIN_EPOCHS, reduction_factor=REDUCTION_FACTOR)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=MIN_EPOCHS, reduction_factor=REDUCTION_FACTOR)
    raise CnntuneError(f"unknown pruner {name!r}; valid: {', '.join(PRUNERS)}")


class EpochPruning:
    """The runner's ``on_epoch``/``should_stop`` hooks for one Optuna trial.

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
