"""Study step 2.1: featurewise normalization of the input, on or off.

Fixed: the BaseNet body, no augmentation, Adam 1e-3, batch 32, 15 epochs. Searched: ``normalize`` (default on, the
study's choice): per-channel mean/std of the training pixels, as
``ImageDataGenerator(featurewise_center=True, featurewise_std_normalization=True)`` fit on train; off means a plain
1/255 rescale.

Study table (STUDY.md 2.1):

| config | test acc |
|---|---|
| BaseNet | 31.68% |
| + normalization | 39.88% |
"""

from __future__ import annotations

from search_spaces import _blocks, _cnn
from tuner.spec import Baseline, Claim

NAME = "normalization"
DESCRIPTION = "Study 2.1: BaseNet with featurewise input normalization on or off"
DEFAULT_DATA = "cifar100_25"
EPOCHS = 15  # BaseNet's; the study gives no other number for 2.1-2.4
FIXED = dict(_blocks.BASENET)

BASELINES: list[Baseline] = [
    Baseline("basenet", params={"normalize": False}, reported=31.68, note="STUDY 2.1"),
    Baseline("normalization", params={"normalize": True}, reported=39.88, note="STUDY 2.1 (chosen)"),
]

# The study's conclusions as orderings of baselines; `cnntune reproduce` checks them on measured means.
CLAIMS: list[Claim] = [
    Claim("normalization", "basenet", "featurewise normalization beats none"),
]


def declare(hp) -> None:
    """Declares ``normalize`` (searched) and the fixed training options."""
    _blocks.declare_normalization(hp, default=True)
    _blocks.declare_optimizer(hp, searched=False)
    _blocks.declare_epochs(hp, default=EPOCHS, searched=False)


# The study's CNN family with FIXED under the trial's values (one builder for every CNN space).
build = _cnn.space_builder(NAME, FIXED)
