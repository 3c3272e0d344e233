"""Search engines: who proposes the next configuration. Each engine module has ``run(plan)`` and ``check_options``.

``optuna`` (the default) samples with Optuna's samplers and prunes with its pruners; ``keras-tuner`` runs Keras Tuner
1.4's tuners. Both run the plan's objective, record every trial in the plan's Optuna study and stop when the plan says
so (``tuner.searching._plan``). Importing this package imports neither Optuna nor Keras nor Keras Tuner.
"""

from __future__ import annotations

from types import ModuleType

from tuner.errors import CnntuneError
from tuner.searching.engines import _keras_tuner, _optuna
from tuner.searching.engines._keras_tuner import TUNERS, parse_address, wait_for_chief
from tuner.searching.engines._optuna import SAMPLERS, OptunaHP, make_sampler
from tuner.searching.engines._pruning import PRUNERS, make_pruner

__all__ = [
    "ENGINES",
    "PRUNERS",
    "SAMPLERS",
    "TUNERS",
    "OptunaHP",
    "get_engine",
    "make_pruner",
    "make_sampler",
    "parse_address",
    "wait_for_chief",
]

ENGINES: dict[str, ModuleType] = {_optuna.NAME: _optuna, _keras_tuner.NAME: _keras_tuner}


def get_engine(name: str) -> ModuleType:
    """The engine module by name (``optuna`` or ``keras-tuner``).

    Raises:
        CnntuneError: an unknown name.
    """
    if name not in ENGINES:
        raise CnntuneError(f"unknown engine {name!r}; valid: {', '.join(ENGINES)}")
    return ENGINES[name]
