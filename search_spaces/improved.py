"""Every choice of the study at once; the defaults rebuild the study's final model (2.6) exactly.

| choice point | values | default (final model) | condition |
|---|---|---|---|
| normalize | false/true | true | |
| zoom_range | 0..1.2 (z > 1 clipped to factors [0.01, 2.0]) | 0.2 | |
| rotation_range | 0..90 degrees | 0 | |
| horizontal_flip | false/true | true | |
| body | 8 variants (see ``deeper_net``) | third5x5_pool_end | |
| conv1_filters, conv2_filters | 4..64, 8..128 log | 6, 56 | |
| conv3_filters | 16..256 log | 106 | body = third5x5_* |
| conv1_3x3_filters | 4..64 log | 6 | body = extra3x3_* or stack_* |
| conv2_3x3_filters | 8..128 log | 56 | body = extra3x3_* or stack_5333_5333 |
| bn_conv, bn_dense | none/before/after ReLU | after, after | |
| bn_output | false/true | true | bn_dense != none |
| dense_units | 16..512 log (the study kept 50) | 50 | |
| epochs | 1..50 (the maximum with early stopping) | 20 | |
| early_stopping | false/true | false | |
| patience | 0..10 | 0 | early_stopping = true |
| optimizer | adam/sgd (momentum 0.9)/rmsprop | adam | |
| learning_rate | 1e-4..1e-2 log | 1e-3 | |
| batch_size | 16/32/64/128 | 32 | |

Study (STUDY.md 2.6), the final hand-chosen model: 689,715 parameters, 486 non-trainable (25 classes, 32x32x3):

| layers | size |
|---|---|
| normalization + zoom 0.2 + horizontal flip (train only) | 32x32x3 |
| Conv5x5(6)+ReLU+BN, Conv5x5(56)+ReLU+BN, Conv5x5(106)+ReLU+BN | 28, 24, 20 |
| MaxPool 2, Flatten | 10x10x106 = 10,600 |
| Dense 50+ReLU+BN, Dense 25+BN, softmax | 50, 25 |

Reported: BaseNet 31.68%; final model 55.6% test (validation ~51%, train ~67% at epoch 20).
"""

from __future__ import annotations

from search_spaces import _blocks, _cnn
from tuner.spec import Baseline, Claim

NAME = "improved"
DESCRIPTION = "All study choices jointly (input, augmentation, body, widths, BN, epochs, optimizer); defaults = final"
DEFAULT_DATA = "cifar100_25"
FINAL = _blocks.FINAL
FIXED: dict = {}  # nothing fixed: every key is declared
# The choice points that set the model's shape (and most of its cost): warm starts continue the study on each of
# its bodies (tuner.searching._warm_start.study_trend).
STRUCTURE = ("body",)
FILTERS = {"conv1_filters": 6, "conv2_filters": 56, "conv3_filters": 106, "conv1_3x3_filters": 6,
           "conv2_3x3_filters": 56}
# The choice points that make a model bigger and train it longer: the search grows a best trial that trains
# faster than the hand-chosen one (tuner.searching._warm_start.grow).
SCALE = (*FILTERS, "dense_units", "epochs")

BASELINES: list[Baseline] = [
    Baseline(
        "basenet",
        params={**{k: v for k, v in _blocks.BASENET.items()}, "epochs": 15, "early_stopping": False,
                "batch_size": 32},
        reported=31.68,
        note="STUDY 1",
    ),
    Baseline(
        "final",
        params={**FINAL, "dense_units": 50, "optimizer": "adam", "learning_rate": 1e-3},
        reported=55.6,
        note="STUDY 2.6 (validation ~51%)",
    ),
]

# The study's conclusions as orderings of baselines; `cnntune reproduce` checks them on measured means.
CLAIMS: list[Claim] = [
    Claim("final", "basenet", "the final hand-chosen model beats BaseNet"),
]


def declare(hp) -> None:
    """Declares every choice point of the study, defaults at the final model."""
    _blocks.declare_normalization(hp, default=FINAL["normalize"])
    _blocks.declare_augmentation(hp, zoom=FINAL["zoom_range"], rotation=FINAL["rotation_range"],
                                 flip=FINAL["horizontal_flip"])
    _blocks.declare_body(hp, default=FINAL["body"], filters=FILTERS)
    _blocks.declare_batchnorm(hp, conv=FINAL["bn_conv"], dense=FINAL["bn_dense"], output=FINAL["bn_output"])
    _blocks.declare_dense(hp, default=FINAL["dense_units"])
    _blocks.declare_epochs(hp, default=FINAL["epochs"], searched=True)
    _blocks.declare_optimizer(hp, searched=True)


# The study's CNN family with FIXED under the trial's values (one builder for every CNN space).
build = _cnn.space_builder(NAME, FIXED)
