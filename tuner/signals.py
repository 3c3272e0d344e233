"""Ctrl-C and SIGTERM stop a search, always: the running trial is recorded as interrupted and the study can resume.

Python turns SIGINT into ``KeyboardInterrupt`` wherever the main thread happens to be. When that is a finalizer or a
weakref callback run by the garbage collector (``gc.collect()`` between trials; SQLAlchemy and TensorFlow register
many such callbacks), Python prints "Exception ignored in ..." and *drops* the exception: the search went on as if
Ctrl-C had never been pressed. Inside ``interruptible()`` the signal is also remembered, and
``raise_if_interrupted()`` (called at the start of every trial, after every training batch and after every trial)
raises it again, so a dropped interrupt stops the search at the next of those points. SIGTERM (``docker stop``,
``kill``, a scheduler's preemption) is handled the same way.

While a trial trains (``deferred()``, around ``model.fit``), the first signal is only remembered: the batch in
flight finishes and the runner raises it at the batch's end, or right after the epoch-end checkpoint when the signal
came during validation, so the checkpoint on disk is always a whole epoch's and the retried trial resumes from it.
A second signal raises at once (a batch that takes too long can still be cut short).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

__all__ = ["deferred", "interruptible", "raise_if_interrupted"]

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_pending: int | None = None  # the signal received inside interruptible() and not yet raised to the caller
_depth = 0
_deferring = 0  # > 0 inside deferred()


def _remember_and_raise(signum, frame) -> None:
    global _pending
    first = _pending is None
    _pending = signum
    if _deferring and first:
        return  # raised by raise_if_interrupted() at the next batch end
    raise KeyboardInterrupt(f"signal {signum}")


def raise_if_interrupted() -> None:
    """Raises ``KeyboardInterrupt`` when SIGINT or SIGTERM arrived inside ``interruptible()``."""
    if _pending is not None:
        raise KeyboardInterrupt(f"signal {_pending}")


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """While inside, SIGINT and SIGTERM raise ``KeyboardInterrupt`` in the main thread and are remembered until the
    outermost ``interruptible()`` ends; leaving it normally with a signal pending raises it then. The previous
    handlers are restored after. Does nothing outside the main thread."""
    global _depth, _pending
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, _remember_and_raise) for sig in _SIGNALS} if _depth == 0 else {}
    _depth += 1
    try:
        yield
        raise_if_interrupted()
    finally:
        _depth -= 1
        if _depth == 0:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            _pending = None


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """While inside (and inside ``interruptible()``), a first SIGINT or SIGTERM does not raise where the main thread
    happens to be: it is remembered, and ``raise_if_interrupted()`` raises it at the next point that calls it (the
    runner's batch and epoch ends), or on leaving the block. A second signal raises at once. Outside
    ``interruptible()`` or the main thread it does nothing."""
    global _deferring
    if _depth == 0 or threading.current_thread() is not threading.main_thread():
        yield
        return
    _deferring += 1
    try:
        yield
    finally:
        _deferring -= 1
    raise_if_interrupted()
