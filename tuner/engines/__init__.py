"""Search engines. ``optuna`` is the default, ``keras_tuner`` the other; each returns data and reports progress to a
display. Importing this package imports neither Keras nor Keras Tuner."""

from tuner.engines._keras_tuner import TUNERS, KTPlan
from tuner.engines._optuna import (
    SAMPLERS,
    OptunaHP,
    SearchPlan,
    grid_values,
    make_sampler,
    optimize,
    trial_config,
    tunable,
)
from tuner.engines._pruning import PRUNERS, EpochPruning, make_pruner

__all__ = [
    "PRUNERS",
    "SAMPLERS",
    "TUNERS",
    "EpochPruning",
    "KTPlan",
    "OptunaHP",
    "SearchPlan",
    "grid_values",
    "make_pruner",
    "make_sampler",
    "optimize",
    "trial_config",
    "tunable",
]
