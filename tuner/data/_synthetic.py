"""Generated, learnable images for fast tests: no files, no downloads, milliseconds to build."""

from __future__ import annotations

import colorsys
import math

import numpy as np

__all__ = ["MAX_CLASSES", "TEST_PER_CLASS", "TRAIN_PER_CLASS", "make_synthetic"]

TRAIN_PER_CLASS = 40
TEST_PER_CLASS = 20
MAX_CLASSES = 1000
_SEED = 20240611  # fixed: the images are a property of the dataset, like files on disk
_GOLDEN = (math.sqrt(5) - 1) / 2  # spreads hues / angles of any number of classes evenly


def _class_images(label: int, split: int, count: int, size: int) -> np.ndarray:
    """``count`` images of one class: its own colour and stripe pattern, plus per-image noise.

    Each class is drawn from its own generator, so class k looks the same whatever ``classes`` is.
    """
    rng = np.random.default_rng([_SEED, size, label, split])
    hue = (label * _GOLDEN) % 1.0
    colour = np.array(colorsys.hsv_to_rgb(hue, 0.75, 0.8), dtype=np.float32) * 255.0
    angle = math.pi * ((label * (1 - _GOLDEN)) % 1.0)
    cycles = 2 + label % 3  # stripes across the image
    coords = np.linspace(0.0, 1.0, size, dtype=np.float32)
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    ramp = (xx * math.cos(angle) + yy * math.sin(angle)) * (2 * math.pi * cycles)
    phase = rng.uniform(0, 2 * math.pi, size=(count, 1, 1)).astype(np.float32)
    stripes = np.sin(ramp[None] + phase)  # (count, size, size): same orientation, random shift
    brightness = rng.uniform(0.8, 1.2, size=(count, 1, 1, 1)).astype(np.float32)
    img = colour * brightness * (0.7 + 0.3 * stripes[..., None])
    img += rng.normal(0.0, 20.0, size=img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def make_synthetic(
    classes: int, size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Generate the synthetic dataset (deterministic for a given ``classes`` and ``size``).

    Args:
        classes: Number of classes.
        size: Image height and width.

    Returns:
        ``x_train, y_train, x_test, y_test, class_names`` with ``TRAIN_PER_CLASS`` and
        ``TEST_PER_CLASS`` images per class.
    """
    parts = {}
    for split, per_class in ((0, TRAIN_PER_CLASS), (1, TEST_PER_CLASS)):
        x = np.concatenate([_class_images(c, split, per_class, size) for c in range(classes)])
        y = np.repeat(np.arange(classes, dtype=np.int64), per_class)
        parts[split] = (x, y)
    names = [f"class_{i}" for i in range(classes)]
    return parts[0][0], parts[0][1], parts[1][0], parts[1][1], names
