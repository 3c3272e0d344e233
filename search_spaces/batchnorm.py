"""Study step 2.4: where BatchNormalization goes, on the 6 -> 56 -> 106 net.

Fixed: normalization, zoom 0.2 + flip, body third5x5_pool_end with 6/56/106 channels, Adam 1e-3, batch 32, 15 epochs.
Searched (defaults = the study's choice, BN after ReLU everywhere):

* ``bn_conv`` {none, before, after}: BN before or after the ReLU of every conv layer.
* ``bn_dense`` {none, before, after}: the same for the hidden Dense layer.
* ``bn_output`` Boolean (only when ``bn_dense`` is before/after; default true): BN on the output logits, before the
  softmax, as the study's final model has it ("Dense 25 + BN, softmax"). The study's rows all use it.

Study table (STUDY.md 2.4):

| variant | test acc |
|---|---|
| no BN | 49.48% |
| BN after ReLU, every layer | 54.48% (chosen) |
| BN before ReLU, every layer | 53.80% |
| after ReLU in conv layers, before ReLU in dense | 52.84% |
| before ReLU in conv layers, after ReLU in dense | 51.44% |
"""

from __future__ import annotations

from search_spaces import _blocks, _cnn
from tuner.spec import Baseline, Claim

NAME = "batchnorm"
DESCRIPTION = "Study 2.4: BatchNormalization before/after ReLU in conv and dense layers of the 6-56-106 net"
DEFAULT_DATA = "cifar100_25"
EPOCHS = 15
FIXED = dict(_blocks.DEEPER)

BASELINES: list[Baseline] = [
    Baseline("no_bn", params={"bn_conv": "none", "bn_dense": "none"}, reported=49.48, note="STUDY 2.4"),
    Baseline("after_all", params={"bn_conv": "after", "bn_dense": "after", "bn_output": True}, reported=54.48,
             note="STUDY 2.4 (chosen)"),
    Baseline("before_all", params={"bn_conv": "before", "bn_dense": "before", "bn_output": True}, reported=53.80,
             note="STUDY 2.4"),
    Baseline("conv_after+dense_before", params={"bn_conv": "after", "bn_dense": "before", "bn_output": True},
             reported=52.84, note="STUDY 2.4"),
    Baseline("conv_before+dense_after", params={"bn_conv": "before", "bn_dense": "after", "bn_output": True},
             reported=51.44, note="STUDY 2.4"),
]

# The study's conclusions as orderings of baselines; `cnntune reproduce` checks them on measured means.
CLAIMS: list[Claim] = [
    Claim("after_all", "no_bn", "BatchNormalization after ReLU beats no BatchNormalization"),
    Claim("after_all", "before_all", "BatchNormalization after ReLU beats before ReLU"),
]


def declare(hp) -> None:
    """Declares ``bn_conv``, ``bn_dense``, the conditional ``bn_output`` and the fixed training options."""
    _blocks.declare_batchnorm(hp, conv="after", dense="after", output=True)
    _blocks.declare_optimizer(hp, searched=False)
    _blocks.declare_epochs(hp, default=EPOCHS, searched=False)


# The study's CNN family with FIXED under the trial's values (one builder for every CNN space).
build = _cnn.space_builder(NAME, FIXED)
