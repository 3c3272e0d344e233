"""Pruners of the Optuna engine: stop unpromising trials after an epoch, keeping what they measured.

Each trial reports its validation accuracy after every epoch as step = the epoch number, counted from 1
(``tuner.trial.EpochPruning``); the pruner compares it with other trials at the same epoch and
``trial.should_prune()`` stops training. A pruned trial keeps its history and its best-so-far validation accuracy, and
shows as ``pruned``. Baselines are never pruned: they are the yardstick.
"""

from __future__ import annotations

from tuner.errors import CnntuneError
from tuner.options import PRUNERS

__all__ = ["FIRST_RUNG_SHARE", "MEDIAN_WARMUP_EPOCHS", "MIN_EPOCHS", "REDUCTION_FACTOR", "first_rung", "make_pruner"]

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
# With epochs as the fidelity (every trial may train up to max_epochs), the first rung sits at an eighth of the
# maximum, and never before MIN_EPOCHS. On the improved space (max 50) at 32 px on the shared birds, the rank
# correlation of epoch-k with final validation accuracy was 0.60 at epoch 2 and 0.83 at epoch 6 (BENCHMARKS.md).
FIRST_RUNG_SHARE = 1 / 8


def first_rung(max_epochs: int | None) -> int:
    """The first epoch at which ASHA and Hyperband may stop a trial."""
    if max_epochs is None:
        return MIN_EPOCHS
    return max(MIN_EPOCHS, int(max_epochs * FIRST_RUNG_SHARE))


def make_pruner(name: str, max_epochs: int | None = None):
    """An Optuna pruner by name.

    * ``none``: every trial trains all its epochs.
    * ``median``: stops a trial whose accuracy is below the median of earlier trials at the same epoch
      (after 3 finished trials, never in the first epoch).
    * ``asha``: asynchronous successive halving; rungs at epochs r, 4r, 16r, ... (``r = first_rung(max_epochs)``:
      2, or an eighth of the epochs fidelity), keeps the top quarter at each.
    * ``hyperband``: several successive-halving brackets of different aggressiveness, from the same first rung.

    Args:
        max_epochs: the epochs fidelity (the most a trial may train), when epochs are not searched.

    Raises:
        CnntuneError: an unknown name.
    """
    import optuna

    if name == "none":
        return optuna.pruners.NopPruner()
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=MEDIAN_WARMUP_EPOCHS + 1)
    rung = first_rung(max_epochs)
    if name == "asha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=rung, reduction_factor=REDUCTION_FACTOR)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=rung, max_resource=max_epochs or "auto",
                                              reduction_factor=REDUCTION_FACTOR)
    raise CnntuneError(f"unknown pruner {name!r}; valid: {', '.join(PRUNERS)}")
