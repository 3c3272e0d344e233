"""The trial runner: build, fit with callbacks, evaluate, save the best-epoch model.

It never chooses hyperparameters: it is handed the resolved values of one trial. It imports Keras only when a
trial runs, so commands that do not train stay fast.
"""

from __future__ import annotations

import gc
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Sequence

from tuner._signals import raise_if_interrupted
from tuner.errors import CnntuneError
from tuner.spec import ModelSpec

__all__ = ["FitOptions", "TrialDiverged", "TrialOutcome", "fit_options", "model_spec", "run_trial"]

# Keep TensorFlow's C++ start-up chatter out of the terminal; users can still override it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


class TrialDiverged(CnntuneError):
    """The loss became NaN or infinite; the trial stops at once."""

    def __init__(self, epoch: int, history: dict[str, list[float]]):
        super().__init__(f"diverged at epoch {epoch}")
        self.epoch = epoch
        self.history = history


@dataclass(frozen=True)
class FitOptions:
    epochs: int
    batch_size: int
    early_stopping: bool = False
    patience: int = 5


def fit_options(params: dict[str, Any]) -> FitOptions:
    """Training options of a trial, read from its resolved hyperparameters."""
    return FitOptions(
        epochs=int(params.get("epochs", 1)),
        batch_size=int(params.get("batch_size", 32)),
        early_stopping=bool(params.get("early_stopping", False)),
        patience=int(params.get("patience", 5) if params.get("patience") is not None else 5),
    )


@dataclass
class TrialOutcome:
    """What one trial measured."""

    val_accuracy: float
    test_accuracy: float | None
    n_params: int
    history: dict[str, list[float]]
    best_epoch: int
    epochs_run: int
    seconds: float
    model_path: str | None
    backend: str
    extra: dict[str, Any] = field(default_factory=dict)


def model_spec(data, options: dict[str, Any] | None = None) -> ModelSpec:
    mean, variance = data.channel_stats()
    return ModelSpec(
        input_shape=tuple(int(v) for v in data.input_shape),
        num_classes=int(data.num_classes),
        mean=tuple(float(v) for v in mean),
        variance=tuple(float(v) for v in variance),
        options=dict(options or {}),
    )


EpochHook = Callable[[int, dict[str, float]], None]


def _callback_classes():
    """Keras callbacks of the runner, defined on first use so that importing this module stays Keras-free."""
    import keras
    import numpy as np

    class BestEpoch(keras.callbacks.Callback):
        """Keeps the weights of the epoch with the best validation accuracy in memory; stops on NaN/inf."""

        def __init__(self, monitor: str, on_epoch: EpochHook | None, should_stop: Callable[[int, dict], bool] | None):
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

    return BestEpoch


def _load_weights(model, path: str | os.PathLike, head_only: bool) -> None:
    """Starts ``model`` from the weights of a saved model of the same configuration.

    A head trained on cached features was saved composed with its backbone (one model, raw images in); its head is
    the nested model named like ``model``.
    """
    import keras

    saved = keras.saving.load_model(path, compile=False)
    source = saved.get_layer(model.name) if head_only else saved
    model.set_weights(source.get_weights())
    del saved


