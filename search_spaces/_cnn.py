"""The study's CNN family as Keras models: one builder for every CNN space.

One model family covers the whole study: a uint8 image input, a rescaling or featurewise-normalization layer,
augmentation layers (training only), a body of valid-padded convolutions and 2x2 max-pools picked from
``_blocks.BODIES``, ``Flatten``, one hidden ``Dense`` + ReLU and a softmax output, with BatchNormalization optionally
before or after each ReLU (and on the output logits, as the study's final model has it). ``build_cnn`` reads a flat
config dict whose keys are ``_blocks.ARCH_KEYS`` (plus the training options the trial runner reads, which it
ignores). Keras is imported inside the functions so that ``import search_spaces`` stays free of TensorFlow.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping

from search_spaces._blocks import (ARCH_KEYS, BN_POSITIONS, BODIES, OPTIMIZERS, SGD_MOMENTUM, TRAINING_KEYS,
                                   SpaceValueError)
from tuner.spec import ModelSpec, soft_targets

__all__ = [
    "augmentation_layers",
    "body_output_size",
    "bn_position",
    "build_cnn",
    "check_keys",
    "check_spec",
    "compile_model",
    "dense_head",
    "input_scaling",
    "learning_rate",
    "make_optimizer",
    "positive_int",
    "predictions",
    "relu_block",
    "require",
    "share",
    "space_builder",
    "stem",
    "study_body",
    "zoom_bounds",
]

# Keras requires each RandomZoom bound in (-1, 1]: a transform factor 1 + f in (0, 2]. ImageDataGenerator's
# zoom_range=1.2 draws factors in [-0.2, 2.2] (negative = mirrored, near 0 = extreme zoom-in); the nearest valid
# range is [1 - 0.99, 1 + 1.0] = [0.01, 2.0], which keeps the "anything goes" character of the study's 33.60% row.
_ZOOM_LOWER_LIMIT = -0.99
_ZOOM_UPPER_LIMIT = 1.0

def zoom_bounds(zoom_range: float) -> tuple[float, float]:
    """``RandomZoom`` factor bounds for ImageDataGenerator's ``zoom_range``.

    ``RandomZoom`` with bounds ``(lo, hi)`` samples the transform factor ``1 + f`` with ``f`` in ``[lo, hi]``,
    exactly ImageDataGenerator's factor in ``[1 - z, 1 + z]``; Keras requires bounds in (-1, 1], so ``z > 1`` is
    clipped to ``(-0.99, 1.0)``.

    Args:
        zoom_range: ``z >= 0``.

    Returns:
        ``(lower, upper)`` for ``height_factor`` and ``width_factor``.
    """
    if not (isinstance(zoom_range, (int, float)) and math.isfinite(zoom_range) and zoom_range >= 0):
        raise SpaceValueError(f"zoom_range must be a number >= 0. Received: zoom_range={zoom_range!r}")
    return max(-float(zoom_range), _ZOOM_LOWER_LIMIT), min(float(zoom_range), _ZOOM_UPPER_LIMIT)


def require(config: Mapping[str, Any], key: str, why: str) -> Any:
    if key not in config:
        raise SpaceValueError(f"{why} needs {key!r}. Received: keys={sorted(config)}")
    return config[key]


def positive_int(config: Mapping[str, Any], key: str, why: str) -> int:
    """``config[key]`` (``require``d for ``why``), checked to be an int of at least 1 (a width, a count)."""
    value = require(config, key, why)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SpaceValueError(f"{key} must be a positive int. Received: {key}={value!r}")
    return value


def share(config: Mapping[str, Any], key: str) -> float:
    """``config[key]`` as a share in [0, 1) (a rate, a fraction of the side); missing or ``None`` is 0."""
    value = config.get(key) or 0.0
    if not (isinstance(value, (int, float)) and 0 <= value < 1):
        raise SpaceValueError(f"{key} must be in [0, 1). Received: {key}={value!r}")
    return float(value)


def check_keys(config: Mapping[str, Any], valid: frozenset) -> None:
    """Refuses a config with a key that is not ``valid``."""
    unknown = sorted(set(config) - valid)
    if unknown:
        raise SpaceValueError(f"Unknown hyperparameters {unknown}; valid: {sorted(valid)}. "
                              f"Received: keys={sorted(config)}")


def check_spec(spec: ModelSpec) -> tuple[int, int, int]:
    """``(height, width, channels)`` of a spec, checked.

    Raises:
        SpaceValueError: not three positive ints, or fewer than two classes.
    """
    shape = tuple(spec.input_shape)
    if len(shape) != 3 or not all(isinstance(d, int) and d > 0 for d in shape):
        raise SpaceValueError(f"input_shape must be (height, width, channels) of positive ints. Received: "
                              f"input_shape={spec.input_shape}")
    if not isinstance(spec.num_classes, int) or spec.num_classes < 2:
        raise SpaceValueError(f"num_classes must be an int >= 2. Received: num_classes={spec.num_classes}")
    return shape  # type: ignore[return-value]


def body_output_size(body: str, height: int, width: int) -> tuple[int, int]:
    """Spatial size after ``body`` (valid padding), raising a clear error when the image is too small.

    Raises:
        SpaceValueError: some layer would get an empty input.
    """
    if body not in BODIES:
        raise SpaceValueError(f"Unknown body; expected one of {list(BODIES)}. Received: body={body!r}")
    h, w = height, width
    for kind, size, _ in BODIES[body]:
        h, w = (h - size + 1, w - size + 1) if kind == "conv" else (h // size, w // size)
        if h < 1 or w < 1:
            raise SpaceValueError(
                f"body={body!r} collapses below 1x1 at {height}x{width} px (a {kind} {size}x{size} gets an empty "
                f"input); use larger images or a shallower body. Received: input_shape=({height}, {width}, ...)"
            )
    return h, w


def stem(config: Mapping[str, Any], spec: ModelSpec, policy=None):
    """uint8 image -> [``policy``, a layer on 0-255 pixels] -> rescale or featurewise normalization -> augmentation
    (training only); returns ``(inputs, x)``."""
    import keras

    inputs = keras.Input(shape=check_spec(spec), dtype="uint8", name="image")
    x = inputs if policy is None else policy(inputs)
    return inputs, augmentation_layers(input_scaling(x, config, spec), config)


def input_scaling(x, config: Mapping[str, Any], spec: ModelSpec):
    """Featurewise normalization with the training pixels' statistics (``normalize``) or a plain 1/255 rescale."""
    from keras import layers

    channels = check_spec(spec)[2]
    if bool(require(config, "normalize", "the input stem")):
        if len(spec.mean) != channels or len(spec.variance) != channels:
            raise SpaceValueError(f"mean and variance need one value per channel ({channels}). Received: "
                                  f"mean={spec.mean}, variance={spec.variance}")
        # Passing mean/variance makes a constant layer: no weights, no adapt(), exact parameter counts.
        return layers.Normalization(axis=-1, mean=list(spec.mean), variance=list(spec.variance), name="normalize")(x)
    return layers.Rescaling(1.0 / 255, name="rescale")(x)


