"""The ``modern`` space's model: the study's CNN family plus what practitioners now reach for first on small image
sets, all as Keras layers (so an exported model still takes raw uint8 images and loads on every backend).

* an augmentation policy before the input scaling, on 0-255 pixels: Keras's ``RandAugment`` (Cubuk et al. 2020: a
  few operations drawn from a fixed list at a set magnitude), or a TrivialAugment-style one (Müller & Hutter 2021:
  one operation at a magnitude drawn uniformly up to the strongest); Keras draws the operations per batch and the
  magnitudes per image. Then the study's rotation, zoom and flip, and a random translation (``translate``, the
  share of the side; the usual CIFAR recipe pads 4 px and crops, 0.125 at 32 px);
* a residual body (He et al. 2016, the CIFAR ResNet): a 3x3 stem, three stages of ``res_blocks`` basic blocks
  (two 3x3 convolutions with BatchNormalization) of ``res_width``, twice and four times that many filters, the
  second and third stage halving the size; a shortcut is the identity, or a 1x1 convolution where the shape changes.
  ``stochastic_depth`` (Huang et al. 2016) drops a block's residual branch per image, at a rate rising linearly to it
  over the blocks (a ``Dropout`` with one draw per image: the same scaling, and nothing at inference);
* a global-average-pooling head (``head=gap``) besides the study's flatten + dense one, and ``dropout`` before the
  logits.

Training-time choices (label smoothing, MixUp / CutMix, AdamW, learning-rate schedules) are not layers: the
optimizer and loss are compiled by ``_cnn.compile_model`` and the batches are mixed by the trial runner.
"""

from __future__ import annotations

from typing import Any, Mapping

from search_spaces._blocks import ARCH_KEYS, BODIES, TRAINING_KEYS, SpaceValueError
from search_spaces._cnn import (check_keys, compile_model, dense_head, positive_int, predictions, require, share, stem,
                                study_body)
from tuner.spec import ModelSpec

__all__ = ["HEADS", "MODERN_KEYS", "POLICIES", "RESIDUAL", "STAGES", "build_modern", "policy_layer",
           "residual_body"]

RESIDUAL = "resnet"  # the residual body's name among the bodies
STAGES = 3
HEADS = ("flatten_dense", "gap")
POLICIES = ("none", "randaugment", "trivialaugment")
RANDAUGMENT_OPS = 2  # RandAugment's N for CIFAR in its paper and Keras's default
MODERN_KEYS = frozenset({"augment_policy", "randaugment_magnitude", "translate", "res_width", "res_blocks",
                         "stochastic_depth", "head", "dropout", "weight_decay", "lr_schedule", "warmup_epochs",
                         "label_smoothing", "mix", "mix_alpha"})


def policy_layer(config: Mapping[str, Any]):
    """The ``augment_policy`` layer (on 0-255 pixels), or ``None`` for ``none`` or a missing key."""
    from keras import layers

    policy = config.get("augment_policy") or "none"
    if policy not in POLICIES:
        raise SpaceValueError(f"augment_policy must be one of {list(POLICIES)}. Received: augment_policy={policy!r}")
    if policy == "none":
        return None
    if policy == "trivialaugment":
        return layers.RandAugment(value_range=(0, 255), num_ops=1, factor=1.0, name="aug_trivialaugment")
    magnitude = require(config, "randaugment_magnitude", "augment_policy=randaugment")
    if not (isinstance(magnitude, (int, float)) and 0 < magnitude <= 1):
        raise SpaceValueError(f"randaugment_magnitude must be in (0, 1]. Received: randaugment_magnitude={magnitude!r}")
    return layers.RandAugment(value_range=(0, 255), num_ops=RANDAUGMENT_OPS, factor=float(magnitude),
                              name="aug_randaugment")


def residual_body(x, config: Mapping[str, Any]):
    """The CIFAR ResNet body (see the module's docstring): ``6 * res_blocks + 1`` convolutions, ``same`` padding."""
    from keras import layers

    why = f"body={RESIDUAL!r}"
    width, blocks = positive_int(config, "res_width", why), positive_int(config, "res_blocks", why)
    drop = share(config, "stochastic_depth")

    def conv_bn(x, filters: int, size: int, stride: int, name: str):
        x = layers.Conv2D(filters, size, strides=stride, padding="same", use_bias=False, name=f"{name}_conv")(x)
        return layers.BatchNormalization(name=f"{name}_bn")(x)

    x = layers.ReLU(name="stem_relu")(conv_bn(x, width, 3, 1, "stem"))
    total, index = STAGES * blocks, 0
    for stage in range(STAGES):
        filters = width * 2 ** stage
        for block in range(blocks):
            index += 1
            name = f"stage{stage + 1}_block{block + 1}"
            stride = 2 if stage and not block else 1
            y = layers.ReLU(name=f"{name}_relu1")(conv_bn(x, filters, 3, stride, f"{name}_1"))
            y = conv_bn(y, filters, 3, 1, f"{name}_2")
            if drop > 0:
                y = layers.Dropout(drop * index / total, noise_shape=(None, 1, 1, 1), name=f"{name}_drop")(y)
            shortcut = x if stride == 1 and x.shape[-1] == filters else conv_bn(x, filters, 1, stride,
                                                                                 f"{name}_shortcut")
            x = layers.ReLU(name=f"{name}_relu")(layers.Add(name=f"{name}_add")([shortcut, y]))
    return x


def build_modern(config: Mapping[str, Any], spec: ModelSpec, *, name: str):
    """Builds and compiles the ``modern`` space's model from a flat config (see the module's docstring).

    Raises:
        SpaceValueError: an unknown key, a bad value, or a study body too deep for the image size.
    """
    check_keys(config, ARCH_KEYS | TRAINING_KEYS | MODERN_KEYS)
    import keras
    from keras import layers

    inputs, x = stem(config, spec, policy=policy_layer(config))
    shift = share(config, "translate")
    if shift > 0:
        x = layers.RandomTranslation(shift, shift, fill_mode="constant", name="aug_translate")(x)
    body = require(config, "body", "the conv body")
    if body != RESIDUAL and body not in BODIES:
        raise SpaceValueError(f"Unknown body; expected one of {[*BODIES, RESIDUAL]}. Received: body={body!r}")
    x = residual_body(x, config) if body == RESIDUAL else study_body(x, config, spec)
    head = config.get("head") or "flatten_dense"
    if head not in HEADS:
        raise SpaceValueError(f"head must be one of {list(HEADS)}. Received: head={head!r}")
    if head == "gap":
        outputs = predictions(layers.GlobalAveragePooling2D(name="gap")(x), config, spec, logits_bn=False)
    else:
        outputs = dense_head(x, config, spec)
    model = keras.Model(inputs, outputs, name=name)
    compile_model(model, config, spec)
    return model
