"""Trial runners for ``tests/test_isolate.py``: module-level, so that a trial's child process can import them.

Each has ``tuner.trial.run_trial``'s signature and trains nothing (no Keras import: a child starts in well under a
second), except where it hands over to the real runner.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import signal
import time
from pathlib import Path

from tuner.trial import TrialDiverged, TrialOutcome


def outcome(val: float = 0.5, **extra) -> TrialOutcome:
    return TrialOutcome(val_accuracy=val, test_accuracy=0.25, n_params=10, history={"val_accuracy": [val]},
                        best_epoch=1, epochs_run=1, seconds=0.01, model_path=None, backend="fake", extra=dict(extra))


def describe(space, params, data, *, seed, model_path, **kwargs) -> TrialOutcome:
    """Returns what the child received: the space, the data (and whether it is memory-mapped) and the keywords."""
    return outcome(space=space.NAME, space_module=space.__name__, params=params, seed=seed, model_path=model_path,
                   kwargs={k: kwargs[k] for k in sorted(kwargs)}, fingerprint=data.fingerprint,
                   mapped=all(_mapped(getattr(data, f"{p}_{s}")) for p in "xy" for s in ("train", "val", "test")),
                   pixels=int(data.x_train.sum()) + int(data.x_val.sum()) + int(data.x_test.sum()),
                   labels=data.y_train.tolist() + data.y_val.tolist() + data.y_test.tolist(),
                   classes=data.class_names, pid=os.getpid())


def _mapped(array) -> bool:
    """The array is a view of a memory-mapped file (not a copy in the process's own memory)."""
    while array is not None and not isinstance(array, mmap.mmap):
        array = getattr(array, "base", None)
    return array is not None


def epochs(space, params, data, *, seed, model_path, on_epoch=None, should_stop=None, **kwargs) -> TrialOutcome:
    """Runs ``params["epochs"]`` empty epochs through the hooks, as ``run_trial``'s callback does."""
    run = 0
    for epoch in range(1, int(params["epochs"]) + 1):
        run = epoch
        logs = {"loss": 1.0 / epoch, "val_accuracy": 0.1 * epoch}
        if on_epoch is not None:
            on_epoch(epoch, logs)
        if should_stop is not None and should_stop(epoch, logs):
            break
    out = outcome()
    out.epochs_run = run
    return out


def oom_killed(space, params, data, **kwargs) -> TrialOutcome:
    """Dies as the kernel's OOM killer ends a process: SIGKILL, no message."""
    os.kill(os.getpid(), signal.SIGKILL)
    raise AssertionError("unreachable")


def oom_killed_first_seed(space, params, data, *, seed, **kwargs) -> TrialOutcome:
    """The search's first trial (seed 0) is killed; later ones complete."""
    if seed == 0:
        oom_killed(space, params, data)
    return outcome(0.6)


def segfault(space, params, data, **kwargs) -> TrialOutcome:
    ctypes.string_at(0)  # reads address 0: SIGSEGV
    raise AssertionError("unreachable")


def exit_3(space, params, data, **kwargs) -> TrialOutcome:
    os._exit(3)


def diverge(space, params, data, **kwargs) -> TrialOutcome:
    raise TrialDiverged(2, {"loss": [1.5, float("inf")], "val_accuracy": [0.25, 0.25]})


class LocalOnly(Exception):
    """Its ``__init__`` takes two arguments but ``args`` holds one (a shape plain pickling cannot rebuild)."""

    def __init__(self, code: int, detail: str):
        super().__init__(f"code {code}: {detail}")
        self.code = code


def raise_custom(space, params, data, **kwargs) -> TrialOutcome:
    raise LocalOnly(7, "custom failure")


def raise_unbuildable(space, params, data, **kwargs) -> TrialOutcome:
    class Unimportable(RuntimeError):  # defined in a function: the parent cannot import its class
        pass

    raise Unimportable("from a local class")


def sleep_forever(space, params, data, *, model_path, **kwargs) -> TrialOutcome:
    """Writes its pid to ``model_path`` and sleeps: a trial the parent has to stop."""
    Path(model_path).write_text(str(os.getpid()))
    time.sleep(300)
    raise AssertionError("not stopped")