def augmentation_layers(x, config: Mapping[str, Any]):
    """Rotation, zoom and horizontal flip layers per ``rotation_range``, ``zoom_range``, ``horizontal_flip``."""
    from keras import layers

    # ImageDataGenerator builds rotation and zoom into one affine transform, then flips; same order here.
    # fill_mode="nearest" is its default; these layers are the identity unless training=True.
    rotation = require(config, "rotation_range", "the augmentation stem")
    zoom = require(config, "zoom_range", "the augmentation stem")
    if not (isinstance(rotation, (int, float)) and 0 <= rotation <= 180):
        raise SpaceValueError(f"rotation_range must be in [0, 180] degrees. Received: rotation_range={rotation!r}")
    if rotation > 0:
        x = layers.RandomRotation(factor=rotation / 360.0, fill_mode="nearest", name="aug_rotation")(x)
    lower, upper = zoom_bounds(zoom)
    if zoom > 0:
        x = layers.RandomZoom(height_factor=(lower, upper), width_factor=(lower, upper), fill_mode="nearest",
                              name="aug_zoom")(x)
    if bool(require(config, "horizontal_flip", "the augmentation stem")):
        x = layers.RandomFlip("horizontal", name="aug_flip")(x)
    return x


def bn_position(config: Mapping[str, Any], key: str) -> str:
    """The BatchNormalization position ``config[key]`` (none/before/after), checked."""
    value = require(config, key, "BatchNormalization")
    if value not in BN_POSITIONS:
        raise SpaceValueError(f"{key} must be one of {list(BN_POSITIONS)}. Received: {key}={value!r}")
    return value


