"""Per-epoch checkpoints of a running trial, so that a preempted or killed trial resumes where it stopped.

A trial's checkpoint is one file, ``<folder>/checkpoint.npz``, rewritten at the end of every epoch: the model's
weights, the optimizer's variables, the states of the model's random layers and, when another epoch was better, that
epoch's weights, as NumPy arrays; and a JSON record (member ``meta``) with the epochs trained, the trial's
configuration, the history so far, the best score and its epoch, and the early-stopping state. The folder is local or
in object storage (``tuner.store.Location``); either way the file is replaced whole (written aside and renamed, or
one object put), so a reader, or a process killed while writing, finds the previous checkpoint or the new one, never
a part of one. Nothing moves a checkpoint: the runs of one trial (a trial and its retries) share one folder. The
runner writes through a ``Writer``, in a background thread, so that the next epoch trains meanwhile.

Raw arrays rather than a ``.keras`` archive: a checkpoint is written after every epoch, and serializing the model's
configuration each time costs several times more than dumping its arrays (BaseNet, 25k parameters, on CPU: about
5-15 ms per checkpoint, fsync included, against about 100 ms for ``model.save(".keras")``, on epochs of 1-4 s); the
configuration is already known (the trial's), and the model is rebuilt from it on resume.

Nothing here imports Keras.
"""

from __future__ import annotations

import json
import math
import os
import threading
import zipfile
from dataclasses import dataclass
from typing import Any, Sequence, Union

from tuner.store import Location

__all__ = ["FILE", "Checkpoint", "Folder", "Writer", "discard", "read", "read_meta", "same_config", "write"]

# A checkpoint's folder: a local path, a URL of object storage, or a Location of either.
Folder = Union[str, os.PathLike, Location]

FILE = "checkpoint.npz"
_FORMAT = "cnntune-checkpoint-v1"  # bump when the meaning of a stored array or field changes
# What reading a missing, truncated or foreign file raises.
_UNREADABLE = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile)


@dataclass
class Checkpoint:
    """The state of a trial at the end of an epoch.

    Attributes:
        epoch: epochs trained so far (counted from 1; the next run continues with epoch ``epoch + 1``).
        config: the trial's resolved configuration; a checkpoint only resumes a trial of the same one.
        history: per-metric values of the epochs trained so far, oldest first.
        best: the best monitored score so far (``None`` before any epoch scored).
        best_epoch: the epoch of ``best`` (0 before any).
        weights: the model's weights (``model.get_weights()``).
        optimizer: values of the optimizer's variables (its step count, learning rate, moments), in order.
        rng: states of the model's seed generators (random augmentation and dropout layers), in order.
        best_weights: the weights of ``best_epoch``; ``None`` when that is this epoch (they are ``weights``) or when
            no epoch scored.
        early_stopping: ``wait``, ``best`` and ``best_epoch`` of Keras' ``EarlyStopping``, when the trial uses it.
    """

    epoch: int
    config: dict[str, Any]
    history: dict[str, list[float]]
    best: float | None
    best_epoch: int
    weights: Sequence[Any]
    optimizer: Sequence[Any] = ()
    rng: Sequence[Any] = ()
    best_weights: Sequence[Any] | None = None
    early_stopping: dict[str, Any] | None = None

    def best_epoch_weights(self) -> Sequence[Any] | None:
        """The weights of the best epoch so far, or ``None`` when no epoch scored."""
        if self.best_weights is not None:
            return self.best_weights
        return self.weights if self.best_epoch == self.epoch and self.best_epoch > 0 else None

    def meta(self) -> dict[str, Any]:
        return {
            "format": _FORMAT,
            "epoch": int(self.epoch),
            "config": _normal(self.config),
            "history": self.history,
            "best": None if self.best is None or not math.isfinite(self.best) else float(self.best),
            "best_epoch": int(self.best_epoch),
            "early_stopping": self.early_stopping,
        }


