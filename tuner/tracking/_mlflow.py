"""MLflow: every trial in a tracking server (``search --track URI``), off the training path.

A study is an MLflow experiment (named after the study, tagged ``cnntune.study``); each search or worker process is a
parent run (named after the process, ``cnntune.role`` search or worker), and each trial a nested run of it (tag
``mlflow.parentRunId``) holding: its configuration as params, with the values that differ from the space's
hand-chosen configuration as the tag ``cnntune.differs``; the per-epoch loss and accuracy, training and validation,
as metric histories (step = epoch); its final validation and test accuracy, parameters and seconds; and tags for
the trial's number, its baseline name (the study's hand-chosen configurations, so that MLflow's compare view shows
search against hand-chosen), state, failure kind and message, seed, backend, and what it came from (warm start,
grown from, climbed from, retry of, re-evaluation of).

``Tracked`` is a ``Display``: it forwards everything to the display it wraps and hands the tracker's work to one
background thread, so a trial never waits on the server. The client's timeouts are short (5 s, one retry, unless
``MLFLOW_HTTP_REQUEST_*`` say otherwise): a server that is down or slow costs a warning, once per cause, and the
search goes on; calls that failed are tried again after the next trial and at the end of the search, which lists
what could still not be logged. The study store stays the record of truth.

MLflow is imported in the background thread only, and only with ``--track``.
"""

from __future__ import annotations

import os
import queue
import socket
import threading
import time
from typing import Any, Callable

from tuner.records import Display, TrialRecord
from tuner.store import one_line, redact
from tuner.tracking._relay import Relay

__all__ = ["Tracked", "TRACK_TIMEOUTS"]

