"""The trial runner: build, fit with callbacks, evaluate, save the best-epoch model.

It never chooses hyperparameters: it is handed the resolved values of one trial. It imports Keras only when a
trial runs, so commands that do not train stay fast. Given a folder, it checkpoints the trial at the end of every
epoch (``tuner.trial._checkpoint``) and can resume a trial from such a checkpoint.
"""

from __future__ import annotations

import gc
import math
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterator, Sequence

from tuner.errors import CnntuneError
from tuner.quiet import quiet_libraries
from tuner.signals import deferred
from tuner.spec import ModelSpec, soft_targets
from tuner.trial import _callbacks, _checkpoint
from tuner.trial._accel import apply_jit, precision_policy
from tuner.trial._cost import activations, multiply_adds
from tuner.trial._device_data import device_batches, wanted
from tuner.trial._mixing import mixed_batches, one_hot

__all__ = ["FitOptions", "TrialDiverged", "TrialOutcome", "fit_options", "long_lived", "model_spec", "run_trial"]

# Keep TensorFlow's start-up chatter and library warnings out of the terminal (before Keras is imported), unless
# --verbose; a TF_CPP_MIN_LOG_LEVEL the user set is kept.
quiet_libraries()


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
    mix: str = "none"  # MixUp / CutMix of the training batches (tuner.trial._mixing)
    mix_alpha: float = 0.2
    soft_targets: bool = False  # one-hot labels (label smoothing or a mix: tuner.spec.soft_targets)


def fit_options(params: dict[str, Any]) -> FitOptions:
    """Training options of a trial, read from its resolved hyperparameters."""
    return FitOptions(
        epochs=int(params.get("epochs", 1)),
        batch_size=int(params.get("batch_size", 32)),
        early_stopping=bool(params.get("early_stopping", False)),
        patience=int(params.get("patience", 5) if params.get("patience") is not None else 5),
        mix=str(params.get("mix") or "none"),
        mix_alpha=float(params.get("mix_alpha") or 0.2),
        soft_targets=soft_targets(params),
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
        train_size=int(len(data.x_train)),
    )


EpochHook = _callbacks.EpochHook


@contextmanager
def long_lived() -> Iterator[None]:
    """Keeps the objects alive when a search starts its trials out of the garbage collector's full collections.

    Each trial starts with a full collection (``clear_session``) that frees the previous trial's model. With
    TensorFlow, Keras, Optuna and the data loaded, such a collection walks about half a million objects that are
    never garbage: 0.3-0.4 s on 2 busy CPU cores, against 2-3 s for a whole BaseNet trial of 3 epochs. Frozen
    (``gc.freeze``), they are skipped and a collection walks only what the trials made (0.02-0.04 s). Reference
    counting still frees frozen objects; cycles among them are collected after the search (the freeze is undone).
    The young generations are collected first, so that recent garbage is not kept; a freeze made by someone else is
    left as it is.
    """
    if gc.get_freeze_count():
        yield
        return
    gc.collect(1)
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


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


def _fit_inputs(feed: bool, x_train, y_train, x_val, y_val, opts: FitOptions, seed: int,
                initial_epoch: int) -> dict[str, Any]:
    """``fit``'s data keywords: the arrays (Keras batches and shuffles them on the host), device-resident
    batches shuffled per epoch from ``(seed, epoch)`` (``tuner.trial._device_data``), or, for a trial that mixes its
    training images, mixed batches made on the host (``tuner.trial._mixing``)."""
    mixes = opts.mix != "none"
    if not feed and not mixes:
        return dict(x=x_train, y=y_train, validation_data=None if x_val is None else (x_val, y_val),
                    batch_size=opts.batch_size, shuffle=True)
    val = None if x_val is None else (device_batches(x_val, y_val, opts.batch_size, shuffle=False) if feed
                                      else (x_val, y_val))
    if mixes:
        train = mixed_batches(x_train, y_train, opts.batch_size, mix=opts.mix, alpha=opts.mix_alpha, seed=seed,
                              initial_epoch=int(initial_epoch))
    else:
        train = device_batches(x_train, y_train, opts.batch_size, shuffle=True, seed=seed,
                               initial_epoch=int(initial_epoch))
    return dict(x=train, validation_data=val, shuffle=False)


LATENCY_BATCH = 32
LATENCY_REPEATS = 5


