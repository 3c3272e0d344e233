"""Library noise stays out of the user's terminal unless ``--verbose``.

TensorFlow prints its C++ start-up lines (oneDNN, CPU features, CUDA probing) and, through its Python logger,
"triggered tf.function retracing" warnings during long searches; Keras, Optuna and absl emit warnings meant for
library developers. None of it is about the user's search. ``quiet_libraries()`` silences them for this process and
for the processes it starts (workers, isolated trials), through the environment; ``CNNTUNE_VERBOSE=1`` (set by
``--verbose``) leaves everything as the libraries want it. Nothing here imports TensorFlow, Keras or Optuna: the
settings take effect when they are imported.
"""

from __future__ import annotations

import logging
import os
import warnings

__all__ = ["VERBOSE_ENV", "quiet_libraries", "set_verbose"]

VERBOSE_ENV = "CNNTUNE_VERBOSE"
_NOISY_MODULES = r"(keras|tensorflow|tf_keras|optuna|absl|keras_tuner|h5py|google\.protobuf)(\..*)?"


_LOGGERS = ("tensorflow", "absl", "keras_tuner", "h5py")
_applied: dict[str, object] = {}  # what quiet_libraries changed, so that --verbose can undo it


def set_verbose(verbose: bool) -> None:
    """Records the choice for this process and the processes it starts, then applies it (undoing an earlier
    ``quiet_libraries()``: importing the trial runner applies it)."""
    if verbose:
        os.environ[VERBOSE_ENV] = "1"
        _undo()
    else:
        os.environ.pop(VERBOSE_ENV, None)
        quiet_libraries()


def quiet_libraries() -> None:
    """Silences library start-up lines, logger warnings and Python warnings, unless ``CNNTUNE_VERBOSE=1``."""
    if os.environ.get(VERBOSE_ENV) == "1" or _applied:
        return
    if "TF_CPP_MIN_LOG_LEVEL" not in os.environ:  # a level the user set is kept
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"  # C++ INFO and WARNING lines (oneDNN, CPU features)
        _applied["env"] = True
    _applied["levels"] = {name: logging.getLogger(name).level for name in _LOGGERS}
    for name in _LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)  # e.g. tf.function retracing warnings
    before = list(warnings.filters)
    for category in (UserWarning, DeprecationWarning, FutureWarning, RuntimeWarning, PendingDeprecationWarning):
        warnings.filterwarnings("ignore", category=category, module=_NOISY_MODULES)
    # Optuna's ExperimentalWarning is attributed to the calling module, so it is matched by its message.
    warnings.filterwarnings("ignore", message=r".* is experimental \(supported from")
    _applied["filters"] = [f for f in warnings.filters if f not in before]


def _undo() -> None:
    if not _applied:
        return
    if _applied.get("env"):
        os.environ.pop("TF_CPP_MIN_LOG_LEVEL", None)
    for name, level in dict(_applied.get("levels") or {}).items():
        logging.getLogger(name).setLevel(level)
    for f in list(_applied.get("filters") or []):
        if f in warnings.filters:
            warnings.filters.remove(f)
    warnings._filters_mutated()  # the filters list was edited in place
    _applied.clear()