def _normal(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` as JSON reads them back (tuples become lists), so that configurations compare equal."""
    return json.loads(json.dumps(values))


def same_config(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two trial configurations are the same once stored (JSON types)."""
    return _normal(a) == _normal(b)


def write(folder: Folder, ckpt: Checkpoint) -> Location:
    """Writes ``ckpt`` as the checkpoint of ``folder`` (created if missing), replacing the previous one whole.

    Returns:
        The checkpoint file.
    """
    import numpy as np

    arrays: dict[str, Any] = {"meta": np.frombuffer(json.dumps(ckpt.meta()).encode(), dtype=np.uint8)}
    groups = (("w", ckpt.weights), ("o", ckpt.optimizer), ("r", ckpt.rng), ("b", ckpt.best_weights or ()))
    for prefix, values in groups:
        arrays.update({f"{prefix}{i:05d}": np.asarray(v) for i, v in enumerate(values)})
    target = Location.of(folder) / FILE
    target.write_with(lambda f: np.savez(f, **arrays))
    return target


class Writer:
    """Writes one trial's checkpoints in a background thread, so that the next epoch trains while the last one is
    serialized and stored (``write``: 5-8 ms a BaseNet epoch to a local disk, about 20 ms for the final model's 690k
    parameters, on epochs of 0.7-8 s; seconds for a large model on a fast GPU).

    ``write`` first waits for the previous checkpoint to be stored, then hands this one over: the stored file is at
    most one write behind, and each file is whole as before. The caller hands over
    values it will not change afterwards (``get_weights()`` returns copies). ``wait`` returns once the last
    checkpoint is on disk and raises the error of a write that failed, so that a trial whose checkpoints cannot be
    written still fails, one epoch later at most. The thread is not a daemon: the interpreter lets it finish.
    """

    def __init__(self, folder: Folder):
        self.folder = Location.of(folder)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def write(self, ckpt: Checkpoint) -> None:
        self.wait()
        self._thread = threading.Thread(target=self._run, args=(ckpt,), name="cnntune-checkpoint")
        self._thread.start()

    def _run(self, ckpt: Checkpoint) -> None:
        try:
            write(self.folder, ckpt)
        except BaseException as exc:  # handed to the trial's thread by wait()
            self._error = exc

    def wait(self, raise_error: bool = True) -> None:
        """Blocks until the last checkpoint handed over is written; raises its error unless ``raise_error`` is
        false (the trial is already stopping for another reason)."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        error, self._error = self._error, None
        if error is not None and raise_error:
            raise error


def read_meta(folder: Folder) -> dict[str, Any] | None:
    """The JSON record of ``folder``'s checkpoint (epoch, config, history, best), without loading the arrays (nor
    downloading them from object storage); ``None`` when there is no readable checkpoint."""
    import numpy as np

    try:
        # The file is opened here: NumPy leaves it open when it is no zip archive.
        with (Location.of(folder) / FILE).open() as f, np.load(f, allow_pickle=False) as z:
            meta = json.loads(bytes(z["meta"]).decode())
    except _UNREADABLE:
        return None  # missing, or not a checkpoint of this format: nothing to resume from
    return meta if meta.get("format") == _FORMAT else None


def read(folder: Folder) -> Checkpoint | None:
    """``folder``'s checkpoint with its arrays, or ``None`` when there is no readable checkpoint."""
    import numpy as np

    try:
        with (Location.of(folder) / FILE).open() as f, np.load(f, allow_pickle=False) as z:
            meta = json.loads(bytes(z["meta"]).decode())
            groups: dict[str, list[Any]] = {"w": [], "o": [], "r": [], "b": []}
            for name in sorted(n for n in z.files if n != "meta"):
                groups[name[0]].append(z[name])
    except _UNREADABLE:
        return None
    if meta.get("format") != _FORMAT:
        return None
    return Checkpoint(
        epoch=int(meta["epoch"]), config=meta["config"], history=meta["history"], best=meta["best"],
        best_epoch=int(meta["best_epoch"]), weights=groups["w"], optimizer=groups["o"], rng=groups["r"],
        best_weights=groups["b"] or None, early_stopping=meta.get("early_stopping"),
    )


def discard(folder: Folder) -> None:
    """Deletes ``folder`` and its checkpoint (the trial finished); nothing when it does not exist."""
    Location.of(folder).remove()
