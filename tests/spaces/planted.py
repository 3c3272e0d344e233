"""A test-only space with planted trouble: ``plant`` picks a healthy, diverging, raising or flat trial.

* ``none``: the study's BaseNet, trains normally.
* ``diverge``: SGD at a learning rate of 1e12, far outside any real space: the loss becomes NaN/inf.
* ``raise``: ``build`` raises, as a broken space or an out-of-memory build would.
* ``flat``: every layer frozen, so validation accuracy stays at chance (a trial a pruner should stop).
"""

from __future__ import annotations

from search_spaces import _blocks, _cnn
from tuner.spec import Baseline, ModelSpec

NAME = "planted"
DESCRIPTION = "test-only: trials that diverge, raise or never learn"
DEFAULT_DATA = "synthetic"
BASELINES: list[Baseline] = []
PLANTS = ("none", "diverge", "raise", "flat")


def declare(hp) -> None:
    hp.Choice("plant", list(PLANTS), default="none")
    hp.Float("learning_rate", 1e-3, 1e-2, sampling="log", default=3e-3)
    hp.Fixed("optimizer", "adam")
    hp.Fixed("batch_size", 16)
    hp.Fixed("epochs", 1)


def build(params: dict, spec: ModelSpec):
    plant = params.get("plant", "none")
    config = {**_blocks.BASENET, **{k: v for k, v in params.items() if k != "plant"}}
    if plant == "raise":
        raise RuntimeError("planted build failure")
    if plant == "diverge":
        config.update(optimizer="sgd", learning_rate=1e12)
    model = _cnn.build_cnn(config, spec, name=NAME)
    if plant == "flat":
        import keras

        for layer in model.layers:
            layer.trainable = False
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
    return model