def latency_ms(model, images) -> float:
    """Milliseconds per image of ``model`` predicting a batch of ``LATENCY_BATCH`` images, on this machine: the
    median of ``LATENCY_REPEATS`` timed batches after one untimed warm-up batch (which compiles the function)."""
    import numpy as np

    batch = np.asarray(images[:LATENCY_BATCH])
    model.predict_on_batch(batch)
    times = []
    for _ in range(LATENCY_REPEATS):
        t0 = time.perf_counter()
        model.predict_on_batch(batch)
        times.append(time.perf_counter() - t0)
    return round(1000.0 * float(np.median(times)) / len(batch), 4)


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
    checkpoint_dir: str | os.PathLike | None = None,
    resume_from: str | os.PathLike | None = None,
    measure_latency: bool = False,
    precision: str = "float32",
    jit: bool | None = None,
    device_data: str | None = None,
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
            (``_features``); ``None`` uses the default folder, ``False`` trains end to end without the cache.
        initial_epoch: epochs already trained (a Hyperband round continuing an earlier one): training runs epochs
            ``initial_epoch + 1 .. epochs`` and the history holds those epochs only.
        continue_from: a model file of the same configuration (an earlier round's best epoch) whose weights the
            model starts from.
        checkpoint_dir: folder (or URL of object storage) to write the trial's checkpoint into at the end of every
            epoch (``_checkpoint``);
            ``None`` writes none. The caller deletes it once the trial is over.
        resume_from: a checkpoint folder of the same configuration to resume from: weights, optimizer state, history
            and best epoch are restored and training continues with the epoch after the checkpoint's (it replaces
            ``initial_epoch`` and ``continue_from``); the history then holds the checkpoint's epochs and this run's.
        measure_latency: also time the final model (raw images in) on validation images: ``extra["latency_ms"]``.
        precision: ``float32``, or ``bfloat16`` / ``float16`` to train under Keras's mixed-precision policy
            (``tuner.trial._accel``); recorded as ``extra["precision"]`` when not float32.
        jit: ``True``/``False`` sets the model's ``jit_compile``; ``None`` is Keras's ``"auto"``, which on JAX also
            compiles random zoom and rotation (``tuner.trial.apply_jit``). When given, the value the model trained
            with is ``extra["jit"]``.
        device_data: ``auto`` (default: on for JAX and PyTorch on a GPU), ``on`` or ``off``: the data copied to
            the device once and batched there (``_device_data``); recorded as ``extra["device_data"]`` when on.

    Returns:
        A ``TrialOutcome``; validation accuracy is the best epoch's, and the saved model is that epoch's.

    Raises:
        TrialDiverged: the loss became NaN or infinite.
        CnntuneError: ``resume_from`` holds no checkpoint, or one of another configuration.
    """
    import keras

    start = time.perf_counter()
    # A fresh graph per trial: without it, Keras keeps every past model alive and memory grows per trial. It runs a
    # full garbage collection too (free_memory): a second one would find nothing more and cost as much again.
    keras.backend.clear_session()
    keras.utils.set_random_seed(int(seed))

    with precision_policy(precision):  # models built and trained in this trial; restored after
        opts = fit_options(params)
        resume = None
        if resume_from is not None:
            resume = _checkpoint.read(resume_from)
            if resume is None:
                raise CnntuneError(f"no checkpoint to resume from in {resume_from}")
            if not _checkpoint.same_config(resume.config, params):
                raise CnntuneError(f"the checkpoint in {resume_from} is of another configuration; not resumed")
            initial_epoch = resume.epoch
        spec = model_spec(data, spec_options)
        # A frozen backbone's features are computed once and cached; the trial then trains only the head on them.
        plan = None
        if feature_cache is not False and hasattr(space, "feature_extractor"):
            from tuner.trial import _features  # NumPy: loaded when a trial runs, not when the CLI starts

            plan = _features.head_only(space, params, spec, data, None if feature_cache is True else feature_cache)
        if plan is not None:
            model = plan.head
            (x_train, y_train), (x_val, y_val), (x_test, y_test) = (plan.arrays[s] for s in ("train", "val", "test"))
        else:
            model = space.build(params, spec)
            x_train, y_train, x_val, y_val, x_test, y_test = (data.x_train, data.y_train, data.x_val, data.y_val,
                                                              data.x_test, data.y_test)
        if opts.soft_targets:  # the loss takes one-hot labels; so do the accuracy figures of every split
            y_train, y_val, y_test = (one_hot(y, data.num_classes) for y in (y_train, y_val, y_test))
        if resume is not None:
            _callbacks.restore(model, resume)
        elif continue_from is not None:
            _load_weights(model, continue_from, head_only=plan is not None)
        jit_compile = apply_jit(model, jit)
        # What training costs per image, of the model that trains (a head on cached features: the head's).
        costs = {"macs": multiply_adds(model), "activations": activations(model)}
        feed = wanted(device_data)  # the arrays copied to the accelerator once, batches gathered there
        has_val = len(x_val) > 0
        monitor = "val_accuracy" if has_val else "accuracy"
        best_epoch_cls, checkpoint_cls = _callbacks.callback_classes()
        best = best_epoch_cls(monitor, on_epoch, should_stop, resume)
        callbacks: list[Any] = [best, *extra_callbacks]
        early = None
        if opts.early_stopping:
            early = keras.callbacks.EarlyStopping(monitor=monitor, mode="max", patience=opts.patience)
            callbacks.append(early)
        checkpoint = checkpoint_cls(checkpoint_dir, params, best, early, resume)
        callbacks.append(checkpoint)

        # A Ctrl-C or SIGTERM during training lets the batch in flight finish and stops at its end (tuner.signals).
        try:
            with deferred():
                model.fit(**_fit_inputs(feed, x_train, y_train, x_val if has_val else None, y_val, opts, seed,
                                        initial_epoch),
                          epochs=opts.epochs, initial_epoch=int(initial_epoch), verbose=0, callbacks=callbacks)
        except BaseException:
            checkpoint.finish(raise_error=False)  # the last checkpoint is on disk before the trial is recorded
            raise
        checkpoint.finish()
        if best.diverged_at is not None:
            raise TrialDiverged(best.diverged_at, best.history)
        if best.best_weights is not None:
            model.set_weights(best.best_weights)

        test_acc = None
        if evaluate_test and len(x_test):
            test_batch = max(opts.batch_size, 256)
            test_data = (dict(x=device_batches(x_test, y_test, test_batch, shuffle=False)) if feed else
                         dict(x=x_test, y=y_test, batch_size=test_batch))
            results = model.evaluate(**test_data, verbose=0, return_dict=True)
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
        extra = dict(plan.attrs) if plan is not None else (
            {"feature_cache": "off"} if hasattr(space, "feature_extractor") else {})
        if precision != "float32":
            extra["precision"] = precision
        if jit is not None:
            extra["jit"] = jit_compile
        if feed:
            extra["device_data"] = True
        if measure_latency:
            extra["latency_ms"] = latency_ms(model, data.x_val if len(data.x_val) else data.x_train)
        extra.update({key: value for key, value in costs.items() if value is not None})
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
            extra=extra,
        )
        del model
        return outcome
