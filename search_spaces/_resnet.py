"""The ResNet50 backbone of the ``transfer`` space: weights, ImageNet preprocessing as layers, a lower backbone LR.

``weights`` is a run-level option (``weights=imagenet|none|PATH`` on the command line, ``ModelSpec.options``):

* ``imagenet``: Keras' ImageNet weights of the no-top ResNet50, downloaded once to ``~/.keras/models/`` on a connected
  machine; without a network the error says where to get the file and where to put it.
* ``none``: random initialization from a fixed seed (``BACKBONE_SEED``), independent of the trial's seed, so every
  trial of a study sees the same frozen random backbone (tests and benchmarks on machines without the weights).
* ``PATH``: a local ``.h5`` (the Keras download, legacy format) or ``.weights.h5`` file of a no-top ResNet50.

Nothing here imports Keras at module level: ``check_weights`` and ``weights_identity`` run without it.
"""

from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path
from typing import Any

from tuner.errors import CnntuneError, SpaceError

__all__ = [
    "BACKBONE",
    "BACKBONE_SEED",
    "IMAGENET_FILE",
    "IMAGENET_URL",
    "MIN_SIZE",
    "STAGES",
    "backbone_net",
    "check_weights",
    "imagenet_weights_file",
    "plain_optimizer",
    "preprocess",
    "scaled_optimizer",
    "weights_identity",
]

BACKBONE = "resnet50"
# Seed of the random initialization under weights=none: fixed so that a frozen random backbone (and its cached
# features) is the same for every trial.
BACKBONE_SEED = 0
MIN_SIZE = 32  # keras.applications.ResNet50 refuses smaller inputs
# The residual stages of ResNet50 from the top; "fine-tune the top K stages" makes the first K trainable.
STAGES = ("conv5_", "conv4_", "conv3_", "conv2_")
# keras.applications.resnet50.preprocess_input ("caffe" mode): RGB -> BGR, then subtract the ImageNet BGR means.
IMAGENET_BGR_MEAN = (103.939, 116.779, 123.68)
IMAGENET_FILE = "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
IMAGENET_URL = f"https://storage.googleapis.com/tensorflow/keras-applications/resnet/{IMAGENET_FILE}"
IMAGENET_MD5 = "4d473c1dd8becc155b73f8504c6f6626"  # Keras' own hash of that file

_sha_cache: dict[tuple[str, int, int], str] = {}


def check_weights(raw: Any) -> str:
    """Normalizes a ``weights=`` value: ``imagenet``, ``none`` or an absolute path to an existing ``.h5`` file.

    Raises:
        SpaceError: anything else.
    """
    text = str(raw).strip()
    if text.lower() in ("imagenet", "none"):
        return text.lower()
    path = Path(text).expanduser()
    if not text or path.suffix != ".h5":
        raise SpaceError(f"weights= takes imagenet, none or a path to a .h5/.weights.h5 file. "
                         f"Received: weights={raw!r}")
    if not path.is_file():
        raise SpaceError(f"weights file {text!r} does not exist")
    return str(path.resolve())


