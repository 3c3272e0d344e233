"""Study step 2.5: how long to train the BN net, with or without early stopping.

Fixed: the study's BN net (normalization, zoom 0.2 + flip, 6 -> 56 -> 106 body, BN after ReLU everywhere including
the logits), Adam 1e-3, batch 32. Searched (defaults = the study's choice, 20 epochs, no early stopping):

* ``epochs`` Int 1..50 (default 20): the number of epochs, or the maximum with early stopping. The study ran 5..30
  and capped early stopping at 50; the floor of 1 keeps quick pins such as ``epochs=2`` valid.
* ``early_stopping`` Boolean (default false): stop when the validation loss stops improving.
* ``patience`` Int 0..10 (only with early stopping; default 0, Keras' default, as the study shows none).

The trial runner reads ``epochs``, ``batch_size``, ``early_stopping`` and ``patience``.

Study table (STUDY.md 2.5):

| epochs | test acc |
|---|---|
| 5 | 46.92% |
| 10 | 52.08% |
| 15 | 53.80% |
| 20 | 55.08% (chosen: 25/30 judged to over-fit) |
| 25 | 55.52% |
| 30 | 56.60% |
| early stopping, max 50 (stopped at epoch 11) | 52.52% |
"""

from __future__ import annotations

from search_spaces import _blocks, _cnn
from tuner.spec import Baseline, Claim

NAME = "epochs"
DESCRIPTION = "Study 2.5: epochs and early stopping for the BN net"
DEFAULT_DATA = "cifar100_25"
EPOCHS = 20
FIXED = dict(_blocks.WITH_BN)


def _run(epochs: int) -> dict:
    return {"epochs": epochs, "early_stopping": False}


BASELINES: list[Baseline] = [
    Baseline("epochs5", params=_run(5), reported=46.92, note="STUDY 2.5"),
    Baseline("epochs10", params=_run(10), reported=52.08, note="STUDY 2.5"),
    Baseline("epochs15", params=_run(15), reported=53.80, note="STUDY 2.5"),
    Baseline("epochs20", params=_run(20), reported=55.08, note="STUDY 2.5 (chosen)"),
    Baseline("epochs25", params=_run(25), reported=55.52, note="STUDY 2.5"),
    Baseline("epochs30", params=_run(30), reported=56.60, note="STUDY 2.5"),
    Baseline("early_stopping", params={"epochs": 50, "early_stopping": True, "patience": 0}, reported=52.52,
             note="STUDY 2.5 (max 50, stopped at epoch 11)"),
]

# The study's conclusions as orderings of baselines; `cnntune reproduce` checks them on measured means.
CLAIMS: list[Claim] = [
    Claim("epochs20", "epochs5", "training 20 epochs beats 5"),
]


def declare(hp) -> None:
    """Declares ``epochs``, ``early_stopping``, the conditional ``patience`` and the fixed optimizer options."""
    _blocks.declare_epochs(hp, default=EPOCHS, searched=True)
    _blocks.declare_optimizer(hp, searched=False)


# The study's CNN family with FIXED under the trial's values (one builder for every CNN space).
build = _cnn.space_builder(NAME, FIXED)
