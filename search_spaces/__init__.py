"""The search spaces: one small module per step of the reference study, plus ``improved`` (all steps jointly).

Each module defines ``NAME``, ``DESCRIPTION``, ``DEFAULT_DATA``, ``BASELINES``, ``declare(hp)`` (pure Python, Keras
Tuner vocabulary, every default = the study's choice at that step) and ``build(params, spec)`` (a compiled Keras
model; imports Keras inside). Importing this package does not import Keras or TensorFlow.
"""

from __future__ import annotations

from search_spaces import augmentation, basenet, batchnorm, deeper_net, epochs, improved, normalization, transfer

__all__ = [
    "SPACES",
    "augmentation",
    "basenet",
    "batchnorm",
    "deeper_net",
    "epochs",
    "improved",
    "normalization",
    "transfer",
]

SPACES: dict = {
    module.NAME: module
    for module in (basenet, normalization, augmentation, deeper_net, batchnorm, epochs, improved, transfer)
}
