"""The trial runner's Keras side of a checkpoint: the callbacks that keep the best epoch and write a checkpoint at
the end of every epoch, and the restore of a checkpoint into a built model.

Keras is imported when a trial runs, never when this module is imported.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from tuner.errors import CnntuneError
from tuner.signals import raise_if_interrupted
from tuner.trial import _checkpoint

__all__ = ["EpochHook", "callback_classes", "restore", "rng_states"]

EpochHook = Callable[[int, dict[str, float]], None]


def callback_classes():
    """Keras callbacks of the runner, defined on first use so that importing this module stays Keras-free."""
    import keras
    import numpy as np

    class BestEpoch(keras.callbacks.Callback):
        """Keeps the weights of the epoch with the best validation accuracy in memory; stops on NaN/inf.

        A resumed trial starts from its checkpoint's history and best epoch, so that both cover every epoch."""

        def __init__(self, monitor: str, on_epoch: EpochHook | None, should_stop: Callable[[int, dict], bool] | None,
                     resume: _checkpoint.Checkpoint | None = None):
            super().__init__()
            self.monitor = monitor
            self.on_epoch = on_epoch
            self.should_stop = should_stop
            self.best = -math.inf
            self.best_epoch = 0
            self.best_weights = None
            self.history: dict[str, list[float]] = {}
            self.diverged_at: int | None = None
            self.epochs_run = 0
            if resume is not None:
                self.history = {k: list(v) for k, v in resume.history.items()}
                self.best = -math.inf if resume.best is None else float(resume.best)
                self.best_epoch = resume.best_epoch
                weights = resume.best_epoch_weights()
                self.best_weights = None if weights is None else list(weights)
                self.epochs_run = resume.epoch

        def on_train_batch_end(self, batch, logs=None):
            raise_if_interrupted()  # a Ctrl-C that the garbage collector swallowed during this trial
            loss = (logs or {}).get("loss")
            if loss is not None and not math.isfinite(float(loss)):
                self.diverged_at = self.epochs_run + 1
                self.model.stop_training = True

        def on_epoch_end(self, epoch, logs=None):
            logs = {k: float(v) for k, v in (logs or {}).items()}
            self.epochs_run = epoch + 1
            for key, value in logs.items():
                self.history.setdefault(key, []).append(value)
            if self.diverged_at is not None or not math.isfinite(logs.get("loss", 0.0)):
                self.diverged_at = epoch + 1
                self.model.stop_training = True
                return
            score = logs.get(self.monitor, -math.inf)
            if score > self.best:
                self.best, self.best_epoch = score, epoch + 1
                self.best_weights = [np.array(w) for w in self.model.get_weights()]
            if self.on_epoch is not None:
                self.on_epoch(epoch + 1, logs)
            if self.should_stop is not None and self.should_stop(epoch + 1, logs):
                self.model.stop_training = True

    class EpochCheckpoint(keras.callbacks.Callback):
        """Writes the trial's checkpoint at the end of every epoch; runs after every other callback, so that the
        best epoch and the early-stopping state it records are this epoch's."""

        def __init__(self, folder: _checkpoint.Folder | None, config: dict[str, Any], best: BestEpoch,
                     early_stopping=None, resume: _checkpoint.Checkpoint | None = None):
            super().__init__()
            self.folder = folder
            self.config = config
            self.best = best
            self.early_stopping = early_stopping
            self.resume = resume
            self.writer = None if folder is None else _checkpoint.Writer(folder)

        def on_train_begin(self, logs=None):
            # After EarlyStopping's own on_train_begin, which resets its state.
            es, state = self.early_stopping, self.resume.early_stopping if self.resume is not None else None
            if es is not None and state:
                es.wait, es.best, es.best_epoch = int(state["wait"]), state["best"], int(state["best_epoch"])

        def on_epoch_end(self, epoch, logs=None):
            best = self.best
            if self.writer is not None and best.diverged_at is None:
                current = best.best_epoch == epoch + 1  # then the best weights are this epoch's: stored once
                es = self.early_stopping
                # Written in the background: every value handed over is a copy the next epochs do not change.
                self.writer.write(_checkpoint.Checkpoint(
                    epoch=epoch + 1, config=self.config, history={k: list(v) for k, v in best.history.items()},
                    best=best.best if math.isfinite(best.best) else None, best_epoch=best.best_epoch,
                    weights=best.best_weights if current else self.model.get_weights(),
                    optimizer=[v.numpy() for v in self.model.optimizer.variables],
                    rng=[v.numpy() for v in rng_states(self.model)],
                    best_weights=None if current else best.best_weights,
                    early_stopping=None if es is None else {
                        "wait": int(es.wait), "best_epoch": int(es.best_epoch),
                        "best": None if es.best is None else float(es.best)},
                ))
            try:
                raise_if_interrupted()  # a signal that came during this epoch's validation stops here
            except KeyboardInterrupt:
                self.finish(raise_error=False)  # with this epoch's checkpoint on disk
                raise

        def finish(self, raise_error: bool = True) -> None:
            """Waits for the last checkpoint to be on disk (``_checkpoint.Writer.wait``); the runner calls it when
            training ends, however it ends, so that nothing writes into the folder once the trial is over."""
            if self.writer is not None:
                self.writer.wait(raise_error)

    return BestEpoch, EpochCheckpoint


def rng_states(model) -> list:
    """The state variables of the model's seed generators (random augmentation, dropout). They are not among its
    weights; restoring them continues the random stream where the checkpoint left it, so that a resumed trial trains
    as the uninterrupted one would have."""
    weights = {id(v) for v in model.weights}
    return [v for v in model.variables if id(v) not in weights and v.name == "seed_generator_state"]


def restore(model, ckpt: _checkpoint.Checkpoint) -> None:
    """Sets ``model``'s weights, its optimizer's state (step count, moments) and its random layers' states to the
    checkpoint's.

    Raises:
        CnntuneError: the optimizer's variables do not match the checkpoint's (another optimizer).
    """
    model.set_weights(list(ckpt.weights))
    optimizer = model.optimizer
    if not optimizer.built:  # built by the first training step otherwise; its variables must exist to be set
        optimizer.build(model.trainable_variables)
    variables = list(optimizer.variables)
    if len(variables) != len(ckpt.optimizer) or any(
            tuple(v.shape) != tuple(a.shape) for v, a in zip(variables, ckpt.optimizer)):
        raise CnntuneError(f"the checkpoint's optimizer state does not fit the trial's optimizer "
                           f"({len(ckpt.optimizer)} stored variables, {len(variables)} expected)")
    for variable, value in zip(variables, ckpt.optimizer):
        variable.assign(value)
    states = rng_states(model)
    if len(states) == len(ckpt.rng):  # else another Keras named them otherwise: only reproducibility suffers
        for variable, value in zip(states, ckpt.rng):
            variable.assign(value)
