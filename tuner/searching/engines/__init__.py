"""Search engines: who proposes the next configuration. Each engine module has ``run(plan)``, ``prepare(plan)``,
``check(options, experiment)``, ``model_dir(artifacts)`` and the flags that say what it can do (``QUEUES_TRIALS``,
``RESUMES_TRIALS``, ``POOLED_WORKERS``) and what it records on its trials (``TAG``): the rest of the code asks those,
never the engine's name.

``optuna`` (the default) samples with Optuna's samplers and prunes with its pruners; ``keras-tuner`` runs Keras Tuner
1.4's tuners. Both run the plan's objective, record every trial in the plan's Optuna study and stop when the plan says
so (``tuner.searching._plan``). Importing this package imports neither Optuna nor Keras nor Keras Tuner.
"""

from __future__ import annotations

from types import ModuleType

from tuner.searching.engines import _keras_tuner, _optuna
from tuner.searching.engines._keras_tuner import parse_address, wait_for_chief
from tuner.searching.engines._optuna import OptunaHP, make_sampler
from tuner.searching.engines._pruning import make_pruner

__all__ = [
    "ENGINES",
    "OptunaHP",
    "get_engine",
    "make_pruner",
    "make_sampler",
    "parse_address",
    "wait_for_chief",
]

# One engine module per name ``--engine`` takes (``tuner.options.ENGINES``).
ENGINES: dict[str, ModuleType] = {_optuna.NAME: _optuna, _keras_tuner.NAME: _keras_tuner}


def get_engine(name: str) -> ModuleType:
    """The engine module by name (``optuna`` or ``keras-tuner``; ``SearchOptions`` checked the name)."""
    return ENGINES[name]
