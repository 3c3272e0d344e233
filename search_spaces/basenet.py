"""BaseNet, the study's starting point, with the training nuisances searched.

The body is the study's BaseNet exactly (24,197 parameters with 25 classes at 32x32x3), no normalization, no
augmentation, 15 epochs. What the study never varied is searched here: ``optimizer`` (adam/sgd/rmsprop),
``learning_rate`` (1e-4..1e-2, log) and ``batch_size`` (16/32/64/128); defaults are the study's Adam, 1e-3, 32.

Study table (STUDY.md, part 1):

| # | layer | kernel | in -> out size | channels |
|---|---|---|---|---|
| 1 | Conv2D + ReLU | 5x5 | 32 -> 28 | 3 -> 6 |
| 2 | MaxPooling2D | 2 | 28 -> 14 | |
| 3 | Conv2D + ReLU | 5x5 | 14 -> 10 | 6 -> 16 |
| 4 | MaxPooling2D | 2 | 10 -> 5 | |
| 5 | Flatten, Dense 50 + ReLU | | 400 -> 50 | |
| 6 | Dense 25 + softmax | | 50 -> 25 | |

Reported: 31.68% (one run) and 22.68% (another run, diverged at epoch 12-13): the study's spread is ~9 points.
"""

from __future__ import annotations

from search_spaces import _blocks, _cnn
from tuner.spec import Baseline, Claim

NAME = "basenet"
DESCRIPTION = "The study's BaseNet (24,197 params); searches optimizer, learning rate and batch size"
DEFAULT_DATA = "cifar100_25"
EPOCHS = 15
FIXED = dict(_blocks.BASENET)

BASELINES: list[Baseline] = [
    Baseline(
        "basenet",
        params={"optimizer": "adam", "learning_rate": 1e-3, "batch_size": 32},
        reported=31.68,
        note="STUDY 1 (another run of the same config: 22.68, diverged)",
    ),
]
# One baseline: no ordering of two hand-chosen configurations to check.
CLAIMS: list[Claim] = []


def declare(hp) -> None:
    """Declares ``optimizer``, ``learning_rate``, ``batch_size`` (searched) and ``epochs`` (fixed 15)."""
    _blocks.declare_optimizer(hp, searched=True)
    _blocks.declare_epochs(hp, default=EPOCHS, searched=False)


# The study's CNN family with FIXED under the trial's values (one builder for every CNN space).
build = _cnn.space_builder(NAME, FIXED)
