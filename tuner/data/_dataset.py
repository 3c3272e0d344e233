"""The ``Dataset`` container every engine and model builder receives, and its content fingerprint."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Dataset", "compute_fingerprint"]

# Bump when the meaning of the loaded arrays changes (decoder, resize filter, split rule), so
# results stored under an old fingerprint are not mistaken for results on the new arrays.
_FINGERPRINT_VERSION = "cnntune-data-v1"

# Pixels per chunk when computing channel statistics: bounds the int32 temporary to ~12 MB
# instead of one wide copy of the whole training set.
_STATS_CHUNK = 1 << 20

_SPLITS = ("train", "val", "test")


def compute_fingerprint(
    name: str,
    class_names: list[str],
    arrays: Mapping[str, np.ndarray],
    config: Mapping[str, Any] | None = None,
) -> str:
    """Hash the loaded arrays, labels, class names and loading config into a content key.

    Only bytes, shapes and dtypes enter the hash (never ``hash()`` or object ids), so the key is the
    same in every process and on every machine that loads the same data the same way.

    Args:
        name: The dataset name, e.g. ``"cub200"``.
        class_names: Class names in label order.
        arrays: Arrays keyed by role (``"x_train"``, ``"y_train"``, ...); hashed in sorted key order.
        config: Loading options that shaped the arrays (image size, split fraction and seed...).

    Returns:
        A 64-character hexadecimal sha256 digest.
    """
    h = hashlib.sha256()
    header = {
        "version": _FINGERPRINT_VERSION,
        "name": name,
        "class_names": list(class_names),
        "config": dict(config or {}),
    }
    h.update(json.dumps(header, sort_keys=True, default=str).encode())
    for key in sorted(arrays):
        arr = arrays[key]
        # A fixed byte order keeps the key identical on big-endian hosts (a no-op for uint8).
        arr = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<"))
        h.update(f"|{key}:{arr.dtype.str}:{arr.shape}|".encode())
        h.update(arr.reshape(-1).view(np.uint8))
    return h.hexdigest()


@dataclass(eq=False, repr=False)
class Dataset:
    """Images and labels of one dataset, split into train, validation and test parts.

    Instances returned by ``load_dataset`` are cached and shared inside a process, so their arrays
    are read-only: convert (``x.astype("float32")``) instead of modifying them in place. Equality is
    identity; compare ``fingerprint`` to know whether two datasets hold the same content.

    Attributes:
        name: ``"cifar100_25"``, ``"cub200"``, ``"folder"`` or ``"synthetic"``.
        x_train: uint8 images ``(N, H, W, 3)``: the training part of the dataset's train split.
        y_train: int64 labels ``(N,)`` in ``0..num_classes-1``.
        x_val: uint8 images: a stratified, seeded part of the train split held out for validation.
        y_val: int64 labels of ``x_val``.
        x_test: uint8 images of the dataset's own test split.
        y_test: int64 labels of ``x_test``.
        class_names: Class names in label order.
        fingerprint: Content key (sha256) over arrays, labels and loading config. Computed from the
            arrays and class names when left empty.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str]
    fingerprint: str = ""
    _channel_stats: tuple[tuple[float, ...], tuple[float, ...]] | None = field(
        default=None, init=False, repr=False
    )

    def __post_init__(self) -> None:
        self.class_names = [str(c) for c in self.class_names]
        for split in _SPLITS:
            x = np.asarray(getattr(self, f"x_{split}"))
            y = np.asarray(getattr(self, f"y_{split}"))
            if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] != 3:
                raise ValueError(f"x_{split} must be uint8 (N, H, W, 3), got {x.dtype} {x.shape}")
            if y.ndim != 1 or len(y) != len(x):
                raise ValueError(f"y_{split} must be 1-D with {len(x)} labels, got shape {y.shape}")
            y = y.astype(np.int64, copy=False)
            if len(y) and (y.min() < 0 or y.max() >= len(self.class_names)):
                raise ValueError(f"y_{split} has labels outside 0..{len(self.class_names) - 1}")
            # Read-only views: a cached Dataset is shared by every caller in the process, and an
            # in-place `x /= 255` by one of them would silently corrupt it for all the others.
            x, y = x.view(), y.view()
            x.flags.writeable = False
            y.flags.writeable = False
            setattr(self, f"x_{split}", x)
            setattr(self, f"y_{split}", y)
        shapes = {getattr(self, f"x_{s}").shape[1:] for s in _SPLITS}
        if len(shapes) != 1:
            raise ValueError(f"all splits must share one image shape, got {sorted(shapes)}")
        if not self.fingerprint:
            self.fingerprint = compute_fingerprint(self.name, self.class_names, self._arrays())

    def _arrays(self) -> dict[str, np.ndarray]:
        return {f"{p}_{s}": getattr(self, f"{p}_{s}") for s in _SPLITS for p in ("x", "y")}

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """Shape of one image, ``(H, W, 3)``."""
        h, w, c = self.x_train.shape[1:]
        return int(h), int(w), int(c)

    @property
    def num_classes(self) -> int:
        """Number of classes (labels are ``0..num_classes-1``)."""
        return len(self.class_names)

    def channel_stats(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel mean and (population) variance of ``x_train`` on the 0-255 scale.

        Computed once and cached: model builders use it to set a normalization layer without a pass
        over the data per trial. The variance is the population variance (``ddof=0``), as Keras'
        ``Normalization.adapt`` computes it.

        Returns:
            ``(mean, variance)``, each a tuple with one float per channel.
        """
        if self._channel_stats is None:
            pixels = self.x_train.reshape(-1, self.x_train.shape[-1])
            channels = pixels.shape[1]
            # A per-channel histogram of the uint8 values gives exact sums and is several times
            # faster than summing float copies (0.5 s instead of 2 s for 1,200 images at 224x224).
            offsets = (np.arange(channels, dtype=np.int32) * 256)[None, :]
            hist = np.zeros((channels, 256), dtype=np.int64)
            for start in range(0, len(pixels), _STATS_CHUNK):
                idx = pixels[start : start + _STATS_CHUNK].astype(np.int32) + offsets
                hist += np.bincount(idx.ravel(), minlength=channels * 256).reshape(channels, 256)
            values = np.arange(256, dtype=np.float64)
            count = max(len(pixels), 1)
            mean = hist @ values / count
            var = np.maximum(hist @ np.square(values) / count - np.square(mean), 0.0)
            self._channel_stats = (
                tuple(float(m) for m in mean),
                tuple(float(v) for v in var),
            )
        return self._channel_stats

    def describe(self) -> dict[str, Any]:
        """A small JSON-able summary: name, split sizes, image shape, class count, fingerprint."""
        return {
            "name": self.name,
            "train": int(len(self.x_train)),
            "val": int(len(self.x_val)),
            "test": int(len(self.x_test)),
            "image_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "fingerprint": self.fingerprint,
        }

    def __repr__(self) -> str:
        # The default dataclass repr would print the arrays.
        return (
            f"Dataset(name={self.name!r}, train={len(self.x_train)}, val={len(self.x_val)}, "
            f"test={len(self.x_test)}, input_shape={self.input_shape}, "
            f"num_classes={self.num_classes}, fingerprint={self.fingerprint[:12]!r})"
        )
