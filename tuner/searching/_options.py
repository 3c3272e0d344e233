"""The options of ``search``: each checked, given to the engine it belongs to, and cnntune's default strategy.

An option of the other engine is an error naming the right one, never silently ignored. Under a pruner the epochs
become the pruner's fidelity (``with_fidelity``). Nothing here imports Optuna or Keras.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

from tuner.errors import CnntuneError
from tuner.experiment import Experiment
from tuner.hp import describe
from tuner.searching.engines import get_engine
from tuner.store import SearchSettings
from tuner.trial import check_device_data
from tuner.trial import check_precision

# Each objective and its direction: accuracy (validation) up; the second objective, the model's size or its latency
# per image, down.
OBJECTIVES = {"accuracy": "maximize", "params": "minimize", "latency": "minimize"}

__all__ = ["OBJECTIVES", "DEFAULT_CLIMB", "DEFAULT_GROW", "DEFAULT_PRUNER", "DEFAULT_REEVAL_SHARE",
           "DEFAULT_REEVAL_TOP", "DEFAULT_WARM_START", "check_engine_options", "check_settings", "parse_objective",
           "with_fidelity"]

# The default strategy (BENCHMARKS.md, "Search quality"): under Optuna's TPE the first searched trials start from the
# study (the study continued one step, then crossovers of its hand-chosen configurations), and with a --timeout a
# quarter of it is kept to retrain the top configurations with new seeds, so that the pick is not one lucky run. No
# pruner: on the ``improved`` space early accuracy ranks poorly before epoch 6. Growth (``--grow``): a best trial that
# trains faster than the longest baseline is grown (widths and epochs doubled) before the other warm starts run; it
# found the picks that met +15% over the hand-chosen model. No climb (``--climb``): in 25 minutes its
# steps from the best trial did not beat the warm starts alone. Another sampler or engine, or two objectives, gets
# none of these defaults.
DEFAULT_PRUNER = "none"
DEFAULT_WARM_START = 8
DEFAULT_CLIMB = 0.0
DEFAULT_GROW = True
DEFAULT_REEVAL_SHARE = 0.25
DEFAULT_REEVAL_TOP = 3


def _default_strategy(engine: str, sampler: str | None, timeout: float | None,
                      objectives: tuple[str, ...]) -> tuple[int, float, float, bool]:
    """The default warm starts, re-evaluation share, climb and growth: the benchmarked strategy applies to
    single-objective searches with Optuna's TPE (the re-evaluation share only with a ``--timeout`` to take it from)."""
    if engine != "optuna" or sampler not in (None, "tpe") or len(objectives) > 1:
        return 0, 0.0, 0.0, False
    return DEFAULT_WARM_START, DEFAULT_REEVAL_SHARE if timeout is not None else 0.0, DEFAULT_CLIMB, DEFAULT_GROW