def relu_block(x, name: str, bn: str):
    """[BN] -> ReLU -> [BN] after a linear conv/dense layer, per ``bn`` (none/before/after)."""
    from keras import layers

    if bn == "before":
        x = layers.BatchNormalization(name=f"{name}_bn")(x)
    x = layers.Activation("relu", name=f"{name}_relu")(x)
    if bn == "after":
        x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return x


def study_body(x, config: Mapping[str, Any], spec: ModelSpec):
    from keras import layers

    body = require(config, "body", "the conv body")
    body_output_size(body, spec.input_shape[0], spec.input_shape[1])
    bn = bn_position(config, "bn_conv")
    block = 0
    for kind, size, key in BODIES[body]:
        if kind == "conv":
            block += 1
            filters = positive_int(config, key, f"body={body!r}")
            x = layers.Conv2D(filters, size, padding="valid", name=f"block{block}_conv")(x)
            x = relu_block(x, f"block{block}", bn)
        else:
            x = layers.MaxPooling2D(pool_size=size, name=f"block{block}_pool")(x)
    return x


def dense_head(x, config: Mapping[str, Any], spec: ModelSpec):
    """Flatten -> Dense + ReLU (+BN) -> Dense logits (+BN) -> softmax ``predictions``."""
    from keras import layers

    units = positive_int(config, "dense_units", "the dense head")
    bn = bn_position(config, "bn_dense")
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(units, name="dense1")(x)
    x = relu_block(x, "dense1", bn)
    # BN on the logits goes with BN in the dense layers (the study's final model has it); missing means yes.
    return predictions(x, config, spec, logits_bn=bn != "none" and bool(config.get("bn_output", True)))


def predictions(x, config: Mapping[str, Any], spec: ModelSpec, *, logits_bn: bool):
    """[Dropout] -> Dense logits [-> BN] -> softmax ``predictions``; ``dropout`` (missing: none) before the logits."""
    from keras import layers

    rate = share(config, "dropout")
    if rate > 0:
        x = layers.Dropout(rate, name="dropout")(x)
    x = layers.Dense(spec.num_classes, name="logits")(x)
    if logits_bn:
        x = layers.BatchNormalization(name="logits_bn")(x)
    # float32 probabilities even under a mixed-precision policy.
    return layers.Activation("softmax", dtype="float32", name="predictions")(x)


# A learning-rate schedule per step over the trial's epochs (missing: constant). One-cycle (Smith & Topin 2019, as
# PyTorch's OneCycleLR has it): from lr/25 up to lr over the first 30% of the steps, then down to lr/25/1e4 along a
# cosine; the warm-up here is linear.
SCHEDULES = ("constant", "cosine", "one_cycle")
_ONE_CYCLE = {"start": 1 / 25, "warmup": 0.3, "end": 1 / 25 / 1e4}


def learning_rate(config: Mapping[str, Any], spec: ModelSpec | None = None):
    """``config["learning_rate"]``, or the schedule ``config["lr_schedule"]`` peaking at it: ``cosine`` decays it
    to 0 along a cosine after ``warmup_epochs`` of linear warm-up from 0; ``one_cycle`` as above. A schedule counts
    its steps from ``spec.train_size``, ``batch_size`` and ``epochs``."""
    import keras

    lr = require(config, "learning_rate", "compile")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
        raise SpaceValueError(f"learning_rate must be a positive number. Received: learning_rate={lr!r}")
    schedule = config.get("lr_schedule") or "constant"
    if schedule not in SCHEDULES:
        raise SpaceValueError(f"lr_schedule must be one of {list(SCHEDULES)}. Received: lr_schedule={schedule!r}")
    if schedule == "constant":
        return float(lr)
    per_epoch = math.ceil(max(int(getattr(spec, "train_size", 0) or 0), 1) / int(config.get("batch_size", 32)))
    steps = max(int(config.get("epochs", 1)) * per_epoch, 2)
    if schedule == "cosine":
        warmup = min(int(float(config.get("warmup_epochs") or 0) * per_epoch), steps - 1)
        if not warmup:
            return keras.optimizers.schedules.CosineDecay(float(lr), decay_steps=steps)
        return keras.optimizers.schedules.CosineDecay(0.0, decay_steps=steps - warmup, warmup_target=float(lr),
                                                      warmup_steps=warmup)
    warmup = max(int(_ONE_CYCLE["warmup"] * steps), 1)
    return keras.optimizers.schedules.CosineDecay(float(lr) * _ONE_CYCLE["start"], decay_steps=steps - warmup,
                                                  alpha=_ONE_CYCLE["end"], warmup_target=float(lr),
                                                  warmup_steps=warmup)


