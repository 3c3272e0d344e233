"""Stratified, seeded splits (validation part of a train split, test hold-out of a folder tree)."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["STREAM_TEST_HOLDOUT", "STREAM_VAL", "stratified_split"]

# Independent random streams, so the validation split and a folder's test hold-out never reuse
# the same permutation.
STREAM_VAL = 0
STREAM_TEST_HOLDOUT = 1


def stratified_split(
    labels: np.ndarray, fraction: float, seed: int, stream: int = STREAM_VAL
) -> tuple[np.ndarray, np.ndarray]:
    """Split indices class by class, holding out ``fraction`` of each class.

    Each class is shuffled by its own generator seeded with ``(seed, stream, label)``: the split of
    a class does not depend on which other classes are loaded, so ``classes=5`` gives the same
    split of classes 0-4 as the full dataset. A class with at least 2 images keeps at least one
    image on each side whenever ``fraction > 0``; a class with a single image stays on the kept side.

    Args:
        labels: Integer labels, one per item.
        fraction: Share of each class to hold out, in ``[0, 1)``.
        seed: Non-negative split seed.
        stream: Which independent stream to draw from (``STREAM_VAL``, ``STREAM_TEST_HOLDOUT``).

    Returns:
        ``(kept, held_out)``: sorted index arrays into ``labels``.
    """
    labels = np.asarray(labels)
    if fraction <= 0 or len(labels) == 0:
        return np.arange(len(labels)), np.empty(0, dtype=np.int64)
    kept: list[np.ndarray] = []
    held: list[np.ndarray] = []
    for label in np.unique(labels):
        idx = np.flatnonzero(labels == label)
        n = len(idx)
        # Round half up (not Python's banker's rounding): 30 images at 0.2 -> 6, 5 at 0.5 -> 3.
        k = math.floor(fraction * n + 0.5)
        k = min(max(k, 1), n - 1) if n >= 2 else 0
        order = np.random.default_rng([int(seed), int(stream), int(label)]).permutation(n)
        held.append(idx[order[:k]])
        kept.append(idx[order[k:]])
    return np.sort(np.concatenate(kept)), np.sort(np.concatenate(held))