# The MLflow client's defaults retry a failing call for minutes (7 retries, 120 s timeouts): here a call gives up
# within seconds; the variables still win when set.
TRACK_TIMEOUTS = {"MLFLOW_HTTP_REQUEST_TIMEOUT": "5", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
                  "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}
_FLUSH_S = 30.0  # the longest the end of a search waits for the tracker
_QUIET_S = 10.0  # after a failed call, the tracker is not asked again for this long
_TAGS = ("warm_start", "grown_from", "climb_of", "retry_of", "reeval_of", "reproduce", "precision", "jit", "worker")
_STATUS = {"complete": "FINISHED", "pruned": "FINISHED", "fail": "FAILED"}


class Tracked(Relay):
    """``inner``, and every trial logged to the MLflow server at ``uri`` (see the module).

    Args:
        inner: the display that shows the search.
        uri: the tracking URI (``http://host:5000``, a ``file:`` or database URI).
        study: the study's name: the experiment's.
        role: ``search`` or ``worker``; the parent run is named ``ROLE-HOST-PID``.
        defaults: the space's hand-chosen configuration, for the ``cnntune.differs`` tag.
    """

    def __init__(self, inner: Display, uri: str, study: str, role: str, defaults: dict[str, Any] | None = None):
        super().__init__(inner)
        self.uri = uri
        self.study = study
        self.role = role
        self.defaults = dict(defaults or {})
        self._client = None
        self._experiment: str | None = None
        self._parent: str | None = None
        self._runs: dict[int, str] = {}  # trial number -> run id, while it runs
        self._retry: list[tuple[str, Callable[[], None]]] = []  # what failed, to try again
        self._warned: set[str] = set()
        self._quiet_until = 0.0
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._serve, name="cnntune-track", daemon=True)
        self._thread.start()

    @property
    def unlogged(self) -> list[str]:
        """What could not be logged (after ``search_end``): one name per call, e.g. ``trial 3's result``."""
        return [name for name, _ in self._retry]

    def logged_trials(self) -> set[int]:
        """The trial numbers whose runs the study's experiment holds in full (``cnntune.trial`` and
        ``cnntune.state`` tags): what a backfill skips. A run that was started but whose result never arrived (the
        server went down mid-trial) is the one a backfill completes, not a second one.

        Raises:
            Exception: the server's, when it cannot be reached.
        """
        client = self._connect()
        found = client.get_experiment_by_name(self.study)
        if found is None:
            return set()
        self._experiment = found.experiment_id
        runs = client.search_runs([found.experiment_id], filter_string=f"tags.`cnntune.study` = '{self.study}'",
                                  max_results=50000)
        done = set()
        for run in runs:
            if "cnntune.trial" not in run.data.tags:
                continue
            if "cnntune.state" in run.data.tags:
                done.add(int(run.data.tags["cnntune.trial"]))
            else:
                self._runs.setdefault(int(run.data.tags["cnntune.trial"]), run.info.run_id)
        return done

    # -- the display ------------------------------------------------------------------------------------------------
    def search_begin(self, **kwargs: Any) -> None:
        super().search_begin(**kwargs)
        self._do("the search's run", self._ensure_parent)

    def trial_begin(self, *, number: int, params: dict[str, Any], baseline: str | None, epochs: int) -> None:
        super().trial_begin(number=number, params=params, baseline=baseline, epochs=epochs)
        self._do(f"trial {number}'s run", lambda: self._start(number, dict(params), baseline))

    def epoch_end(self, *, number: int, epoch: int, epochs: int, logs: dict[str, float]) -> None:
        super().epoch_end(number=number, epoch=epoch, epochs=epochs, logs=logs)
        stamp = int(time.time() * 1000)
        values = {k: float(v) for k, v in logs.items() if isinstance(v, (int, float))}
        self._do(f"trial {number}'s epoch {epoch}", lambda: self._epoch(number, epoch, values, stamp))

    def trial_end(self, record: TrialRecord) -> None:
        super().trial_end(record)
        self._do(f"trial {record.number}'s result", lambda: self._finish(record))
        self._queue.put(self._retry_failed)

    def search_end(self) -> None:
        self._do("the search's end", self._end)
        self._queue.put(lambda: self._retry_failed(final=True))
        done = threading.Event()
        self._queue.put(done.set)
        if not done.wait(_FLUSH_S):
            self.inner.message(f"warning: the MLflow server at {redact(self.uri)} did not take the last logs within "
                               f"{_FLUSH_S:.0f} s; the study holds every trial")
        elif self._retry:
            what = ", ".join(name for name, _ in self._retry[:5]) + (" ..." if len(self._retry) > 5 else "")
            self.inner.message(f"warning: not logged to MLflow at {redact(self.uri)}: {what}; the study holds every "
                               "trial")
        super().search_end()

    # -- the background thread -----------------------------------------------------------------------------------------
    def _do(self, name: str, call: Callable[[], Any]) -> None:
        self._queue.put((name, call))

    def _serve(self) -> None:
        while True:
            item = self._queue.get()
            if callable(item):
                item()
            else:
                self._attempt(*item)

    def _attempt(self, name: str, call: Callable[[], Any], final: bool = False) -> bool:
        """Runs one call; a failed one is kept to try again. For ``_QUIET_S`` after a failure calls are kept without
        being tried (a server that is down costs one timeout, not one per call), except in the final round."""
        if not final and time.monotonic() < self._quiet_until:
            self._retry.append((name, call))
            return False
        try:
            call()
            return True
        except Exception as exc:  # a tracker that is down or slow never costs a trial
            self._retry.append((name, call))
            self._quiet_until = time.monotonic() + _QUIET_S
            self._warn(exc)
            return False

    def _retry_failed(self, final: bool = False) -> None:
        """Tries the failed calls again, in order, until one fails again."""
        failed, self._retry = self._retry, []
        for i, (name, call) in enumerate(failed):
            if not self._attempt(name, call, final):
                self._retry.extend(failed[i + 1:])
                return

    def _warn(self, exc: Exception) -> None:
        cause = type(exc).__name__
        if cause in self._warned:
            return
        self._warned.add(cause)
        self.inner.message(f"warning: MLflow at {redact(self.uri)}: {one_line(exc, 200)}; the search goes on and the "
                           "study keeps every trial")

    def _connect(self):
        if self._client is None:
            for key, value in TRACK_TIMEOUTS.items():
                os.environ.setdefault(key, value)
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(tracking_uri=self.uri)
        return self._client

    def _ensure_parent(self) -> str:
        client = self._connect()
        if self._experiment is None:
            found = client.get_experiment_by_name(self.study)
            self._experiment = (found.experiment_id if found is not None
                                else client.create_experiment(self.study, tags={"cnntune.study": self.study}))
        if self._parent is None:
            name = f"{self.role}-{socket.gethostname()}-{os.getpid()}"
            run = client.create_run(self._experiment, run_name=name,
                                    tags={"cnntune.study": self.study, "cnntune.role": self.role})
            self._parent = run.info.run_id
        return self._parent

    def _start(self, number: int, params: dict[str, Any], baseline: str | None) -> None:
        from mlflow.entities import Param

        parent = self._ensure_parent()
        tags = {"mlflow.parentRunId": parent, "cnntune.study": self.study, "cnntune.trial": str(number),
                "cnntune.kind": "baseline" if baseline else "searched"}
        if baseline:
            tags["cnntune.baseline"] = baseline
        differs = {k: v for k, v in params.items() if k in self.defaults and self.defaults[k] != v}
        tags["cnntune.differs"] = ", ".join(f"{k}={v}" for k, v in differs.items()) or "(hand-chosen)"
        run = self._runs.get(number)  # tried again after a failure: the run may exist already
        if run is None:
            run = self._client.create_run(self._experiment, run_name=baseline or f"trial {number}",
                                          tags=tags).info.run_id
            self._runs[number] = run
        self._client.log_batch(run, params=[Param(k, str(v)[:500]) for k, v in params.items()])

    def _epoch(self, number: int, epoch: int, values: dict[str, float], stamp: int) -> None:
        from mlflow.entities import Metric

        run = self._runs.get(number)
        if run is not None:
            self._client.log_batch(run, metrics=[Metric(k, v, stamp, epoch) for k, v in values.items()])

    def _finish(self, record: TrialRecord) -> None:
        from mlflow.entities import Metric, RunTag

        run = self._runs.get(record.number)
        if run is None:  # a trial whose start was not logged (the server was down): its run now, from the record
            self._start(record.number, dict(record.params), record.baseline)
            run = self._runs[record.number]
            stamp = int(time.time() * 1000)
            history = [Metric(k, float(v), stamp, i + 1) for k, values in record.history.items()
                       for i, v in enumerate(values) if v is not None]
            self._client.log_batch(run, metrics=history)
        stamp = int(time.time() * 1000)
        finals = {"final_val_accuracy": record.val_accuracy, "final_test_accuracy": record.test_accuracy,
                  "n_params": record.n_params, "seconds": record.seconds, "best_epoch": record.best_epoch,
                  "epochs_run": record.epochs_run}
        metrics = [Metric(k, float(v), stamp, 0) for k, v in finals.items() if v is not None]
        tags = {"cnntune.state": record.state, "cnntune.seed": record.seed, "cnntune.backend": record.backend,
                "cnntune.fail_kind": record.kind.value if record.kind else None, "cnntune.reason": record.reason,
                **{f"cnntune.{k}": record.tags.get(k) for k in _TAGS}}
        self._client.log_batch(run, metrics=metrics, tags=[RunTag(k, str(v)[:5000]) for k, v in tags.items()
                                                           if v is not None])
        self._client.set_terminated(run, status=_STATUS.get(record.state, "KILLED"))
        del self._runs[record.number]  # only now: a retry of this call must not log the trial twice

    def _end(self) -> None:
        """Ends the runs of trials that did not finish (Ctrl-C, SIGTERM) as KILLED, then the search's run."""
        for number in list(self._runs):
            self._client.set_terminated(self._runs.pop(number), status="KILLED")
        if self._parent is not None:
            self._client.set_terminated(self._parent)


