"""Pruners of the Optuna engine: stop unpromising trials after an epoch, keeping what they measured.

Each trial reports its validation accuracy after every epoch as step = the epoch number, counted from 1
(``tuner.objective.EpochPruning``); the pruner compares it with other trials at the same epoch and
``trial.should_prune()`` stops training. A pruned trial keeps its history and its best-so-far validation accuracy, and
shows as ``pruned``. Baselines are never pruned: they are the yardstick.
"""

from __future__ import annotations

from tuner.errors import CnntuneError

__all__ = ["MEDIAN_WARMUP_EPOCHS", "MIN_EPOCHS", "PRUNERS", "REDUCTION_FACTOR", "make_pruner"]

PRUNERS = ("none", "median", "asha", "hyperband")
# The first epoch at which ASHA and Hyperband may stop a trial; rungs follow at x4, x16, ... (reduction factor 4).
# 2, not 1: on the 50-class birds at 32 px, first-epoch accuracy ranked configurations by noise, and ASHA from
# epoch 1 lost the best configuration on 2 of 3 seeds (BENCHMARKS.md); from epoch 2 it kept it on all three.
# 4, not 3: with 15-epoch trials (BaseNet's length) factor 4 trained 46% of the epochs for a best validation
# accuracy 0.8 points under no pruning (noise: +-2.5), factor 3 trained 52% (BENCHMARKS.md).
MIN_EPOCHS = 2
REDUCTION_FACTOR = 4
# The median pruner never stops a trial in its first epoch. Optuna skips steps *below* ``n_warmup_steps`` and
# cnntune's steps are epoch numbers counted from 1, so one warm-up epoch is ``n_warmup_steps=2``.
MEDIAN_WARMUP_EPOCHS = 1


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
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=MEDIAN_WARMUP_EPOCHS + 1)
    if name == "asha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=MIN_EPOCHS, reduction_factor=REDUCTION_FACTOR)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=MIN_EPOCHS, reduction_factor=REDUCTION_FACTOR)
    raise CnntuneError(f"unknown pruner {name!r}; valid: {', '.join(PRUNERS)}")