def run_trial(
    space: ModuleType,
    params: dict[str, Any],
    data,
    *,
    seed: int,
    model_path: str | os.PathLike | None,
    on_epoch: EpochHook | None = None,
    should_stop: Callable[[int, dict], bool] | None = None,
    extra_callbacks: Sequence[Any] = (),
    evaluate_test: bool = True,
    spec_options: dict[str, Any] | None = None,
    feature_cache: str | os.PathLike | bool | None = None,
    initial_epoch: int = 0,
    continue_from: str | os.PathLike | None = None,
) -> TrialOutcome:
    """Builds, fits and evaluates one configuration.

    Args:
        space: the search space module.
        params: resolved values of the space's active choice points.
        data: a ``tuner.data.Dataset``.
        seed: seeds Python, NumPy and the backend before the model is built.
        model_path: where to save the best-epoch model (``.keras``); ``None`` saves nothing.
        on_epoch: called with ``(epoch, logs)`` after each epoch (progress, pruning reports).
        should_stop: returns True to stop training after an epoch (pruning).
        extra_callbacks: more Keras callbacks.
        evaluate_test: also measure accuracy on the test split.
        spec_options: extras handed to the space through ``ModelSpec.options``.
        feature_cache: folder of cached backbone features for spaces that offer head-only training
            (``tuner._features``); ``None`` uses the default folder, ``False`` trains end to end without the cache.
        initial_epoch: epochs already trained (a Hyperband round continuing an earlier one): training runs epochs
            ``initial_epoch + 1 .. epochs`` and the history holds those epochs only.
        continue_from: a model file of the same configuration (an earlier round's best epoch) whose weights the
            model starts from.

    Returns:
        A ``TrialOutcome``; validation accuracy is the best epoch's, and the saved model is that epoch's.

    Raises:
        TrialDiverged: the loss became NaN or infinite.
    """
    import keras

    start = time.perf_counter()
    # A fresh graph per trial: without it, Keras keeps every past model alive and memory grows per trial.
    keras.backend.clear_session()
    gc.collect()
    keras.utils.set_random_seed(int(seed))

    opts = fit_options(params)
    spec = model_spec(data, spec_options)
    # A frozen backbone's features are computed once and cached; the trial then trains only the head on them.
    plan = None
    if feature_cache is not False and hasattr(space, "feature_extractor"):
        from tuner import _features  # NumPy: loaded when a trial runs, not when the CLI starts

        plan = _features.head_only(space, params, spec, data, None if feature_cache is True else feature_cache)
    if plan is not None:
        model = plan.head
        (x_train, y_train), (x_val, y_val), (x_test, y_test) = (plan.arrays[s] for s in ("train", "val", "test"))
    else:
        model = space.build(params, spec)
        x_train, y_train, x_val, y_val, x_test, y_test = (data.x_train, data.y_train, data.x_val, data.y_val,
                                                          data.x_test, data.y_test)
    if continue_from is not None:
        _load_weights(model, continue_from, head_only=plan is not None)
    has_val = len(x_val) > 0
    monitor = "val_accuracy" if has_val else "accuracy"
    best = _callback_classes()(monitor, on_epoch, should_stop)
    callbacks: list[Any] = [best, *extra_callbacks]
    if opts.early_stopping:
        callbacks.append(keras.callbacks.EarlyStopping(monitor=monitor, mode="max", patience=opts.patience))

    model.fit(
        x_train,
        y_train,
        validation_data=(x_val, y_val) if has_val else None,
        epochs=opts.epochs,
        initial_epoch=int(initial_epoch),
        batch_size=opts.batch_size,
        shuffle=True,
        verbose=0,
        callbacks=callbacks,
    )
    if best.diverged_at is not None:
        raise TrialDiverged(best.diverged_at, best.history)
    if best.best_weights is not None:
        model.set_weights(best.best_weights)

    test_acc = None
    if evaluate_test and len(x_test):
        results = model.evaluate(x_test, y_test, batch_size=max(opts.batch_size, 256), verbose=0,
                                 return_dict=True)
        test_acc = float(results["accuracy"])
    if plan is not None:
        model = plan.compose(model)  # one model: backbone + trained head, raw images in
    if hasattr(space, "saveable"):
        model = space.saveable(model)  # e.g. training-only optimizer classes swapped for built-in ones
    saved = None
    if model_path is not None:
        path = Path(model_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        model.save(path)
        saved = str(path)
    n_params = int(model.count_params())
    outcome = TrialOutcome(
        val_accuracy=float(best.best) if math.isfinite(best.best) else 0.0,
        test_accuracy=test_acc,
        n_params=n_params,
        history=best.history,
        best_epoch=best.best_epoch,
        epochs_run=best.epochs_run,
        seconds=time.perf_counter() - start,
        model_path=saved,
        backend=keras.backend.backend(),
        extra=dict(plan.attrs) if plan is not None else (
            {"feature_cache": "off"} if hasattr(space, "feature_extractor") else {}),
    )
    del model
    return outcome
