"""Each trial in its own process: ``isolated(runner)`` wraps a trial runner so that every call runs in a child.

Why: TensorFlow keeps host memory (allocator pools, compiled graphs) and GPU memory (its BFC allocator never gives
memory back) after a trial, however carefully the session is cleared, so a long search grows until it is killed. A
child process returns all of it to the system when it exits. A trial killed by the kernel's OOM killer or a segfault
takes only its child down: the parent records it as failed with that reason and the search goes on.

How: the parent starts the child with the ``spawn`` method (forking a process in which TensorFlow's threads run is
unsafe), hands it the space by name (or by file, for a user's space), the dataset as ``.npy`` files written once per
runner and memory-mapped by every child (no re-decoding of images per trial), and every other keyword of the runner
unchanged. The child calls the inner runner and relays its per-epoch hooks over a pipe: it sends ``(epoch, logs)``,
the parent calls ``on_epoch`` / ``should_stop`` (progress and Optuna's pruning reports happen in the parent, which
owns the storage connection) and answers. The ``TrialOutcome``, or the exception with its type and fields (e.g.
``TrialDiverged``'s epoch and history), comes back and is returned or raised in the parent, so the objective records
the trial exactly as in-process. A child that dies without a word raises ``TrialCrashed``. On Ctrl-C / SIGTERM in
the parent (``KeyboardInterrupt``) the child gets SIGTERM, which the runner honours at its next batch end (so its
epoch checkpoint stays whole), SIGKILL after ``_GRACE_S`` or a second Ctrl-C; then the interrupt propagates.

Costs: each trial starts a Python process and imports Keras (a few seconds; on a GPU, the device is initialized
again); the call's wall time minus the outcome's ``seconds`` is recorded in its extras as ``isolate_seconds``. As
with any ``spawn``-started process, a script that searches with isolation needs an ``if __name__ == "__main__":``
guard (the child imports the script's main module).
"""

from __future__ import annotations

import importlib
import inspect
import multiprocessing
import os
import pickle
import shutil
import signal
import sys
import tempfile
import time
import traceback
import weakref
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

from tuner.errors import CnntuneError

__all__ = ["ChildError", "IsolatedRunner", "TrialCrashed", "crash_reason", "isolated"]

# Seconds a child that has already answered gets to exit by itself, and a terminated child to die, before SIGKILL.
_GRACE_S = 10.0
_SPLIT_ARRAYS = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")
# Signals that mean the process itself failed (a bug in native code, a bad allocation), not that someone killed it.
_CRASH_SIGNALS = {"SIGSEGV", "SIGBUS", "SIGILL", "SIGFPE", "SIGABRT"}


class TrialCrashed(CnntuneError):
    """The trial's process died without reporting: killed by a signal (the OOM killer's SIGKILL, a segfault) or
    exited with a non-zero code.

    Attributes:
        exitcode: the child's exit code; ``-N`` when signal ``N`` killed it.
    """

    def __init__(self, message: str, exitcode: int | None):
        super().__init__(message)
        self.exitcode = exitcode


class ChildError(CnntuneError):
    """An exception of the trial's process whose type is not rebuilt in the parent (its module is not imported there,
    or its fields cannot be pickled). Raised as a subclass named like the original type, so that the recorded
    ``fail_reason`` (``Type: message``) reads as it would in-process."""


class _ChildTraceback(Exception):
    """The child's formatted traceback, chained as ``__cause__`` of the exception raised in the parent."""

    def __str__(self) -> str:
        return "\n" + str(self.args[0] if self.args else "")


def crash_reason(exitcode: int | None) -> str:
    """Why a child that sent nothing back ended, in words a user can act on.

    Args:
        exitcode: ``multiprocessing.Process.exitcode``: ``-N`` for signal ``N``.
    """
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        if name == "SIGKILL":
            # Not "out of memory" outright: a SIGKILL may also come from a user or a scheduler, and the record keeps
            # the signal's name.
            return "trial process killed by SIGKILL (the kernel's OOM killer sends it when memory runs out)"
        if name in _CRASH_SIGNALS:
            return f"trial process crashed with {name}"
        return f"trial process killed by {name}"
    return f"trial process exited with code {exitcode} without a result"


