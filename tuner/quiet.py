"""Library noise stays out of the user's terminal unless ``--verbose``.

TensorFlow prints its C++ start-up lines (oneDNN, CPU features, CUDA probing) and, through its Python logger,
"triggered tf.function retracing" warnings during long searches; Keras, Optuna and absl emit warnings meant for
library developers. None of it is about the user's search. ``quiet_libraries()`` silences them for this process and
for the processes it starts (workers, isolated trials), through the environment; ``CNNTUNE_VERBOSE=1`` (set by
``--verbose``) leaves everything as the libraries want it. Nothing here imports TensorFlow, Keras or Optuna: the
settings take effect when they are imported (the first ``import tensorflow`` runs with its C++ start-up lines
filtered by ``TF_CPP_MIN_LOG_LEVEL``, which TensorFlow 2.21 no longer applies to them itself).
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import logging
import os
import re
import sys
import tempfile
import warnings
from contextlib import contextmanager
from typing import Iterator

__all__ = ["VERBOSE_ENV", "below_level", "quiet_libraries", "set_verbose"]

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
    if "tensorflow" not in sys.modules:
        finder = _QuietTensorFlowImport()
        sys.meta_path.insert(0, finder)
        _applied["finder"] = finder


# A C++ log line of TensorFlow below TF_CPP_MIN_LOG_LEVEL: absl's (``I0000 00:00:1796.. 123 port.cc:153] ...``) and
# TensorFlow's own (``2026-12-01 10:00:00.123456: I tensorflow/...``), by level letter; and absl's banner.
_CPP_LINE = re.compile(r"^(?:[IWEF]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ \S+:\d+\]|"
                       r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWEF] )")
_ABSL_BANNER = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
_LEVELS = "IWEF"


def below_level(line: str, level: int) -> bool:
    """Whether ``line`` is a TensorFlow C++ log line that ``TF_CPP_MIN_LOG_LEVEL=level`` hides (absl's banner
    counts as a warning)."""
    if line.startswith(_ABSL_BANNER):
        return level >= 2
    match = _CPP_LINE.match(line)
    if match is None:
        return False
    letter = next(c for c in match.group(0) if c in _LEVELS)
    return _LEVELS.index(letter) < level


class _QuietTensorFlowImport(importlib.abc.MetaPathFinder):
    """Runs the first ``import tensorflow`` with the process's stderr (file descriptor 2) captured, and writes back
    only the lines ``TF_CPP_MIN_LOG_LEVEL`` lets through. TensorFlow 2.21 logs its start-up lines (oneDNN) through
    absl before reading the variable, so the variable alone no longer hides them."""

    busy = False

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow" or self.busy:
            return None
        self.busy = True  # the real finders find it
        try:
            spec = importlib.util.find_spec(name)
        finally:
            self.busy = False
        if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
            run = spec.loader.exec_module

            def exec_module(module):
                if self in sys.meta_path:
                    sys.meta_path.remove(self)  # the first import only
                with _stderr_filtered():
                    run(module)

            spec.loader.exec_module = exec_module
        return spec


@contextmanager
def _stderr_filtered() -> Iterator[None]:
    """File descriptor 2 goes to a temporary file inside; after, its lines above the level are written back."""
    value = os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0")
    level = int(value) if value.isdigit() else 0
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [line for line in captured.read().decode(errors="replace").splitlines(keepends=True)
                    if not below_level(line, level)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


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
    if _applied.get("finder") in sys.meta_path:
        sys.meta_path.remove(_applied["finder"])
    _applied.clear()
