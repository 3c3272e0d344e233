"""SIGTERM stops a search like Ctrl-C: the running trial is recorded as interrupted and the study can resume."""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

__all__ = ["sigterm_as_interrupt"]


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While inside, SIGTERM (``docker stop``, ``kill``, a scheduler's preemption) raises ``KeyboardInterrupt``
    in the main thread; the previous handler is restored after. Does nothing outside the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
