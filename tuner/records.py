"""Plain records the API returns, read from the study store, the ways a trial can fail, and the display protocol
engines report to.

Engines and API functions return data; one display object prints (the CLI passes a Rich one).
"""

from __future__ import annotations

import datetime
import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Mapping

__all__ = ["FINISHED", "Display", "FailureKind", "TrialRecord", "replaced_trial", "state_name", "val_noise_pp"]

# The states of a trial that ended.
FINISHED = ("complete", "pruned", "fail")


class FailureKind(str, Enum):
    """How a trial that did not complete ended: stored as the trial's ``fail_kind`` beside its message
    (``fail_reason``), so that every rule asks the kind and none parses the message.

    ``PRUNED`` and ``TIME_UP`` trials are pruned (by the pruner, or at the end of the search phase when a share of
    ``--timeout`` is kept); the others failed. ``INTERRUPTED`` (Ctrl-C, SIGTERM) is not a result: the study retries
    it, from its checkpoint. ``DIVERGED`` (a NaN or infinite loss) is an outcome of its configuration and seed: the
    same seed would diverge again. ``WORKER_DIED``: its process stopped sending heartbeats and the storage failed it
    (the study retries it in its place of the budget). ``BUDGET_FULL``: a worker created it after another took the
    budget's last place; it ran nothing.
    """

    PRUNED = "pruned"
    TIME_UP = "time_up"
    INTERRUPTED = "interrupted"
    DIVERGED = "diverged"
    OUT_OF_MEMORY = "out_of_memory"
    CRASHED = "crashed"
    ERROR = "error"
    WORKER_DIED = "worker_died"
    BUDGET_FULL = "budget_full"

    @classmethod
    def of(cls, state: str, attrs: Mapping[str, Any]) -> "FailureKind | None":
        """The kind of a stored trial (``state`` as ``state_name`` gives it): its ``fail_kind``; for a trial recorded
        before kinds were stored, read once from its message; ``None`` for a trial that completed or has not
        ended."""
        stored = attrs.get("fail_kind")
        if stored is not None:
            try:
                return cls(stored)
            except ValueError:  # a kind a later cnntune wrote: a failure all the same
                return cls.ERROR
        if state not in ("fail", "pruned"):
            return None
        if attrs.get("over_budget"):
            return cls.BUDGET_FULL
        reason = str(attrs.get("fail_reason") or "")
        for prefix, kind in _LEGACY_REASONS:
            if reason.startswith(prefix):
                return kind
        if state == "pruned":
            return cls.PRUNED
        return cls.ERROR if reason else cls.WORKER_DIED


# The messages of trials recorded before their kind was stored.
_LEGACY_REASONS = (("interrupted", FailureKind.INTERRUPTED), ("diverged", FailureKind.DIVERGED),
                   ("out of memory", FailureKind.OUT_OF_MEMORY), ("pruned at", FailureKind.PRUNED),
                   ("stopped at epoch", FailureKind.TIME_UP), ("trial process", FailureKind.CRASHED),
                   ("not run: the study's budget was full", FailureKind.BUDGET_FULL))


def replaced_trial(attrs: Mapping[str, Any], system_attrs: Mapping[str, Any]) -> int | None:
    """The trial a retry replaces, from its stored attributes; ``None`` for a trial that retries none.

    A retry after its worker died (the storage's heartbeat check, ``failed_trial``) replaces the last trial of its
    ``retry_history`` (``failed_trial`` is the first of the chain, the same for every retry of a retry); that wins
    over a ``retry_of`` it copied from the trial it retries. A retry the search queued (an interrupted trial's) names
    it as ``retry_of``.
    """
    if "failed_trial" in system_attrs:
        return int((system_attrs.get("retry_history") or [system_attrs["failed_trial"]])[-1])
    return int(attrs["retry_of"]) if attrs.get("retry_of") is not None else None


def state_name(state) -> str:
    return str(getattr(state, "name", state)).lower()


