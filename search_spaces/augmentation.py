"""Study step 2.2: data augmentation with ImageDataGenerator semantics, on top of normalization.

Fixed: BaseNet body, normalization on, Adam 1e-3, batch 32, 15 epochs. Searched (defaults = the study's choice,
zoom 0.2 + flip):

* ``zoom_range`` Float 0..1.2 (default 0.2): zoom factor drawn in [1-z, 1+z] independently for height and width
  (``RandomZoom(height_factor=(-z, z), width_factor=(-z, z))``). Keras needs each bound in (-1, 1], so z > 1 is
  clipped to (-0.99, 1.0): the study's zoom 1.2 ([-0.2, 2.2], mirrored and extreme zooms) becomes [0.01, 2.0].
* ``rotation_range`` Int 0..90 degrees (default 0): angle in [-r, +r] (``RandomRotation(r / 360)``).
* ``horizontal_flip`` Boolean (default true): flips half the images.

Fill mode "nearest" (ImageDataGenerator's default); the layers act in training only; a zero amount adds no layer.

Study table (STUDY.md 2.2):

| config | test acc |
|---|---|
| normalization only | 39.88% |
| zoom 0.2 | 41.48% |
| zoom 1.2 | 33.60% |
| rotation 20 | 39.60% |
| rotation 90 | 35.00% |
| horizontal flip | 41.48% |
| zoom 0.2 + flip | 41.32% (chosen) |
| rotation 20 + flip | 40.96% |
| rotation 90 + flip | 35.04% |
| zoom 0.2 + rotation 20 + flip | 39.24% |
"""

from __future__ import annotations

from search_spaces import _blocks, _cnn
from tuner.spec import Baseline, Claim

NAME = "augmentation"
DESCRIPTION = "Study 2.2: zoom, rotation and horizontal flip on the normalized BaseNet"
DEFAULT_DATA = "cifar100_25"
EPOCHS = 15
FIXED = dict(_blocks.NORMALIZED)


def _aug(zoom: float = 0.0, rotation: int = 0, flip: bool = False) -> dict:
    return {"zoom_range": zoom, "rotation_range": rotation, "horizontal_flip": flip}


BASELINES: list[Baseline] = [
    Baseline("normalization", params=_aug(), reported=39.88, note="STUDY 2.2"),
    Baseline("zoom0.2", params=_aug(zoom=0.2), reported=41.48, note="STUDY 2.2"),
    Baseline("zoom1.2", params=_aug(zoom=1.2), reported=33.60, note="STUDY 2.2 (zoom clipped to [0.01, 2.0])"),
    Baseline("rotation20", params=_aug(rotation=20), reported=39.60, note="STUDY 2.2"),
    Baseline("rotation90", params=_aug(rotation=90), reported=35.00, note="STUDY 2.2"),
    Baseline("flip", params=_aug(flip=True), reported=41.48, note="STUDY 2.2"),
    Baseline("zoom0.2+flip", params=_aug(zoom=0.2, flip=True), reported=41.32, note="STUDY 2.2 (chosen)"),
    Baseline("rotation20+flip", params=_aug(rotation=20, flip=True), reported=40.96, note="STUDY 2.2"),
    Baseline("rotation90+flip", params=_aug(rotation=90, flip=True), reported=35.04, note="STUDY 2.2"),
    Baseline("zoom0.2+rotation20+flip", params=_aug(zoom=0.2, rotation=20, flip=True), reported=39.24,
             note="STUDY 2.2"),
]

# The study's conclusions as orderings of baselines; `cnntune reproduce` checks them on measured means.
CLAIMS: list[Claim] = [
    Claim("normalization", "zoom1.2", "zoom 1.2 hurts vs normalization only"),
    Claim("normalization", "rotation90", "rotation 90 hurts vs normalization only"),
    Claim("zoom0.2+flip", "normalization", "zoom 0.2 + flip (chosen) helps vs normalization only"),
]


def declare(hp) -> None:
    """Declares ``zoom_range``, ``rotation_range``, ``horizontal_flip`` and the fixed training options."""
    _blocks.declare_augmentation(hp, zoom=0.2, rotation=0, flip=True)
    _blocks.declare_optimizer(hp, searched=False)
    _blocks.declare_epochs(hp, default=EPOCHS, searched=False)


# The study's CNN family with FIXED under the trial's values (one builder for every CNN space).
build = _cnn.space_builder(NAME, FIXED)
