"""The search spaces: one small module per step of the reference study, ``improved`` (all steps jointly) and
``modern`` (the study's choices plus residual bodies, modern augmentation and training).

Each module defines ``NAME``, ``DESCRIPTION``, ``DEFAULT_DATA``, ``BASELINES``, ``declare(hp)`` (pure Python, Keras
Tuner vocabulary, every default = the study's choice at that step) and ``build(params, spec)`` (a compiled Keras
model; imports Keras inside). The study's CNN spaces declare ``FIXED`` and share one builder
(``_cnn.space_builder``). Importing this package does not import Keras or TensorFlow.

This module is the one space registry: ``SPACES`` (registered by plain imports), ``get_space`` (a registered name
or a path to a user's own module), ``summaries`` and ``detail`` (what ``cnntune spaces`` lists).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from search_spaces import (augmentation, basenet, batchnorm, deeper_net, epochs, improved, modern, normalization,
                           transfer)
from tuner.errors import SpaceError
from tuner.hp import describe

__all__ = [
    "SPACES",
    "augmentation",
    "basenet",
    "batchnorm",
    "deeper_net",
    "detail",
    "epochs",
    "get_space",
    "improved",
    "modern",
    "normalization",
    "space_names",
    "summaries",
    "transfer",
]

SPACES: dict[str, ModuleType] = {
    module.NAME: module
    for module in (basenet, normalization, augmentation, deeper_net, batchnorm, epochs, improved, transfer, modern)
}

# What a user's own space module gets when it leaves these out.
_OPTIONAL = {"BASELINES": [], "CLAIMS": [], "DESCRIPTION": "", "DEFAULT_DATA": "synthetic"}


def space_names() -> list[str]:
    """The registered spaces, in the study's order."""
    return list(SPACES)


def get_space(name: str) -> ModuleType:
    """A registered space by name, or a user's own module given as a path to a ``.py`` file.

    Raises:
        SpaceError: unknown name, a file that does not exist or does not import, or a module that is not a space.
    """
    if name in SPACES:
        return SPACES[name]
    if name.endswith(".py"):
        return _load_file(name)
    raise SpaceError(f"unknown space {name!r}; valid: {', '.join(SPACES)} (or a path to a .py file)")


def _load_file(name: str) -> ModuleType:
    path = Path(name).expanduser()
    if not path.is_file():
        raise SpaceError(f"space file {name!r} does not exist")
    mod_name = f"cnntune_user_space_{path.stem}"
    spec = importlib.util.spec_from_file_location(mod_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise SpaceError(f"cannot import space file {name!r}: {type(exc).__name__}: {exc}") from None
    missing = [a for a in ("declare", "build") if not callable(getattr(module, a, None))]
    if missing:
        raise SpaceError(f"space file {name!r} lacks {', '.join(missing)}(); a space defines declare(hp) and "
                         "build(params, spec)")
    module.NAME = getattr(module, "NAME", path.stem)
    for attr, default in _OPTIONAL.items():
        if not hasattr(module, attr):
            setattr(module, attr, default)
    return module


def summaries() -> list[dict[str, Any]]:
    """Every registered space: name, number of choice points, baselines, default data, description."""
    return [
        {
            "name": name,
            "choices": sum(1 for p in describe(module).values() if p.is_tunable),
            "baselines": len(module.BASELINES),
            "data": module.DEFAULT_DATA,
            "description": module.DESCRIPTION,
        }
        for name, module in SPACES.items()
    ]


def detail(name: str) -> dict[str, Any]:
    """One space's choice points (with their conditions) and baselines."""
    module = get_space(name)
    return {"name": module.NAME, "params": describe(module), "baselines": list(module.BASELINES)}
