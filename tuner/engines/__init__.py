"""Search engines. ``optuna`` is the default; each returns data and reports progress to a display."""

from tuner.engines._optuna import SAMPLERS, OptunaHP, SearchPlan, make_sampler, optimize, trial_config, tunable

__all__ = ["SAMPLERS", "OptunaHP", "SearchPlan", "make_sampler", "optimize", "trial_config", "tunable"]
