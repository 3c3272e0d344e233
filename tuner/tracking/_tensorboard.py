"""TensorBoard: per-trial event files and the HParams dashboard's sessions (``search --tensorboard DIR``).

``DIR/<study>/`` holds the experiment's HParams configuration (the choice points and the metrics, written by every
process, the same each time) and one run folder per trial, ``trial_NNNN``, with: the trial's session (its values,
started when the trial starts, ended with its status), its per-epoch training and validation loss and accuracy as
scalars (step = epoch), and its final validation and test accuracy. TensorBoard's HParams dashboard then lists every
trial with its values and metrics, whichever engine ran it and whichever worker. Event files are written through
TensorBoard's own writer (no TensorFlow needed), each trial's by the process that ran it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from tuner.records import Display, TrialRecord
from tuner.tracking._relay import Relay

__all__ = ["TensorBoard", "FINAL_METRICS"]

# The metrics the HParams dashboard lists, beside the per-epoch curves.
FINAL_METRICS = ("final_val_accuracy", "final_test_accuracy", "val_accuracy", "val_loss", "loss", "accuracy")


def _value(v: Any) -> bool | int | float | str:
    """A value the HParams plugin stores: bool, number or string (a tuple of widths becomes its text)."""
    return v if isinstance(v, (bool, int, float, str)) else str(v)


class TensorBoard(Relay):
    """``inner``, and every trial's curves and HParams session under ``folder/<study>`` (see the module)."""

    def __init__(self, inner: Display, folder: str | os.PathLike, study: str):
        super().__init__(inner)
        self.root = Path(folder).expanduser() / study
        self._writers: dict[int, Any] = {}
        self._configured: set[str] = set()

    def _writer(self, number: int):
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        if number not in self._writers:
            folder = self.root / f"trial_{number:04d}"
            folder.mkdir(parents=True, exist_ok=True)
            self._writers[number] = EventFileWriter(str(folder))
        return self._writers[number]

    def _write(self, number: int, summary, step: int = 0) -> None:
        from tensorboard.compat.proto import event_pb2

        self._writer(number).add_event(event_pb2.Event(summary=summary, step=step, wall_time=time.time()))

    def _configure(self, params: dict[str, Any]) -> None:
        """The experiment's configuration: its choice points and metrics (once per set of names)."""
        from tensorboard.compat.proto import event_pb2
        from tensorboard.plugins.hparams import summary_v2
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        key = ",".join(sorted(params))
        if key in self._configured:
            return
        self._configured.add(key)
        config = summary_v2.hparams_config_pb([summary_v2.HParam(k) for k in sorted(params)],
                                              [summary_v2.Metric(m) for m in FINAL_METRICS])
        self.root.mkdir(parents=True, exist_ok=True)
        writer = EventFileWriter(str(self.root))
        writer.add_event(event_pb2.Event(summary=config, wall_time=time.time()))
        writer.close()

    def trial_begin(self, *, number: int, params: dict[str, Any], baseline: str | None, epochs: int,
                    seed: int | None = None, chain: int | None = None) -> None:
        super().trial_begin(number=number, params=params, baseline=baseline, epochs=epochs, seed=seed, chain=chain)
        self._session(number, params)

    def _session(self, number: int, params: dict[str, Any]) -> None:
        """The trial's HParams session begins: its values (and the experiment's configuration, once)."""
        from tensorboard.plugins.hparams import summary_v2

        values = {k: _value(v) for k, v in params.items()}
        self._configure(values)
        self._write(number, summary_v2.hparams_pb(values, trial_id=f"trial_{number:04d}"))

    def epoch_end(self, *, number: int, epoch: int, epochs: int, logs: dict[str, float]) -> None:
        super().epoch_end(number=number, epoch=epoch, epochs=epochs, logs=logs)
        self._scalars(number, epoch, {k: v for k, v in logs.items() if isinstance(v, (int, float))})

    def _scalars(self, number: int, step: int, values: dict[str, float]) -> None:
        from tensorboard.compat.proto import summary_pb2

        summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=k, simple_value=float(v))
                                             for k, v in values.items()])
        self._write(number, summary, step)

    def trial_end(self, record: TrialRecord) -> None:
        from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2, summary_v2

        super().trial_end(record)
        if record.number not in self._writers:  # a trial whose start this process did not see: from its record
            self._session(record.number, record.params)
            for key, values in record.history.items():
                for i, v in enumerate(values):
                    if v is not None:
                        self._scalars(record.number, i + 1, {key: v})
        finals = {"final_val_accuracy": record.val_accuracy, "final_test_accuracy": record.test_accuracy}
        self._scalars(record.number, int(record.epochs_run or 0), {k: v for k, v in finals.items() if v is not None})
        status = api_pb2.STATUS_SUCCESS if record.state in ("complete", "pruned") else api_pb2.STATUS_FAILURE
        end = plugin_data_pb2.HParamsPluginData(session_end_info=plugin_data_pb2.SessionEndInfo(
            status=status, end_time_secs=time.time()))
        self._write(record.number, summary_v2._summary_pb(metadata.SESSION_END_INFO_TAG, end))
        self._writers.pop(record.number).close()

    def search_end(self) -> None:
        for writer in self._writers.values():  # trials that did not end (Ctrl-C): their events so far
            writer.close()
        self._writers.clear()
        super().search_end()
