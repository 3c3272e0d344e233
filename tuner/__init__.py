"""cnntune: automated search for Keras convolutional networks.

The public API (``search``, ``worker``, ``trials``, ``best``, ``export``, ``reevaluate``, ``report``, ``reproduce``;
all of them in ``tuner.api``) returns plain records and never prints. Its names are loaded on first use:
``import tuner.hp`` or ``import search_spaces`` (which need only this package's errors) load neither the API nor
Optuna, and importing this package never imports TensorFlow or Keras.
"""

from __future__ import annotations

import importlib
from typing import Any

from tuner.errors import CnntuneError, DataError, SpaceError, StorageError

__all__ = [
    "BestReport",
    "CnntuneError",
    "Comparison",
    "DataError",
    "Display",
    "ReevalReport",
    "ReportResult",
    "Reproduction",
    "SearchOptions",
    "SearchResult",
    "SpaceError",
    "StorageError",
    "StudyView",
    "TrialRecord",
    "best",
    "export",
    "read_export_metadata",
    "reevaluate",
    "report",
    "reproduce",
    "search",
    "trials",
    "worker",
    "write_reproduction",
]

__version__ = "0.1.0"

# Each lazily loaded name and the module that re-exports it.
_LAZY = {name: "tuner.api" for name in __all__ if name not in ("CnntuneError", "DataError", "SpaceError",
                                                                 "StorageError", "Display", "TrialRecord")}
_LAZY.update(Display="tuner.records", TrialRecord="tuner.records", SearchOptions="tuner.options")


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tuner' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
