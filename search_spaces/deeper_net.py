"""Study step 2.3: a deeper conv body, on top of normalization + zoom 0.2 + flip.

Searched: ``body`` (8 variants, valid padding, 2x2 max-pools; sizes at 32 px) and the width of every conv stage
the chosen body has (``Int``, log scale, declared inside ``conditional_scope("body", ...)``):

| body | layers | flatten at 32 px |
|---|---|---|
| basenet | 5 P 5 P | 5x5 |
| extra3x3_before_pool | 5 3 P 5 3 P | 3x3 |
| extra3x3_after_pool | 5 P 3 5 P 3 | 2x2 |
| third5x5_no_pool1 | 5 5 P 5 P | 4x4 |
| third5x5_no_pool2 | 5 P 5 5 P | 3x3 |
| third5x5_pool_end (default) | 5 5 5 P | 10x10 |
| stack_5333_5333 | 5 3 3 3 P 5 3 3 3 | 1x1 |
| stack_5333335 | 5 3 3 3 3 3 5 P | 7x7 |

Widths: ``conv1_filters`` 4..64 and ``conv2_filters`` 8..128 (the two 5x5 convs every body has),
``conv3_filters`` 16..256 (third 5x5; third5x5_* only), ``conv1_3x3_filters`` 4..64 / ``conv2_3x3_filters`` 8..128
(all 3x3 convs after the first / second 5x5 share one width; extra3x3_* and stack_* only). Defaults: the study's
6 -> 56 -> 106 net (49.48%).

Reading of the study (its code for 2.3 is not given): the "third 5x5" rows add a BaseNet-style conv + pool block and
remove pool 1, pool 2 or both ("one max-pool at the end"); the 5-3-3-3-5-3-3-3 stack drops the last pool (at 32 px
the stack ends at 1x1); the 5-3-3-3-3-3-5 stack ends with one pool. Variant baselines keep BaseNet's widths (6, 16);
an added 3x3 conv keeps the width of the 5x5 before it; an added third 5x5 gets 32 (doubling, as CNNs widen with
depth). Bodies that would shrink below 1x1 on small images raise a ValueError at build time.

Study table (STUDY.md 2.3):

| variant | test acc |
|---|---|
| augmentation baseline (BaseNet body) | 41.32% |
| an extra Conv2D 3x3 after each 5x5 conv, before the max-pools | 37.56% |
| an extra Conv2D 3x3 after each 5x5 conv, after the max-pools | 37.00% |
| a third Conv2D 5x5, first max-pool removed | 41.52% |
| a third Conv2D 5x5, second max-pool removed | 36.08% |
| a third Conv2D 5x5, first and second max-pools removed (one max-pool at the end) | 44.96% |
| 3x3 convs: 5-3-3-3-5-3-3-3 | 28.80% |
| 3x3 convs: 5-3-3-3-3-3-5 | 33.28% |
| three 5x5 convs 6 -> 56 -> 106, one max-pool at the end (Flatten 10,600) | 49.48% (chosen) |
"""

from __future__ import annotations

from search_spaces import _blocks, _cnn
from tuner.spec import Baseline, Claim

NAME = "deeper_net"
DESCRIPTION = "Study 2.3: deeper conv bodies (extra 3x3 / third 5x5 / pool placement) and their channel counts"
DEFAULT_DATA = "cifar100_25"
EPOCHS = 15
FIXED = dict(_blocks.AUGMENTED)
# The choice points that set the model's shape (and most of its cost): warm starts continue the study on each of
# its bodies (tuner.searching._warm_start.study_trend).
STRUCTURE = ("body",)
DEFAULT_BODY = "third5x5_pool_end"
# The 6-56-106 net; an added 3x3 defaults to the width of the 5x5 it follows.
DEFAULT_FILTERS = {"conv1_filters": 6, "conv2_filters": 56, "conv3_filters": 106, "conv1_3x3_filters": 6,
                   "conv2_3x3_filters": 56}
# The choice points that make a model bigger: the search grows a best trial that trains faster than the longest
# baseline (tuner.searching._warm_start.grow).
SCALE = tuple(DEFAULT_FILTERS)

_BASE = {"conv1_filters": 6, "conv2_filters": 16}  # BaseNet's widths for the variant rows
_THIRD = 32  # width of an added third 5x5 conv in the variant rows (not given by the study)

BASELINES: list[Baseline] = [
    Baseline("basenet_body", params={"body": "basenet", **_BASE}, reported=41.32, note="STUDY 2.3"),
    Baseline("extra3x3_before_pool", reported=37.56, note="STUDY 2.3",
             params={"body": "extra3x3_before_pool", **_BASE, "conv1_3x3_filters": 6, "conv2_3x3_filters": 16}),
    Baseline("extra3x3_after_pool", reported=37.00, note="STUDY 2.3",
             params={"body": "extra3x3_after_pool", **_BASE, "conv1_3x3_filters": 6, "conv2_3x3_filters": 16}),
    Baseline("third5x5_no_pool1", reported=41.52, note="STUDY 2.3",
             params={"body": "third5x5_no_pool1", **_BASE, "conv3_filters": _THIRD}),
    Baseline("third5x5_no_pool2", reported=36.08, note="STUDY 2.3",
             params={"body": "third5x5_no_pool2", **_BASE, "conv3_filters": _THIRD}),
    Baseline("third5x5_pool_end", reported=44.96, note="STUDY 2.3",
             params={"body": "third5x5_pool_end", **_BASE, "conv3_filters": _THIRD}),
    Baseline("stack_5333_5333", reported=28.80, note="STUDY 2.3",
             params={"body": "stack_5333_5333", **_BASE, "conv1_3x3_filters": 6, "conv2_3x3_filters": 16}),
    Baseline("stack_5333335", reported=33.28, note="STUDY 2.3",
             params={"body": "stack_5333335", **_BASE, "conv1_3x3_filters": 6}),
    Baseline("6-56-106", reported=49.48, note="STUDY 2.3 (chosen)",
             params={"body": "third5x5_pool_end", "conv1_filters": 6, "conv2_filters": 56, "conv3_filters": 106}),
]

# The study's conclusions as orderings of baselines; `cnntune reproduce` checks them on measured means.
CLAIMS: list[Claim] = [
    Claim("third5x5_pool_end", "basenet_body", "three 5x5 convs with one pool at the end beat the BaseNet body"),
    Claim("6-56-106", "third5x5_pool_end", "widening to 6-56-106 channels beats 6-16-32"),
]


def declare(hp) -> None:
    """Declares ``body``, the conditional conv widths and the fixed training options."""
    _blocks.declare_body(hp, default=DEFAULT_BODY, filters=DEFAULT_FILTERS)
    _blocks.declare_optimizer(hp, searched=False)
    _blocks.declare_epochs(hp, default=EPOCHS, searched=False)


# The study's CNN family with FIXED under the trial's values (one builder for every CNN space).
build = _cnn.space_builder(NAME, FIXED)
