"""``Relay``: a display that hands every call on to the display it wraps; a tracker overrides what it adds."""

from __future__ import annotations

from typing import Any

from tuner.records import Display, TrialRecord

__all__ = ["Relay"]


class Relay(Display):
    """Shows a search through ``inner``; subclasses call these first and then do their own part."""

    def __init__(self, inner: Display):
        self.inner = inner

    def search_begin(self, **kwargs: Any) -> None:
        self.inner.search_begin(**kwargs)

    def trial_begin(self, *, number: int, params: dict[str, Any], baseline: str | None, epochs: int,
                    seed: int | None = None, chain: int | None = None) -> None:
        self.inner.trial_begin(number=number, params=params, baseline=baseline, epochs=epochs, seed=seed, chain=chain)

    def epoch_end(self, *, number: int, epoch: int, epochs: int, logs: dict[str, float]) -> None:
        self.inner.epoch_end(number=number, epoch=epoch, epochs=epochs, logs=logs)

    def trial_end(self, record: TrialRecord) -> None:
        self.inner.trial_end(record)

    def message(self, text: str) -> None:
        self.inner.message(text)

    def worker_output(self, worker: str, line: str) -> None:
        self.inner.worker_output(worker, line)

    def search_end(self) -> None:
        self.inner.search_end()