def check_settings(*, engine: str, trials: int, seed: int, baselines: bool, max_failures: int, timeout: float | None,
              sampler: str | None, pruner: str | None, kt_tuner: str | None, chief: str | None,
              warm_start: int | None, max_epochs: int | None, reeval_share: float | None,
              reeval_top: int | None, heartbeat_grace: float | None = None,
              isolate: bool = False, objective: str | Sequence[str] | None = None,
              mixed_precision: str | None = None, jit: bool | None = None,
              device_data: str | None = None, climb: float | None = None,
              grow: bool | None = None) -> SearchSettings:
    """The run's settings, each option checked and given to the engine it belongs to; ``None`` is the default.

    Raises:
        CnntuneError: a bad number, an unknown engine, or an option of the other engine.
    """
    objectives = parse_objective(objective)
    default_warm, default_share, default_climb, default_grow = _default_strategy(engine, sampler, timeout, objectives)
    warm_start = default_warm if warm_start is None else warm_start
    climb = default_climb if climb is None else climb
    grow = default_grow if grow is None else grow
    reeval_share = default_share if reeval_share is None else reeval_share
    reeval_top = DEFAULT_REEVAL_TOP if reeval_top is None else reeval_top
    if trials < 1:
        raise CnntuneError(f"--trials must be at least 1. Received: {trials}")
    if timeout is not None and timeout <= 0:
        raise CnntuneError(f"--timeout must be a positive number of seconds. Received: {timeout}")
    if max_failures < 0:
        raise CnntuneError(f"--max-failures must be 0 (never stop) or more. Received: {max_failures}")
    if warm_start < 0:
        raise CnntuneError(f"--warm-start must be 0 (start-up trials drawn by the sampler) or more. "
                           f"Received: {warm_start}")
    if not 0 <= climb <= 1:
        raise CnntuneError(f"--climb must be a share from 0 to 1. Received: {climb}")
    if not 0 <= reeval_share < 1:
        raise CnntuneError(f"--reeval-share must be at least 0 and below 1. Received: {reeval_share}")
    if reeval_top < 2:
        raise CnntuneError(f"--reeval-top must be at least 2 (configurations to rank). Received: {reeval_top}")
    if max_epochs is not None and max_epochs < 1:
        raise CnntuneError(f"--max-epochs must be at least 1. Received: {max_epochs}")
    if heartbeat_grace is not None and heartbeat_grace < 2:
        raise CnntuneError(f"--heartbeat-grace must be at least 2 seconds. Received: {heartbeat_grace}")
    get_engine(engine)
    common = dict(engine=engine, trials=int(trials), seed=int(seed), baselines=bool(baselines),
                  max_failures=int(max_failures), warm_start=int(warm_start), climb=float(climb),
                  grow=bool(grow), reeval_share=float(reeval_share), reeval_top=int(reeval_top), isolate=bool(isolate),
                  objective=objectives, heartbeat_grace=None if heartbeat_grace is None else int(heartbeat_grace),
                  precision=check_precision(mixed_precision), jit=None if jit is None else bool(jit),
                  device_data=check_device_data(device_data))
    if len(objectives) > 1:
        if engine != "optuna":
            raise CnntuneError(f"--objective {','.join(objectives)} is a two-objective Optuna study; drop --engine "
                               "keras-tuner")
        if pruner not in (None, "none"):
            raise CnntuneError("--pruner stops trials on validation accuracy alone, which a two-objective study "
                               "cannot rank by; drop --pruner or --objective")
        if reeval_share:
            raise CnntuneError("--reeval-share ranks configurations by accuracy alone; with two objectives pick "
                               "within a budget instead: cnntune best --max-params N")
    if engine == "keras-tuner":
        if sampler is not None:
            raise CnntuneError("--sampler is an Optuna engine option; with --engine keras-tuner pick the tuner with "
                               "--tuner random|bayesian|hyperband|grid")
        if pruner not in (None, "none"):
            raise CnntuneError("--pruner is an Optuna engine option; with --engine keras-tuner use --tuner hyperband")
        if climb or grow:
            flag = "--climb" if climb else "--grow"
            raise CnntuneError(f"{flag} queues trials in the Optuna engine's study; with --engine keras-tuner use "
                               "--warm-start")
        if max_epochs is not None:
            raise CnntuneError("--max-epochs is for the Optuna engine's pruners; Keras Tuner's hyperband takes its "
                               "maximum from the space's epochs (pin epochs=N)")
        return SearchSettings(**common, tuner=kt_tuner or "random")
    if kt_tuner is not None:
        raise CnntuneError("--tuner is a Keras Tuner engine option; add --engine keras-tuner, or pick the Optuna "
                           "sampler with --sampler tpe|random|grid")
    if chief is not None:
        raise CnntuneError("--chief is a Keras Tuner engine option; Optuna workers share the --storage URL instead")
    pruner = pruner or DEFAULT_PRUNER
    if max_epochs is not None and pruner == "none":
        raise CnntuneError("--max-epochs sets the most epochs a pruner lets a trial train; without a pruner, pin "
                           "epochs=N instead")
    return SearchSettings(**common, sampler=sampler or "tpe", pruner=pruner, max_epochs=max_epochs)


def parse_objective(objective: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"accuracy"`` (default), ``"accuracy,params"`` or ``"accuracy,latency"`` as a tuple of names.

    Raises:
        CnntuneError: anything else.
    """
    if objective is None:
        return ("accuracy",)
    names = tuple(s.strip() for s in (objective.split(",") if isinstance(objective, str) else objective))
    valid = [("accuracy",), *(("accuracy", other) for other in OBJECTIVES if other != "accuracy")]
    if names not in valid:
        raise CnntuneError(f"--objective must be one of {', '.join(','.join(v) for v in valid)}. "
                           f"Received: {objective!r}")
    return names


def with_fidelity(exp: Experiment, settings: SearchSettings) -> SearchSettings:
    """Epochs as the pruner's fidelity: under a pruner, the searched trials do not sample ``epochs`` but may train up
    to the maximum (the space's, or ``--max-epochs``), and the pruner decides how far each one goes. Searching the
    epochs *and* pruning on them would compare trials of different lengths at the same rung. A pinned ``epochs``
    stays; baselines keep their own epochs (they are the study's configurations and are never pruned).

    Raises:
        CnntuneError: ``--max-epochs`` with a pinned ``epochs``, a space without epochs, or outside its range.
    """
    param = describe(exp.space).get("epochs")
    if settings.pruner in (None, "none"):
        return settings
    if "epochs" in exp.pins:
        if settings.max_epochs is not None:
            raise CnntuneError(f"--max-epochs {settings.max_epochs} contradicts epochs={exp.pins['epochs']}; "
                               "give one of them")
        return settings
    if param is None or not param.is_tunable:
        if settings.max_epochs is not None:
            raise CnntuneError(f"--max-epochs needs a space that searches epochs; {exp.space_name} does not")
        return settings
    top = int(settings.max_epochs or param.max_value)
    if not param.contains(top):
        raise CnntuneError(f"--max-epochs {top} is outside the space's epochs ({param.summary()})")
    return replace(settings, max_epochs=top)


def check_engine_options(settings: SearchSettings, exp: Experiment, chief: str | None) -> None:
    module = get_engine(settings.engine)
    if settings.engine == "keras-tuner":
        module.check_options(tuner=settings.tuner, chief=chief, space=exp.space, pins=exp.pins)
    else:
        module.check_options(sampler=settings.sampler, pruner=settings.pruner, space=exp.space, pins=exp.pins)