def make_optimizer(config: Mapping[str, Any], spec: ModelSpec | None = None):
    """The Keras optimizer named by ``config["optimizer"]`` at ``learning_rate(config, spec)``, with
    ``weight_decay`` (decoupled, as Keras applies it) for ``sgd`` and ``adamw`` where the config has one."""
    import keras

    name = require(config, "optimizer", "compile")
    lr = learning_rate(config, spec)
    decay = None if config.get("weight_decay") is None else share(config, "weight_decay")
    if name == "adam":
        return keras.optimizers.Adam(learning_rate=lr)
    if name == "sgd":
        # Plain SGD barely moves in 15-20 epochs at these rates; momentum 0.9 is what practitioners use.
        return keras.optimizers.SGD(learning_rate=lr, momentum=SGD_MOMENTUM, weight_decay=decay or None)
    if name == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate=lr)
    if name == "adamw":
        return keras.optimizers.AdamW(learning_rate=lr, weight_decay=0.004 if decay is None else decay)
    raise SpaceValueError(f"optimizer must be one of {[*OPTIMIZERS, 'adamw']}. Received: optimizer={name!r}")


def compile_model(model, config: Mapping[str, Any], spec: ModelSpec) -> None:
    """Compiles ``model`` with the config's optimizer, and a cross-entropy on class numbers, or on one-hot labels
    with ``label_smoothing`` where the trial trains on them (``tuner.spec.soft_targets``)."""
    import keras

    loss: Any = "sparse_categorical_crossentropy"  # integer labels
    if soft_targets(config):
        loss = keras.losses.CategoricalCrossentropy(label_smoothing=share(config, "label_smoothing"))
    model.compile(optimizer=make_optimizer(config, spec), loss=loss, metrics=["accuracy"])


def build_cnn(config: Mapping[str, Any], spec: ModelSpec, *, name: str):
    """Builds and compiles the study's CNN family from a flat config.

    Args:
        config: values for ``ARCH_KEYS`` (the ones the chosen body needs); ``TRAINING_KEYS`` are allowed and ignored.
        spec: input shape, number of classes and the training pixels' per-channel mean/variance.
        name: the model's name.

    Returns:
        A compiled ``keras.Model`` taking raw uint8 images and returning class probabilities.

    Raises:
        SpaceValueError: an unknown key, a bad value, or a body too deep for the image size.
    """
    check_keys(config, ARCH_KEYS | TRAINING_KEYS)
    import keras

    inputs, x = stem(config, spec)
    x = study_body(x, config, spec)
    outputs = dense_head(x, config, spec)
    model = keras.Model(inputs, outputs, name=name)
    compile_model(model, config, spec)
    return model


def space_builder(name: str, fixed: Mapping[str, Any]) -> Callable[[Mapping[str, Any], ModelSpec], Any]:
    """The ``build(params, spec)`` of a study CNN space: its fixed values, overridden by the trial's values.

    Every CNN space of the study is the same model family with some choice points fixed and others searched, so
    the spaces declare only ``FIXED`` and ``declare(hp)`` and share this one builder.

    Args:
        name: the space's name (the model's name).
        fixed: the values the space does not declare (e.g. the BaseNet body of the normalization step).
    """
    fixed = dict(fixed)

    def build(params: Mapping[str, Any], spec: ModelSpec):
        """Returns the compiled model of this space for ``params`` (the active values of its choice points)."""
        return build_cnn({**fixed, **params}, spec, name=name)

    build.__qualname__ = f"{name}.build"
    return build