@dataclass
class TrialRecord:
    """One trial as the store holds it."""

    number: int
    state: str
    params: dict[str, Any]
    val_accuracy: float | None = None
    test_accuracy: float | None = None
    n_params: int | None = None
    seconds: float | None = None
    seed: int | None = None
    baseline: str | None = None
    reported: float | None = None
    model_path: str | None = None
    reason: str | None = None
    best_epoch: int | None = None
    epochs_run: int | None = None
    backend: str | None = None
    latency_ms: float | None = None
    macs: int | None = None
    activations: int | None = None
    kind: FailureKind | None = None
    history: dict[str, list[float]] = field(default_factory=dict)
    tags: dict[str, Any] = field(default_factory=dict)
    started: float | None = None  # when it started and finished, POSIX seconds (the storage's clock)
    finished: float | None = None

    @classmethod
    def from_trial(cls, trial) -> "TrialRecord":
        """Reads an ``optuna.trial.FrozenTrial``."""
        return cls.from_parts(trial.number, trial.state, trial.values, trial.user_attrs,
                              getattr(trial, "system_attrs", None) or {}, trial.params,
                              times=(getattr(trial, "datetime_start", None), getattr(trial, "datetime_complete", None)))

    @classmethod
    def from_parts(cls, number: int, state, values, attrs: dict[str, Any], system_attrs: dict[str, Any],
                   params: dict[str, Any] | None = None, times: tuple[Any, Any] = (None, None)) -> "TrialRecord":
        """A trial from its stored parts: number, state (``TrialState`` or its name), objective values, user and
        system attributes, Optuna's parameters (read only when the trial has no ``config`` attribute), and when it
        started and finished (``datetime`` or its ISO text, as a database returns it)."""
        # A two-objective trial (accuracy, size or latency) has several values; accuracy is the first.
        value = values[0] if values else None
        if value is None:
            value = attrs.get("val_accuracy")
        params = dict(attrs.get("config") or params or {})
        tags = {k: attrs[k] for k in ("reproduce", "reeval_of", "engine", "warm_start", "climb_of", "grown_from",
                                      "upgraded_from", "over_budget", "precision", "jit", "device_data", "kt_trial_id",
                                      "checkpoint_of", "worker")
                if k in attrs}
        replaced = replaced_trial(attrs, system_attrs)
        if replaced is not None:
            tags["retry_of"] = replaced
        state = state_name(state)
        if state == "pruned" and attrs.get("val_accuracy") is not None:
            # Optuna stores the last reported epoch as a pruned trial's value; the record keeps the best epoch's.
            value = attrs["val_accuracy"]
        return cls(
            number=number,
            state=state,
            params=params,
            val_accuracy=value,
            test_accuracy=attrs.get("test_accuracy"),
            n_params=attrs.get("n_params"),
            seconds=attrs.get("seconds"),
            seed=attrs.get("seed"),
            baseline=attrs.get("baseline"),
            reported=attrs.get("reported"),
            model_path=attrs.get("model_path"),
            reason=attrs.get("fail_reason"),
            best_epoch=attrs.get("best_epoch"),
            epochs_run=attrs.get("epochs_run"),
            backend=attrs.get("backend"),
            latency_ms=attrs.get("latency_ms"),
            macs=attrs.get("macs"),
            activations=attrs.get("activations"),
            kind=FailureKind.of(state, attrs),
            history=dict(attrs.get("history") or {}),
            tags=tags,
            started=_seconds(times[0]),
            finished=_seconds(times[1]),
        )


def _seconds(when: Any) -> float | None:
    """POSIX seconds of a storage's timestamp: a naive ``datetime`` (Optuna's local time) or its ISO text."""
    if when is None:
        return None
    if not isinstance(when, datetime.datetime):
        when = datetime.datetime.fromisoformat(str(when))
    return when.timestamp()


def val_noise_pp(accuracy: float | None, n_val: int | None) -> float | None:
    """One standard error of a validation accuracy measured on ``n_val`` images, in percentage points."""
    if accuracy is None or not n_val:
        return None
    p = min(max(float(accuracy), 0.0), 1.0)
    return 100.0 * math.sqrt(max(p * (1 - p), 1e-12) / n_val)


class Display:
    """What a search reports while it runs; this base class shows nothing (API use, tests, ``--quiet``)."""

    def search_begin(self, *, study: str, space: str, data: str, trials: int, baselines: int) -> None:
        pass

    def trial_begin(self, *, number: int, params: dict[str, Any], baseline: str | None, epochs: int,
                    seed: int | None = None, chain: int | None = None) -> None:
        """Trial ``number`` starts: ``chain`` is the first trial of the chain it belongs to when it is retried
        (its checkpoints' and its tracked run's), ``seed`` the seed it trains with."""

    def epoch_end(self, *, number: int, epoch: int, epochs: int, logs: dict[str, float]) -> None:
        pass

    def trial_end(self, record: TrialRecord) -> None:
        pass

    def message(self, text: str) -> None:
        pass

    def worker_output(self, worker: str, line: str) -> None:
        """One line a worker process printed (``search --workers N``), shown tagged with the worker's name."""

    def search_end(self) -> None:
        pass
