"""Training-time label tricks of a trial: one-hot (smoothed) labels and MixUp / CutMix batches.

They belong to how a model is trained, not to the model: the exported model takes raw images and returns class
probabilities whatever the trial trained it with. A trial with label smoothing or a mix (``tuner.spec.soft_targets``)
trains on one-hot labels: the space compiles a categorical cross-entropy with its ``label_smoothing``, and the runner
one-hot encodes the labels of every split (``one_hot``), so the validation and test accuracy are the same figures as
for any other trial.

``mixed_batches``: the training images in pairs, each batch blended with a shuffled copy of itself (MixUp, Zhang et
al. 2018: ``lam * a + (1 - lam) * b``) or with a box of the copy pasted in (CutMix, Yun et al. 2019: the box covers
``1 - lam`` of the image), the labels mixed in the same proportion, ``lam`` drawn from ``Beta(alpha, alpha)`` per
batch. The images stay uint8 (a blend is rounded), as the model's input expects. Everything random is drawn from
``(seed, epoch, batch)``, so a trial resumed at an epoch sees the batches the uninterrupted run would have.
"""

from __future__ import annotations

import math
from typing import Any

from tuner.spec import MIXES

__all__ = ["MIXES", "mix_batch", "mixed_batches", "one_hot"]


def one_hot(labels, num_classes: int):
    """Class numbers as float32 one-hot rows."""
    import numpy as np

    labels = np.asarray(labels).astype("int64").reshape(-1)
    out = np.zeros((len(labels), int(num_classes)), dtype="float32")
    out[np.arange(len(labels)), labels] = 1.0
    return out


def mix_batch(x, y, mix: str, alpha: float, rng) -> tuple[Any, Any]:
    """One batch mixed with a shuffled copy of itself.

    Args:
        x: uint8 images, ``(batch, height, width, channels)``.
        y: one-hot labels, ``(batch, classes)``.
        mix: ``mixup`` or ``cutmix`` (``none`` returns the batch as it is).
        alpha: the Beta distribution's parameter (``lam ~ Beta(alpha, alpha)``).
        rng: a ``numpy.random.Generator``.

    Returns:
        ``(images, labels)``: uint8 images and float32 labels, each label row summing to 1.
    """
    import numpy as np

    if mix == "none" or len(x) < 2:
        return x, y
    if mix not in MIXES:
        raise ValueError(f"mix must be one of {list(MIXES)}. Received: mix={mix!r}")
    pair = rng.permutation(len(x))
    lam = float(rng.beta(alpha, alpha))
    if mix == "mixup":
        blend = lam * x.astype("float32") + (1.0 - lam) * x[pair].astype("float32")
        images = np.clip(np.rint(blend), 0, 255).astype(x.dtype)
    else:
        height, width = x.shape[1], x.shape[2]
        cut = math.sqrt(1.0 - lam)  # the box's side, as a share of the image's
        box_h, box_w = int(round(height * cut)), int(round(width * cut))
        cy, cx = int(rng.integers(height)), int(rng.integers(width))
        top, bottom = max(cy - box_h // 2, 0), min(cy + (box_h + 1) // 2, height)
        left, right = max(cx - box_w // 2, 0), min(cx + (box_w + 1) // 2, width)
        images = x.copy()
        images[:, top:bottom, left:right] = x[pair, top:bottom, left:right]
        lam = 1.0 - (bottom - top) * (right - left) / float(height * width)  # the box as it fell, clipped
    labels = (lam * y + (1.0 - lam) * y[pair]).astype("float32")
    return images, labels


def mixed_batches(x, y, batch_size: int, *, mix: str, alpha: float, seed: int, initial_epoch: int = 0):
    """A ``keras.utils.PyDataset`` of shuffled, mixed training batches (see the module's docstring); pass it to
    ``fit`` with ``shuffle=False`` and no ``batch_size``. ``y`` is one-hot."""
    import keras
    import numpy as np

    class MixedBatches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()
            self.x, self.y = np.asarray(x), np.asarray(y)
            self.rows, self.batch_size = int(len(self.x)), int(batch_size)
            self.epoch = int(initial_epoch)
            self.order = np.arange(self.rows)

        def __len__(self) -> int:
            return math.ceil(self.rows / self.batch_size)

        def on_epoch_begin(self) -> None:
            self.order = np.random.default_rng([int(seed), self.epoch]).permutation(self.rows)
            self.epoch += 1

        def __getitem__(self, index: int):
            rows = self.order[index * self.batch_size:(index + 1) * self.batch_size]
            rng = np.random.default_rng([int(seed), self.epoch, int(index)])
            return mix_batch(self.x[rows], self.y[rows], mix, alpha, rng)

    return MixedBatches()