def register_model(uri: str, name: str, model_file, *, study: str, run_name: str, params: dict[str, Any],
                   metrics: dict[str, float], tags: dict[str, Any]) -> str:
    """Logs an exported model (raw uint8 images in, class probabilities out) to the study's experiment with its
    metadata, and registers it as a new version of ``name`` in MLflow's model registry, with a signature that says
    so: it loads with ``mlflow.keras.load_model`` and ``mlflow.pyfunc.load_model`` and predicts on raw images.

    Returns:
        The registered version.
    """
    for key, value in TRACK_TIMEOUTS.items():
        os.environ.setdefault(key, value)
    import keras
    import mlflow
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.tracking import MlflowClient
    from mlflow.types import Schema, TensorSpec

    model = keras.saving.load_model(model_file)
    images, classes = tuple(model.input_shape[1:]), int(model.output_shape[-1])
    signature = ModelSignature(inputs=Schema([TensorSpec(np.dtype("uint8"), (-1, *images))]),
                               outputs=Schema([TensorSpec(np.dtype("float32"), (-1, classes))]))
    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(study)
    experiment = found.experiment_id if found is not None else client.create_experiment(
        study, tags={"cnntune.study": study})
    before = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        with mlflow.start_run(experiment_id=experiment, run_name=run_name,
                              tags={"cnntune.study": study, **{k: str(v) for k, v in tags.items() if v is not None}}
                              ) as run:
            mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
            mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v is not None})
            mlflow.keras.log_model(model, "model", signature=signature, registered_model_name=name)
    finally:
        mlflow.set_tracking_uri(before)
    versions = client.search_model_versions(f"name = '{name}' and run_id = '{run.info.run_id}'")
    return str(max(int(v.version) for v in versions))