@dataclass(frozen=True)
class _DataFiles:
    """A ``Dataset`` written as ``.npy`` files: what a child needs to memory-map it."""

    folder: str
    name: str
    class_names: tuple[str, ...]
    fingerprint: str


def _space_ref(space: ModuleType) -> tuple[str, str | None]:
    """``(module name, file)``: the child imports the name, or loads the file as a user's space."""
    name, file = space.__name__, getattr(space, "__file__", None)
    if getattr(space, "__spec__", None) is None and not file:
        raise CnntuneError(f"space module {name!r} has neither an importable name nor a file; a trial process "
                           "cannot load it (define the space in a .py file)")
    return name, file


def _load_space(ref: tuple[str, str | None]) -> ModuleType:
    name, file = ref
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        # A user's space given as a path is registered under a made-up name: load it from its file the same way.
        if exc.name != name or not file or not file.endswith(".py"):
            raise
    from search_spaces import get_space

    return get_space(file)


def _open_data(ref: Any):
    if not isinstance(ref, _DataFiles):
        return ref  # not a Dataset (a custom runner's data): it was pickled as it is
    import numpy as np

    from tuner.data import Dataset

    arrays = {key: np.load(Path(ref.folder) / f"{key}.npy", mmap_mode="r") for key in _SPLIT_ARRAYS}
    return Dataset(name=ref.name, class_names=list(ref.class_names), fingerprint=ref.fingerprint, **arrays)


