"""The contract between search spaces and the trial runner: what a space is told, and what a baseline is."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Baseline", "Claim", "MIXES", "ModelSpec", "soft_targets"]

# How a trial mixes training images (and their labels) in pairs: none, MixUp (a blend) or CutMix (a pasted patch).
MIXES = ("none", "mixup", "cutmix")


def soft_targets(params) -> bool:
    """Whether a trial trains on one-hot (smoothed or mixed) labels instead of class numbers: with label smoothing
    or MixUp / CutMix. The space compiles its loss for them and the trial runner one-hot encodes every split, so both
    ask this one question."""
    return float(params.get("label_smoothing") or 0.0) > 0.0 or (params.get("mix") or "none") != "none"


@dataclass(frozen=True)
class ModelSpec:
    """What a space's ``build`` needs to know about the data.

    Attributes:
        input_shape: ``(height, width, channels)`` of the raw uint8 images the model takes.
        num_classes: number of output classes.
        mean: per-channel mean of the training pixels on the 0-255 scale (featurewise centering).
        variance: per-channel variance of the training pixels on the 0-255 scale.
        options: dataset- or run-level extras a space may read (e.g. backbone ``weights``).
        train_size: the number of training images (a learning-rate schedule counts its steps from it); 0 unknown.
    """

    input_shape: tuple[int, int, int]
    num_classes: int
    mean: tuple[float, ...] = (127.5, 127.5, 127.5)
    variance: tuple[float, ...] = (5418.75, 5418.75, 5418.75)
    options: dict[str, Any] = field(default_factory=dict)
    train_size: int = 0


@dataclass(frozen=True)
class Baseline:
    """A configuration the study chose by hand, replayed as a trial of every study.

    Attributes:
        name: short name shown in tables (``basenet``, ``final``, ``zoom0.2+flip``).
        params: values of the space's choice points; the rest take their defaults.
        reported: the study's reported test accuracy in percent, or ``None``.
        note: where the number comes from (the study's section).
    """

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    reported: float | None = None
    note: str = ""


@dataclass(frozen=True)
class Claim:
    """A conclusion of the study that can be checked as an ordering of two baselines of the same space.

    ``cnntune reproduce`` reports it as held when the measured mean test accuracy of ``better`` exceeds that of
    ``worse``. The study's own numbers come from the two baselines' ``reported`` values, so they are not repeated.

    Attributes:
        better: name of the baseline the study found better.
        worse: name of the baseline the study found worse.
        text: the claim in words (``"normalization beats none"``).
    """

    better: str
    worse: str
    text: str