def weights_identity(weights: str) -> str:
    """What the backbone's weights are, as a content key: ``imagenet``, ``none-seed0`` or ``sha256:<hex>``."""
    if weights == "imagenet":
        return "imagenet"
    if weights == "none":
        return f"none-seed{BACKBONE_SEED}"
    stat = os.stat(weights)
    key = (weights, stat.st_mtime_ns, stat.st_size)
    if key not in _sha_cache:  # the ImageNet file is 94 MB: hash it once per process
        h = hashlib.sha256()
        with open(weights, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        _sha_cache[key] = "sha256:" + h.hexdigest()
    return _sha_cache[key]


def imagenet_weights_file() -> str:
    """The local path of Keras' ImageNet no-top ResNet50 weights, downloading them when missing.

    Raises:
        CnntuneError: the file is not in ``~/.keras/models/`` and cannot be downloaded.
    """
    import keras

    try:
        return keras.utils.get_file(IMAGENET_FILE, IMAGENET_URL, cache_subdir="models", file_hash=IMAGENET_MD5)
    except Exception as exc:  # no network, proxy, bad hash: one actionable line whatever the cause
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise CnntuneError(
            f"cannot get the ImageNet weights of ResNet50 ({reason}): download {IMAGENET_URL} on a connected "
            f"machine and place it in ~/.keras/models/, or pass weights=PATH to the file (weights=none: random init)"
        ) from None


def preprocess(x):
    """``resnet50.preprocess_input`` as built-in layers on 0-255 floats: RGB -> BGR, minus the ImageNet means."""
    import keras
    from keras import layers

    x = keras.ops.flip(x, axis=-1)  # serializes as a built-in operation of the functional model
    # variance 1: a pure mean subtraction, exactly preprocess_input's arithmetic.
    return layers.Normalization(axis=-1, mean=list(IMAGENET_BGR_MEAN), variance=[1.0, 1.0, 1.0],
                                name="imagenet_preprocess")(x)


def backbone_net(input_shape: tuple[int, int, int], weights: str):
    """The no-top ResNet50 with global average pooling (2048 features), weights loaded.

    Args:
        input_shape: ``(height, width, 3)``; both sides at least ``MIN_SIZE``.
        weights: a value of ``check_weights``.

    Raises:
        CnntuneError: the weights cannot be found or do not fit a no-top ResNet50.
    """
    import keras

    if weights == "none":
        # Seed the backbone alone, then hand the trial's random stream back for the head's initialization.
        resume = random.randint(0, 2**31 - 1)
        keras.utils.set_random_seed(BACKBONE_SEED)
        net = keras.applications.ResNet50(include_top=False, weights=None, input_shape=input_shape, pooling="avg")
        keras.utils.set_random_seed(resume)
        return net
    path = imagenet_weights_file() if weights == "imagenet" else weights
    net = keras.applications.ResNet50(include_top=False, weights=None, input_shape=input_shape, pooling="avg")
    try:
        net.load_weights(path)
    except Exception as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise CnntuneError(f"cannot load {path} into a no-top ResNet50 ({reason}); expected the weights of "
                           f"ResNet50(include_top=False) as .h5 or .weights.h5") from None
    return net


def scaled_optimizer(optimizer, scale: float, variables):
    """``optimizer`` with its learning rate multiplied by ``scale`` for ``variables`` (the backbone's).

    Keras 3 has no per-variable learning rate; this subclasses the optimizer's own class for training only. A model
    compiled with it must be recompiled with ``plain_optimizer`` before it is saved, so that the saved file holds
    built-in classes only.
    """
    base = type(optimizer)

    class BackboneScaled(base):
        cnntune_base = base
        cnntune_scale = float(scale)

        def build(self, var_list):
            # Plain attribute (not tracked state): Keras forbids new tracked state once an optimizer is built.
            object.__setattr__(self, "_backbone_keys", {self._var_key(v) for v in variables})
            super().build(var_list)

        def update_step(self, gradient, variable, learning_rate):
            if self._var_key(variable) in self._backbone_keys:
                learning_rate = learning_rate * self.cnntune_scale
            return super().update_step(gradient, variable, learning_rate)

        if hasattr(base, "_parallel_update_step"):
            # Under PyTorch, Keras' built-in optimizers update all variables in one fused call and never call
            # update_step; Keras' own per-variable loop keeps the backbone's scale (the trainer runs it without
            # gradient tracking).
            def _backend_update_step(self, grads, trainable_variables, learning_rate):
                for grad, variable in zip(grads, trainable_variables):
                    self.update_step(grad, variable, learning_rate)

    return BackboneScaled.from_config(optimizer.get_config())


def plain_optimizer(optimizer):
    """The built-in optimizer behind ``scaled_optimizer`` (same config), or ``optimizer`` itself."""
    base = getattr(type(optimizer), "cnntune_base", None)
    return optimizer if base is None else base.from_config(optimizer.get_config())
