"""The Optuna engine: spaces written in the Keras Tuner vocabulary, sampled by Optuna.

``OptunaHP`` maps each ``Choice/Int/Float/Boolean`` call onto ``trial.suggest_*``; pinned and ``Fixed`` values are
recorded but never suggested, so samplers do not vary them. Baselines are enqueued trials carrying their name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from tuner._errors import SpaceError
from tuner.hp import Boolean, Choice, Defaults, Fixed, Float, HyperParameters, Int, Param, describe, resolve

__all__ = ["OptunaHP", "SearchPlan", "grid_values", "make_sampler", "optimize", "trial_config"]

SAMPLERS = ("tpe", "random", "grid")


class OptunaHP(HyperParameters):
    """The Keras Tuner vocabulary on top of an Optuna trial.

    Args:
        trial: the ``optuna.trial.Trial`` being run.
        pins: values the user fixed on the command line; never suggested.
        given: values of non-tunable choices for this trial (a baseline's), used where Optuna is not asked.
    """

    def __init__(self, trial, pins: Mapping[str, Any] | None = None, given: Mapping[str, Any] | None = None):
        super().__init__()
        self.trial = trial
        self.pins = dict(pins or {})
        self.given = dict(given or {})

    def _value(self, param: Param) -> Any:
        if param.name in self.pins:
            return self.pins[param.name]
        if isinstance(param, Fixed) or not param.is_tunable:
            return self.given.get(param.name, param.default)
        t = self.trial
        if isinstance(param, Choice):
            return t.suggest_categorical(param.name, list(param.values))
        if isinstance(param, Boolean):
            return t.suggest_categorical(param.name, [False, True])
        if isinstance(param, Int):
            return t.suggest_int(param.name, param.min_value, param.max_value, step=param.step or 1,
                                 log=param.sampling == "log")
        if isinstance(param, Float):
            return t.suggest_float(param.name, param.min_value, param.max_value, step=param.step,
                                   log=param.sampling == "log")
        raise TypeError(f"Unknown hyperparameter type. Received: {param!r}")


def tunable(space, pins: Mapping[str, Any]) -> dict[str, Param]:
    """Choice points the sampler may vary: tunable and not pinned."""
    return {n: p for n, p in describe(space).items() if p.is_tunable and n not in pins}


def trial_config(space, pins: Mapping[str, Any], params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The full resolved configuration for ``params`` over defaults, with pins winning."""
    return resolve(space, Defaults({**dict(params or {}), **dict(pins)}))


def grid_values(space, pins: Mapping[str, Any], option: str = "--sampler grid") -> dict[str, list]:
    """Every value of each searched choice point, for a grid search.

    Raises:
        SpaceError: a continuous choice point (no step), which a grid cannot walk.
    """
    grid: dict[str, list] = {}
    for pname, param in tunable(space, pins).items():
        values = param.grid()
        if values is None:
            alternative = "--sampler tpe" if option.startswith("--sampler") else "--tuner random"
            raise SpaceError(
                f"{option} needs a finite space, but {pname} is continuous ({param.summary()}); "
                f"pin it ({pname}=VALUE) or use {alternative}"
            )
        grid[pname] = values
    return grid


def make_sampler(name: str, space, pins: Mapping[str, Any], seed: int | None):
    """An Optuna sampler by name: ``tpe`` (default), ``random``, or ``grid`` over a finite space.

    Raises:
        SpaceError: unknown sampler, or ``grid`` over a continuous choice.
    """
    import optuna

    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "grid":
        return optuna.samplers.GridSampler(grid_values(space, pins), seed=seed)
    raise SpaceError(f"unknown sampler {name!r}; valid: {', '.join(SAMPLERS)}")


@dataclass
class SearchPlan:
    """Everything ``optimize`` needs; built by the API layer."""

    study: Any
    space: Any
    pins: dict[str, Any]
    objective: Callable[[Any, dict[str, Any], dict[str, Any]], float]
    n_trials: int
    timeout: float | None
    baselines: dict[str, dict[str, Any]] = field(default_factory=dict)
    stop_when: Callable[[Any], bool] | None = None
    after_trial: Callable[[Any, Any], None] | None = None


def optimize(plan: SearchPlan) -> None:
    """Runs trials until the plan's budget is spent.

    ``plan.objective(trial, params, user_attrs)`` runs one configuration and returns its validation accuracy.
    """

    def objective(trial) -> float:
        baseline = trial.user_attrs.get("baseline")
        given = plan.baselines.get(baseline, {}) if baseline else dict(trial.user_attrs.get("given") or {})
        hp = OptunaHP(trial, plan.pins, given)
        params = resolve(plan.space, hp)
        return plan.objective(trial, params, dict(trial.user_attrs))

    def maybe_stop(study, frozen) -> None:
        if plan.after_trial is not None:
            plan.after_trial(study, frozen)
        if plan.stop_when is not None and plan.stop_when(study):
            study.stop()

    if plan.n_trials <= 0:
        return
    plan.study.optimize(
        objective,
        n_trials=plan.n_trials,
        timeout=plan.timeout,
        catch=(Exception,),
        callbacks=[maybe_stop],
        gc_after_trial=True,
    )
