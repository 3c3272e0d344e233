"""Training data that lives on the accelerator: copied there once per trial, batches gathered there.

Keras's ``fit`` on NumPy arrays slices every batch on the host and copies it to the device inside the step (PyTorch
synchronously; JAX one batch ahead). ``DeviceBatches`` holds the images (uint8, as loaded: the study's CIFAR subset
is 38 MB, the shared birds at 224 px 450 MB) and labels as backend tensors on the device; an epoch uploads one
permutation and every batch is a gather on the device, so no step waits for the host. Augmentation stays inside the
model.

The permutation of epoch ``e`` is drawn from ``(seed, e)`` alone, so a trial resumed at epoch ``e`` (``--resume``,
a retried trial) sees exactly the batches the uninterrupted run would have, on every backend.

``wanted(mode)``: ``"on"``, ``"off"``, or ``"auto"``: on for the JAX and PyTorch backends when they run on a GPU
(TensorFlow's own input pipeline already prefetches, and its ``PyDataset`` path would copy through the host).
"""

from __future__ import annotations

import math
from typing import Any

from tuner.options import option_value

__all__ = ["check_device_data", "device_batches", "wanted"]

def check_device_data(value: str | None) -> str:
    """``--device-data``'s value (``None``: ``auto``).

    Raises:
        CnntuneError: anything but auto, on or off.
    """
    return option_value("device_data", value) or "auto"


def _on_gpu(backend: str) -> bool:
    if backend == "jax":
        import jax

        return jax.default_backend() in ("gpu", "cuda", "rocm")
    if backend == "torch":
        import torch

        return bool(torch.cuda.is_available())
    return False


def wanted(mode: str | None) -> bool:
    """Whether a trial feeds its data from the device (``mode``: auto, on or off)."""
    mode = check_device_data(mode)
    if mode != "auto":
        return mode == "on"
    import keras

    backend = keras.backend.backend()
    return backend in ("jax", "torch") and _on_gpu(backend)


def device_batches(x, y, batch_size: int, *, shuffle: bool, seed: int = 0,
                   initial_epoch: int = 0):
    """A ``keras.utils.PyDataset`` over ``x``/``y`` copied to the device; pass it to ``fit`` with ``shuffle=False``
    (it shuffles itself, per epoch, from ``(seed, epoch)``) and no ``batch_size``."""
    import keras
    import numpy as np

    class DeviceBatches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()
            self.x = keras.ops.convert_to_tensor(np.asarray(x))
            self.y = keras.ops.convert_to_tensor(np.asarray(y))
            self.rows = int(len(x))
            self.batch_size = int(batch_size)
            self.epoch = int(initial_epoch)
            self.order: Any = None

        def __len__(self) -> int:  # PyDataset's num_batches
            return math.ceil(self.rows / self.batch_size)

        def on_epoch_begin(self) -> None:
            if shuffle:
                order = np.random.default_rng([int(seed), self.epoch]).permutation(self.rows).astype("int32")
                self.order = keras.ops.convert_to_tensor(order)  # one upload per epoch
            self.epoch += 1

        def __getitem__(self, index: int):
            start, stop = index * self.batch_size, min((index + 1) * self.batch_size, self.rows)
            if self.order is None:  # in order (validation, test)
                return self.x[start:stop], self.y[start:stop]
            rows = self.order[start:stop]
            return keras.ops.take(self.x, rows, axis=0), keras.ops.take(self.y, rows, axis=0)

    return DeviceBatches()