def _exception_payload(exc: BaseException) -> dict[str, Any]:
    cls = type(exc)
    payload = {"module": cls.__module__, "qualname": cls.__qualname__, "name": cls.__name__, "message": str(exc),
               "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)), "state": None}
    try:  # args and fields (TrialDiverged's epoch and history) rebuild the same exception in the parent
        payload["state"] = pickle.dumps((exc.args, dict(getattr(exc, "__dict__", {}))))
    except Exception:
        pass
    return payload


def _rebuild(payload: dict[str, Any]) -> BaseException:
    """The child's exception as an instance of its own class, built without calling ``__init__`` (whose arguments
    often differ from ``args``, as ``TrialDiverged``'s do); else a ``ChildError`` named like it.

    Only classes of modules the parent has already imported are rebuilt: a TensorFlow error must not import
    TensorFlow into the parent, which would then hold the memory isolation is there to give back."""
    exc: BaseException | None = None
    if payload["state"] is not None and payload["module"] in sys.modules:
        try:
            cls: Any = sys.modules[payload["module"]]
            for part in payload["qualname"].split("."):
                cls = getattr(cls, part)
            if isinstance(cls, type) and issubclass(cls, BaseException):
                args, fields = pickle.loads(payload["state"])
                exc = cls.__new__(cls, *args)
                exc.args = args
                exc.__dict__.update(fields)
        except Exception:
            exc = None
    if exc is None:
        exc = type(payload["name"], (ChildError,), {"__module__": __name__})(payload["message"])
    exc.__cause__ = _ChildTraceback(payload["traceback"])
    return exc


def _die_with_parent(parent_pid: int) -> None:
    """Linux: the kernel kills this process when the parent dies (a SIGKILLed worker leaves no orphan training on
    the GPU). Best effort: elsewhere the child stops at its next epoch, when the pipe to the parent is gone."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        # SIGTERM: the runner stops at its next batch end, as on Ctrl-C (see _child_main).
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    except Exception:
        return
    if os.getppid() != parent_pid:  # the parent died before prctl
        os._exit(1)


def _child_main(conn: Connection, inner: Callable[..., Any], space_ref: tuple[str, str | None],
                params: dict[str, Any], data_ref: Any, kwargs: dict[str, Any], relay: tuple[bool, bool],
                parent_pid: int) -> None:
    """The child: open space and data, run the inner runner with relayed hooks, send back the outcome or the
    exception, exit without interpreter teardown (TensorFlow's can take seconds; the kernel frees everything).

    The parent stops a child with SIGTERM. Inside ``interruptible()`` that is the runner's own Ctrl-C: it finishes the
    batch in flight (its checkpoint stays a whole epoch's) and raises ``KeyboardInterrupt``. SIGINT is ignored: a
    terminal's Ctrl-C reaches the whole process group, and only the parent's SIGTERM should count as the first signal
    (a second one would cut the batch short).
    """
    from tuner.signals import interruptible

    _die_with_parent(parent_pid)

    def ask(kind: str, epoch: int, logs: dict[str, float]) -> Any:
        conn.send((kind, (epoch, logs)))
        return conn.recv()

    hooks: dict[str, Callable[..., Any]] = {}
    if relay[0]:
        hooks["on_epoch"] = lambda epoch, logs: ask("epoch", epoch, logs)
    if relay[1]:
        hooks["should_stop"] = lambda epoch, logs: bool(ask("stop?", epoch, logs))
    try:
        with interruptible():
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            space = _load_space(space_ref)
            data = _open_data(data_ref)
            message: tuple[str, Any] = ("done", inner(space, params, data, **kwargs, **hooks))
    except BaseException as exc:  # noqa: BLE001 - every way the trial ends is reported, KeyboardInterrupt too
        message = ("error", _exception_payload(exc))
    code = 0
    try:
        try:
            conn.send(message)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:  # pickled before anything is written
            conn.send(("error", _exception_payload(CnntuneError(
                f"the trial's result cannot be sent back from its process: {type(exc).__name__}: {exc}"))))
    except OSError:
        code = 1  # the parent is gone
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    os._exit(code)


class IsolatedRunner:
    """A trial runner that runs ``inner`` in a fresh child process per call (same signature as ``run_trial``).

    Args:
        inner: the runner to isolate; default ``tuner.trial.run_trial``. It must be picklable (a module-level
            function or an instance of a module-level class).
        workdir: folder for the dataset's ``.npy`` files (a private sub-folder, removed when the runner is
            collected or the process exits); default the system's temporary folder. Prefer a disk folder (e.g. the
            study's artifacts) where ``/tmp`` is in memory.
    """

    def __init__(self, inner: Callable[..., Any] | None = None, *, workdir: str | os.PathLike | None = None):
        if inner is None:
            from tuner.trial._runner import run_trial

            inner = run_trial
        self.inner = inner
        try:  # callers that ask which keywords a runner takes (inspect.signature) see the inner runner's
            self.__signature__ = inspect.signature(inner)
        except (TypeError, ValueError):
            pass
        self.workdir = workdir
        self._folder: Path | None = None
        self._files: dict[str, _DataFiles] = {}

    def _data_ref(self, data: Any) -> Any:
        """The dataset as ``.npy`` files, written on first use of each dataset (by fingerprint)."""
        from tuner.data import Dataset

        if not isinstance(data, Dataset):
            return data
        ref = self._files.get(data.fingerprint)
        if ref is not None:
            return ref
        import numpy as np

        if self._folder is None:
            root = Path(self.workdir) if self.workdir is not None else None
            if root is not None:
                root.mkdir(parents=True, exist_ok=True)
            self._folder = Path(tempfile.mkdtemp(prefix="cnntune-isolate-", dir=root))
            weakref.finalize(self, shutil.rmtree, str(self._folder), True)
        folder = self._folder / data.fingerprint[:16]
        folder.mkdir(exist_ok=True)
        for key in _SPLIT_ARRAYS:
            np.save(folder / f"{key}.npy", np.ascontiguousarray(getattr(data, key)))
        ref = _DataFiles(str(folder), data.name, tuple(data.class_names), data.fingerprint)
        self._files[data.fingerprint] = ref
        return ref

    def _sendable(self, kwargs: dict[str, Any]) -> None:
        for name, value in [("runner", self.inner), *kwargs.items()]:
            try:
                pickle.dumps(value)
            except Exception as exc:
                raise CnntuneError(f"an isolated trial cannot send {name}= to its process: {type(exc).__name__}: "
                                   f"{exc} (pass picklable values: module-level functions and classes)") from None

    def __call__(self, space: ModuleType, params: dict[str, Any], data: Any, *, seed: int,
                 model_path: str | os.PathLike | None, on_epoch: Callable[[int, dict[str, float]], None] | None = None,
                 should_stop: Callable[[int, dict], bool] | None = None, **kwargs: Any) -> Any:
        """Runs one trial in a child process; see ``tuner.trial.run_trial`` for the arguments.

        Raises:
            TrialCrashed: the child died without reporting (signal or non-zero exit).
            CnntuneError: an argument that cannot be sent to the child.
            KeyboardInterrupt: Ctrl-C / SIGTERM in the parent (the child is terminated first).
            Exception: whatever the inner runner raised in the child, rebuilt with its type and fields.
        """
        start = time.perf_counter()
        kwargs = {**kwargs, "seed": seed, "model_path": model_path}
        data_ref = self._data_ref(data)
        self._sendable({**kwargs, "data": data_ref})
        args = (self.inner, _space_ref(space), dict(params), data_ref, kwargs,
                (on_epoch is not None, should_stop is not None), os.getpid())
        ctx = multiprocessing.get_context("spawn")  # never fork: TensorFlow's threads may run in this process
        conn, child_conn = ctx.Pipe(duplex=True)
        proc = ctx.Process(target=_child_main, args=(child_conn, *args), name="cnntune-trial")
        answered = False
        try:
            proc.start()
            child_conn.close()  # the parent keeps one end only, so a dead child reads as EOF
            kind, payload = self._serve(proc, conn, on_epoch, should_stop)
            answered = True
        finally:
            child_conn.close()
            conn.close()
            _reap(proc, answered)
        if kind == "error":
            exc = _rebuild(payload)
            raise exc from exc.__cause__
        extra = getattr(payload, "extra", None)
        if isinstance(extra, dict) and isinstance(getattr(payload, "seconds", None), (int, float)):
            extra["isolate_seconds"] = round(max(time.perf_counter() - start - payload.seconds, 0.0), 3)
        return payload

    @staticmethod
    def _serve(proc, conn: Connection, on_epoch, should_stop) -> tuple[str, Any]:
        """Answers the child's hook calls until it sends its answer: ``("done", outcome)`` or ``("error", payload)``.

        Raises:
            TrialCrashed: the child ended without an answer.
        """
        while True:
            ready = wait([conn, proc.sentinel])
            if conn not in ready and not conn.poll():
                break  # exited and nothing left to read
            try:
                kind, payload = conn.recv()
            except (EOFError, OSError):
                break  # died, possibly mid-message
            if kind == "epoch":
                on_epoch(*payload)
                conn.send(None)
            elif kind == "stop?":
                conn.send(bool(should_stop(*payload)))
            else:
                return kind, payload
        proc.join()
        raise TrialCrashed(crash_reason(proc.exitcode), proc.exitcode)


def _reap(proc, answered: bool) -> None:
    """Waits for the child; one that is still running (the parent was interrupted, a hook raised) gets SIGTERM, and
    SIGKILL after a grace period or at a second Ctrl-C."""
    if proc.pid is None:  # never started
        return
    try:
        if answered:
            proc.join(_GRACE_S)
        if proc.exitcode is None:
            proc.terminate()
            proc.join(_GRACE_S)
    finally:
        if proc.exitcode is None:
            proc.kill()
            proc.join()
        proc.close()


def isolated(runner: Callable[..., Any] | None = None, **options: Any) -> IsolatedRunner:
    """``runner`` (default ``tuner.trial.run_trial``) wrapped to run each trial in its own process.

    Args:
        runner: the trial runner to isolate; an ``IsolatedRunner`` is returned as it is.
        **options: ``IsolatedRunner``'s ``workdir``.
    """
    if isinstance(runner, IsolatedRunner):
        return runner
    return IsolatedRunner(runner, **options)
