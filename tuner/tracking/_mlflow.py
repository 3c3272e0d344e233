"""MLflow: every trial in a tracking server (``search --track URI``), off the training path.

A study is an MLflow experiment (named after the study, tagged ``cnntune.study``); each search or worker process is a
parent run (named after the process, ``cnntune.role`` search or worker), and each trial a nested run of it (tag
``mlflow.parentRunId``) holding: its configuration as params, with the values that differ from the space's
hand-chosen configuration as the tag ``cnntune.differs``; the per-epoch loss and accuracy, training and validation,
as metric histories (step = epoch); its final validation and test accuracy, parameters and seconds; and tags for
the trial's number, its baseline name (the study's hand-chosen configurations, so that MLflow's compare view shows
search against hand-chosen), state, failure kind and message, pruned-at epoch, seed, backend, and what it came from
(warm start, grown from, climbed from, retry of, re-evaluation of). ``reproduce`` logs each baseline's seeds under
one parent run per baseline (``cnntune.group``), found again when an interrupted reproduction resumes.

A retried trial (an interrupted one, or a dead worker's) continues the run of the trial it retries, on whichever
worker runs it: runs are found by their tags, ``cnntune.chain`` (the chain's first trial), ``cnntune.trial`` (the
trial logging into it now) and ``cnntune.trials`` (the trials whose results it holds), never by a run id stored on
a trial, since a trial that has finished can no longer be written. Its epochs go on at the steps it resumes from.

``Tracked`` is a ``Display``: it forwards everything to the display it wraps and hands the tracker's work to one
background thread, so a trial never waits on the server. Epoch metrics are sent at most every ``_EPOCHS_EVERY_S``
per trial (the rest with the trial's result). A call gives up within seconds (``tuner.tracking._server``): a server
that is down or slow costs a warning, once per cause, and the search goes on; calls that failed are tried again
after the next trial and at the end of the search, which lists what could still not be logged. The study store
stays the record of truth.

An ``http(s)://`` server is spoken to over MLflow's REST API without importing MLflow; other URIs use its client.
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
from tuner.tracking._server import TRACK_TIMEOUTS, Client, Metric, server

__all__ = ["Tracked", "TRACK_TIMEOUTS"]

_FLUSH_S = 30.0  # the longest the end of a search waits for the tracker
_QUIET_S = 10.0  # after a failed call, the tracker is not asked again for this long
_EPOCHS_EVERY_S = 5.0  # a trial's epoch metrics are sent at most this often; the rest with its result
_TAGS = ("warm_start", "grown_from", "upgraded_from", "climb_of", "retry_of", "reeval_of", "reproduce", "precision",
         "jit", "worker")
_STATUS = {"complete": "FINISHED", "pruned": "FINISHED", "fail": "FAILED"}


def _numbers(text: str | None) -> set[int]:
    """The trial numbers of a ``cnntune.trials`` tag."""
    return {int(n) for n in (text or "").split()}


def _trials_tag(numbers: set[int]) -> str:
    """``numbers`` as the ``cnntune.trials`` tag (``_numbers`` reads it back)."""
    return " ".join(str(n) for n in sorted(numbers))


class Tracked(Relay):
    """``inner``, and every trial logged to the MLflow server at ``uri`` (see the module).

    Args:
        inner: the display that shows the search.
        uri: the tracking URI (``http://host:5000``, a ``file:`` or database URI).
        study: the study's name: the experiment's.
        role: ``search``, ``worker``, ``reproduce`` or ``backfill``; the parent run is named ``ROLE-HOST-PID``
            (``reproduce``: one per baseline, named after it).
        defaults: the space's hand-chosen configuration, for the ``cnntune.differs`` tag.
    """

    def __init__(self, inner: Display, uri: str, study: str, role: str, defaults: dict[str, Any] | None = None):
        super().__init__(inner)
        self.uri = uri
        self.study = study
        self.role = role
        self.defaults = dict(defaults or {})
        self._server = None
        self._experiment: str | None = None
        self._parents: dict[str | None, str] = {}  # group (reproduce: the baseline) -> parent run id
        self._runs: dict[int, str] = {}  # trial number -> run id, while it runs
        self._chains: dict[int, str] = {}  # a chain's first trial -> its run id
        self._held: dict[str, set[int]] = {}  # run id -> the trials whose results it holds
        self._done: set[int] = set()  # trials whose results this process logged
        self._pending: dict[int, list[Metric]] = {}  # epoch metrics not sent yet (the training thread's)
        self._sent: dict[int, float] = {}  # trial -> when its epochs were last sent
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
        """The trial numbers whose results the study's experiment holds: what a backfill skips. A run whose trial
        started but whose result never arrived (the server went down mid-trial) is the one a backfill completes,
        and a retried trial's result goes to its chain's run, not a second one.

        Raises:
            Exception: the server's, when it cannot be reached.
        """
        self._connect()
        self._experiment = self._server.find_experiment(self.study)
        if self._experiment is None:
            return set()
        done: set[int] = set()
        for run in self._server.runs(self._experiment, f"tags.`cnntune.study` = '{self.study}'"):
            if "cnntune.trial" not in run.tags:
                continue
            trial = int(run.tags["cnntune.trial"])
            held = _numbers(run.tags.get("cnntune.trials")) or ({trial} if "cnntune.state" in run.tags else set())
            self._held[run.run_id] = held
            self._chains[int(run.tags.get("cnntune.chain", trial))] = run.run_id
            if trial not in held:
                self._runs.setdefault(trial, run.run_id)
            done |= held
        return done

    # -- the display ------------------------------------------------------------------------------------------------
    def trial_begin(self, *, number: int, params: dict[str, Any], baseline: str | None, epochs: int,
                    seed: int | None = None, chain: int | None = None) -> None:
        super().trial_begin(number=number, params=params, baseline=baseline, epochs=epochs, seed=seed, chain=chain)
        self._pending[number], self._sent[number] = [], 0.0
        self._do(f"trial {number}'s run", lambda: self._start(number, dict(params), baseline, seed, chain))

    def epoch_end(self, *, number: int, epoch: int, epochs: int, logs: dict[str, float]) -> None:
        super().epoch_end(number=number, epoch=epoch, epochs=epochs, logs=logs)
        stamp = int(time.time() * 1000)
        pending = self._pending.setdefault(number, [])
        pending.extend((k, float(v), stamp, epoch) for k, v in logs.items() if isinstance(v, (int, float)))
        if time.monotonic() - self._sent.get(number, 0.0) >= _EPOCHS_EVERY_S:
            self._sent[number], self._pending[number] = time.monotonic(), []
            self._do(f"trial {number}'s epoch {epoch}", lambda: self._epochs(number, pending))

    def trial_end(self, record: TrialRecord) -> None:
        super().trial_end(record)
        pending = self._pending.pop(record.number, [])
        self._sent.pop(record.number, None)
        self._do(f"trial {record.number}'s result", lambda: self._finish(record, pending))
        self._queue.put(self._retry_failed)

    def search_end(self) -> None:
        pending, self._pending = self._pending, {}  # the epochs of trials that did not end: sent with their end
        self._do("the search's end", lambda: self._end(pending))
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
        if self._server is None:
            self._server = server(self.uri)
        return self._server

    def _ensure_experiment(self) -> str:
        if self._experiment is None:
            self._experiment = self._connect().experiment(self.study, {"cnntune.study": self.study})
        return self._experiment

    def _parent(self, group: str | None) -> str:
        """The parent run of this process (``reproduce``: of the baseline ``group``, the one an earlier reproduction
        of the study started when there is one)."""
        if group in self._parents:
            return self._parents[group]
        experiment, tags = self._ensure_experiment(), {"cnntune.study": self.study, "cnntune.role": self.role}
        parent = None
        if group is not None:
            tags["cnntune.group"] = group
            found = self._server.runs(experiment, f"tags.`cnntune.study` = '{self.study}' and "
                                                  f"tags.`cnntune.group` = '{group}'")
            if found:
                parent = found[0].run_id
                self._server.set_status(parent, "RUNNING")
        if parent is None:
            name = group or f"{self.role}-{socket.gethostname()}-{os.getpid()}"
            parent = self._server.create_run(experiment, name, tags)
        self._parents[group] = parent
        return parent

    def _chain_run(self, chain: int) -> str | None:
        """The run of the chain that starts at trial ``chain``: known here, or logged by another process."""
        if chain not in self._chains:
            experiment = self._ensure_experiment()
            found = self._server.runs(experiment, f"tags.`cnntune.study` = '{self.study}' and "
                                                  f"tags.`cnntune.chain` = '{chain}'")
            if found:
                self._chains[chain] = found[0].run_id
                self._held[found[0].run_id] = _numbers(found[0].tags.get("cnntune.trials"))
        return self._chains.get(chain)

    def _start(self, number: int, params: dict[str, Any], baseline: str | None, seed: int | None,
               chain: int | None) -> None:
        if number in self._done:  # its result was logged (the start is being retried after it): nothing to do
            return
        run = self._runs.get(number)
        if run is not None:
            return
        key = number if chain is None else chain
        run = self._chain_run(key) if key != number or key in self._chains else None
        if run is not None:  # a retry: its chain's run goes on (a backfilled older trial only adds to it)
            if self._newest(run, number):
                self._server.set_status(run, "RUNNING")
                self._server.log(run, tags={"cnntune.trial": str(number)})
            self._runs[number] = run
            return
        group = baseline if self.role == "reproduce" else None
        tags = {"mlflow.parentRunId": self._parent(group), "cnntune.study": self.study, "cnntune.trial": str(number),
                "cnntune.chain": str(key), "cnntune.kind": "baseline" if baseline else "searched"}
        if baseline:
            tags["cnntune.baseline"] = baseline
        differs = {k: v for k, v in params.items() if k in self.defaults and self.defaults[k] != v}
        tags["cnntune.differs"] = ", ".join(f"{k}={v}" for k, v in differs.items()) or "(hand-chosen)"
        if self.role == "reproduce" and seed is not None:
            name = f"{baseline} seed {seed}"
        else:
            name = baseline or f"trial {number}"
        run = self._server.create_run(self._experiment, name, tags)
        self._runs[number], self._chains[key], self._held[run] = run, run, set()
        self._server.log(run, params={k: str(v)[:500] for k, v in params.items()})

    def _newest(self, run: str, number: int) -> bool:
        """Whether trial ``number`` is the latest of the trials ``run`` holds: the one whose state the run shows."""
        held = self._held.get(run, set())
        return not held or number >= max(held)

    def _epochs(self, number: int, metrics: list[Metric]) -> None:
        run = self._runs.get(number)
        if run is not None and number not in self._done:
            self._server.log(run, metrics=metrics)

    def _finish(self, record: TrialRecord, pending: list[Metric]) -> None:
        run = self._runs.get(record.number)
        if run is None:  # its start was not logged (the server was down, or a backfill): its run now, from the record
            chain = record.tags.get("checkpoint_of")
            self._start(record.number, dict(record.params), record.baseline, record.seed,
                        None if chain is None else int(chain))
            run = self._runs[record.number]
            stamp = int(time.time() * 1000)
            pending = [(k, float(v), stamp, i + 1) for k, values in record.history.items()
                       for i, v in enumerate(values) if v is not None]
        held = self._held.get(run, set())
        newest = self._newest(run, record.number)  # a backfilled older trial of the chain adds its curves only
        tags = {"cnntune.trials": _trials_tag(held | {record.number})}
        metrics = list(pending)
        if newest:
            stamp = int(time.time() * 1000)
            finals = {"final_val_accuracy": record.val_accuracy, "final_test_accuracy": record.test_accuracy,
                      "n_params": record.n_params, "seconds": record.seconds, "best_epoch": record.best_epoch,
                      "epochs_run": record.epochs_run}
            metrics += [(k, float(v), stamp, 0) for k, v in finals.items() if v is not None]
            pruned_at = record.epochs_run if record.state == "pruned" else None
            tags.update({k: str(v)[:5000] for k, v in {
                "cnntune.trial": record.number, "cnntune.state": record.state, "cnntune.seed": record.seed,
                "cnntune.backend": record.backend, "cnntune.fail_kind": record.kind.value if record.kind else None,
                "cnntune.reason": record.reason, "cnntune.pruned_at_epoch": pruned_at,
                **{f"cnntune.{k}": record.tags.get(k) for k in _TAGS}}.items() if v is not None})
        self._server.log(run, metrics=metrics, tags=tags)
        self._held[run] = held | {record.number}
        if newest:
            self._server.set_status(run, _STATUS.get(record.state, "KILLED"))
        self._done.add(record.number)
        del self._runs[record.number]  # only now: a retry of this call must not log the trial twice

    def _end(self, pending: dict[int, list[Metric]]) -> None:
        """Ends the runs of trials that did not finish (Ctrl-C, SIGTERM: interrupted, as the study records them) as
        KILLED, holding their trial (its retry goes on in the run), then this process's runs."""
        for number in list(self._runs):
            run = self._runs[number]
            held = self._held.get(run, set()) | {number}
            tags = {"cnntune.trials": _trials_tag(held), "cnntune.state": "fail",
                    "cnntune.fail_kind": "interrupted", "cnntune.reason": "interrupted"}
            self._server.log(run, metrics=pending.get(number, []), tags=tags)
            self._server.set_status(run, "KILLED")
            self._held[run] = held
            del self._runs[number]
        for parent in self._parents.values():
            self._server.set_status(parent, "FINISHED")


def register_model(uri: str, name: str, model_file, *, study: str, run_name: str, params: dict[str, Any],
                   metrics: dict[str, float], tags: dict[str, Any]) -> str:
    """Logs an exported model (raw uint8 images in, class probabilities out) to the study's experiment with its
    metadata, and registers it as a new version of ``name`` in MLflow's model registry, with a signature that says
    so: it loads with ``mlflow.keras.load_model`` and ``mlflow.pyfunc.load_model`` and predicts on raw images.

    Returns:
        The registered version.
    """
    client = Client(uri)  # first: it sets the client's short timeouts
    import keras
    import mlflow
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    model = keras.saving.load_model(model_file)
    images, classes = tuple(model.input_shape[1:]), int(model.output_shape[-1])
    signature = ModelSignature(inputs=Schema([TensorSpec(np.dtype("uint8"), (-1, *images))]),
                               outputs=Schema([TensorSpec(np.dtype("float32"), (-1, classes))]))
    experiment = client.experiment(study, {"cnntune.study": study})
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
    versions = client.client.search_model_versions(f"name = '{name}' and run_id = '{run.info.run_id}'")
    return str(max(int(v.version) for v in versions))
