"""Shared pieces of the search spaces: the study's vocabulary, configurations and choice-point declarations.

Every space is a thin module over this one and ``_cnn`` (the Keras builders). The declarations (``declare_*``)
are pure Python and work with ``tuner.hp`` and with Keras Tuner's ``HyperParameters``.

One model family covers the whole study: a uint8 image input, a rescaling or featurewise-normalization layer,
augmentation layers (training only), a body of valid-padded convolutions and 2x2 max-pools picked from ``BODIES``,
``Flatten``, one hidden ``Dense`` + ReLU and a softmax output, with BatchNormalization optionally before or after
each ReLU (and on the output logits, as the study's final model has it). ``build_cnn`` reads a flat config dict
whose keys are ``ARCH_KEYS`` (plus the training options the trial runner reads, which it ignores).

The study chain (``BASENET`` -> ``NORMALIZED`` -> ``AUGMENTED`` -> ``DEEPER`` -> ``WITH_BN`` -> ``FINAL``) holds the
configuration the study had chosen after each of its steps; each step space fixes the previous link and searches
the next choice.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from tuner.errors import SpaceError

__all__ = [
    "ARCH_KEYS",
    "AUGMENTED",
    "BASENET",
    "BATCH_SIZES",
    "BN_POSITIONS",
    "BODIES",
    "DEEPER",
    "FILTER_RANGES",
    "FINAL",
    "NORMALIZED",
    "OPTIMIZERS",
    "SpaceValueError",
    "TRAINING_KEYS",
    "WITH_BN",
    "declare_augmentation",
    "declare_batchnorm",
    "declare_body",
    "declare_dense",
    "declare_epochs",
    "declare_normalization",
    "declare_optimizer",
]


class SpaceValueError(SpaceError, ValueError):
    """A configuration a space cannot build: a ``SpaceError`` for the CLI, a ``ValueError`` for Python callers."""


# -- vocabulary --------------------------------------------------------------------------------------------------
OPTIMIZERS = ("adam", "sgd", "rmsprop")
BATCH_SIZES = (16, 32, 64, 128)
BN_POSITIONS = ("none", "before", "after")
LEARNING_RATE_RANGE = (1e-4, 1e-2)
ZOOM_MAX = 1.2  # the study tried 0.2 and 1.2
ROTATION_MAX = 90  # degrees; the study tried 20 and 90
EPOCHS_RANGE = (1, 50)
PATIENCE_RANGE = (0, 10)
DENSE_UNITS_RANGE = (16, 512)
SGD_MOMENTUM = 0.9


# -- conv bodies ---------------------------------------------------------------------------------------------------
# A body is a sequence of ("conv", kernel, filters_key) and ("pool", 2, None). Convs sharing a filters key share a
# width: 3x3 convs take the width of their stage ("conv1_3x3_filters" for the 3x3s after the first 5x5).
_C1 = ("conv", 5, "conv1_filters")
_C2 = ("conv", 5, "conv2_filters")
_C3 = ("conv", 5, "conv3_filters")
_A = ("conv", 3, "conv1_3x3_filters")
_B = ("conv", 3, "conv2_3x3_filters")
_P = ("pool", 2, None)

BODIES: dict[str, tuple[tuple[str, int, str | None], ...]] = {
    # 5x5(6) pool 5x5(16) pool: 32 -> 28 -> 14 -> 10 -> 5
    "basenet": (_C1, _P, _C2, _P),
    # a 3x3 after each 5x5, before the pools: 32 -> 28 -> 26 -> 13 -> 9 -> 7 -> 3
    "extra3x3_before_pool": (_C1, _A, _P, _C2, _B, _P),
    # a 3x3 after each 5x5, after the pools: 32 -> 28 -> 14 -> 12 -> 8 -> 4 -> 2
    "extra3x3_after_pool": (_C1, _P, _A, _C2, _P, _B),
    # a third 5x5 block (conv + pool) with the first pool removed: 32 -> 28 -> 24 -> 12 -> 8 -> 4
    "third5x5_no_pool1": (_C1, _C2, _P, _C3, _P),
    # ... with the second pool removed: 32 -> 28 -> 14 -> 10 -> 6 -> 3
    "third5x5_no_pool2": (_C1, _P, _C2, _C3, _P),
    # ... with both removed, one pool at the end (the study's winner): 32 -> 28 -> 24 -> 20 -> 10
    "third5x5_pool_end": (_C1, _C2, _C3, _P),
    # 5-3-3-3 pool 5-3-3-3: 32 -> 28 -> 26 -> 24 -> 22 -> 11 -> 7 -> 5 -> 3 -> 1 (a last pool cannot fit at 32 px)
    "stack_5333_5333": (_C1, _A, _A, _A, _P, _C2, _B, _B, _B),
    # 5-3-3-3-3-3-5 pool: 32 -> 28 -> 26 -> 24 -> 22 -> 20 -> 18 -> 14 -> 7
    "stack_5333335": (_C1, _A, _A, _A, _A, _A, _C2, _P),
}

# (min, max) of each width; sampled on a log scale because width effects are multiplicative.
FILTER_RANGES: dict[str, tuple[int, int]] = {
    "conv1_filters": (4, 64),
    "conv2_filters": (8, 128),
    "conv3_filters": (16, 256),
    "conv1_3x3_filters": (4, 64),
    "conv2_3x3_filters": (8, 128),
}

# -- the study chain -----------------------------------------------------------------------------------------------
BASENET: dict[str, Any] = {
    "normalize": False,
    "zoom_range": 0.0,
    "rotation_range": 0,
    "horizontal_flip": False,
    "body": "basenet",
    "conv1_filters": 6,
    "conv2_filters": 16,
    "bn_conv": "none",
    "bn_dense": "none",
    "dense_units": 50,
    "optimizer": "adam",
    "learning_rate": 1e-3,
}
NORMALIZED = {**BASENET, "normalize": True}  # 2.1
AUGMENTED = {**NORMALIZED, "zoom_range": 0.2, "horizontal_flip": True}  # 2.2
DEEPER = {**AUGMENTED, "body": "third5x5_pool_end", "conv1_filters": 6, "conv2_filters": 56, "conv3_filters": 106}
WITH_BN = {**DEEPER, "bn_conv": "after", "bn_dense": "after", "bn_output": True}  # 2.4
FINAL = {**WITH_BN, "epochs": 20, "early_stopping": False, "batch_size": 32}  # 2.5 / 2.6

ARCH_KEYS = frozenset(
    {
        "normalize",
        "zoom_range",
        "rotation_range",
        "horizontal_flip",
        "body",
        *FILTER_RANGES,
        "bn_conv",
        "bn_dense",
        "bn_output",
        "dense_units",
        "optimizer",
        "learning_rate",
    }
)
# Read by the trial runner, not by the model builder.
TRAINING_KEYS = frozenset({"epochs", "batch_size", "early_stopping", "patience"})


# -- declarations (pure Python) --------------------------------------------------------------------------------------
def declare_optimizer(hp, *, searched: bool) -> None:
    """Declares ``optimizer``, ``learning_rate`` and ``batch_size``, searched or fixed at the study's values.

    Args:
        hp: a ``HyperParameters`` (``tuner.hp`` or Keras Tuner).
        searched: ``True`` searches them; ``False`` fixes them at Adam, 1e-3, batch 32 (the study's values).
    """
    if searched:
        hp.Choice("optimizer", list(OPTIMIZERS), default="adam")
        hp.Float("learning_rate", *LEARNING_RATE_RANGE, sampling="log", default=1e-3)
        hp.Choice("batch_size", list(BATCH_SIZES), default=32)
    else:
        hp.Fixed("optimizer", "adam")
        hp.Fixed("learning_rate", 1e-3)
        hp.Fixed("batch_size", 32)


def declare_epochs(hp, *, default: int, searched: bool, maximum: int = EPOCHS_RANGE[1]) -> None:
    """Declares ``epochs`` and, when searched, ``early_stopping`` with a conditional ``patience``.

    With early stopping on, ``epochs`` is the maximum number of epochs (the study capped it at 50).

    Args:
        hp: a ``HyperParameters``.
        default: the study's epochs at this step.
        searched: ``False`` fixes ``epochs`` at ``default`` and declares no early stopping.
        maximum: the most epochs (default: the study's 50).
    """
    if not searched:
        hp.Fixed("epochs", int(default))
        return
    # The study's plain runs span 5..30 epochs and its early-stopping run had a cap of 50; the floor of 1 keeps
    # quick pins (epochs=2 in smoke runs and the Makefile demo) valid values of the space.
    hp.Int("epochs", EPOCHS_RANGE[0], int(maximum), default=int(default))
    hp.Boolean("early_stopping", default=False)
    with hp.conditional_scope("early_stopping", [True]):
        # Keras' EarlyStopping default; the study shows no patience and stopped at epoch 11.
        hp.Int("patience", *PATIENCE_RANGE, default=0)


def declare_normalization(hp, *, default: bool) -> None:
    """Declares ``normalize``: featurewise center + std normalization (``True``) or a plain 1/255 rescale."""
    hp.Boolean("normalize", default=default)


def declare_augmentation(hp, *, zoom: float, rotation: int, flip: bool) -> None:
    """Declares ``zoom_range`` (0..1.2), ``rotation_range`` (0..90 degrees) and ``horizontal_flip``.

    Args:
        hp: a ``HyperParameters``.
        zoom: default ``zoom_range`` (ImageDataGenerator semantics: factor in [1-z, 1+z]).
        rotation: default ``rotation_range`` in degrees (angle in [-r, +r]).
        flip: default ``horizontal_flip``.
    """
    hp.Float("zoom_range", 0.0, ZOOM_MAX, default=float(zoom))
    hp.Int("rotation_range", 0, ROTATION_MAX, default=int(rotation))
    hp.Boolean("horizontal_flip", default=flip)


def declare_body(hp, *, default: str, filters: Mapping[str, int], bodies: Sequence[str] = tuple(BODIES),
                 others: Sequence[str] = ()) -> None:
    """Declares the conv ``body`` and one conditional width per conv stage that the body has.

    A width is declared inside ``conditional_scope("body", ...)`` listing only the bodies that have that conv,
    so the width of a conv that does not exist is never sampled.

    Args:
        hp: a ``HyperParameters``.
        default: the default body (a key of ``BODIES``).
        filters: default width of every filters key (``conv1_filters`` ... ``conv2_3x3_filters``).
        bodies: the bodies of ``BODIES`` to choose among.
        others: more values of ``body``, built elsewhere and using none of these widths (``modern``'s residual body).
    """
    hp.Choice("body", [*bodies, *others], default=default)
    for key, (low, high) in FILTER_RANGES.items():
        users = [b for b in bodies if any(step[2] == key for step in BODIES[b])]
        if not users:
            continue
        if len(users) == len(bodies) + len(others):  # every body has this conv: unconditional
            hp.Int(key, low, high, sampling="log", default=int(filters[key]))
        else:
            with hp.conditional_scope("body", users):
                hp.Int(key, low, high, sampling="log", default=int(filters[key]))


def declare_batchnorm(hp, *, conv: str, dense: str, output: bool) -> None:
    """Declares ``bn_conv`` and ``bn_dense`` (none/before/after ReLU) and ``bn_output``.

    ``bn_output`` (BatchNormalization on the output logits, before the softmax, as the study's final model has it)
    exists only when the dense layers have BatchNormalization.
    """
    hp.Choice("bn_conv", list(BN_POSITIONS), default=conv)
    hp.Choice("bn_dense", list(BN_POSITIONS), default=dense)
    with hp.conditional_scope("bn_dense", ["before", "after"]):
        hp.Boolean("bn_output", default=output)


def declare_dense(hp, *, default: int) -> None:
    """Declares ``dense_units``, the width of the hidden Dense layer (the study kept 50)."""
    hp.Int("dense_units", *DENSE_UNITS_RANGE, sampling="log", default=int(default))
