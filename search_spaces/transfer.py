"""Study part 3: transfer learning from an ImageNet ResNet50 on Caltech-UCSD Birds, frozen or fine-tuned.

| choice point | values | default (study 3.1) | condition |
|---|---|---|---|
| mode | frozen / fine_tune_top / fine_tune_all | frozen | |
| frozen_augment | false/true (augment a frozen backbone: no feature cache) | false | mode = frozen |
| trainable_stages | 1..4 (top residual stages trained: 1 = conv5, 4 = conv2..conv5) | 1 | mode = fine_tune_top |
| backbone_lr_scale | 1e-3..1 log (backbone LR = learning_rate x scale) | 0.1 | mode = fine_tune_* |
| head_units | 256..2048 log | 2048 | |
| head_bn | none/before/after ReLU | before | |
| head_bn_output | false/true (BN on the logits) | true | head_bn != none |
| dropout | 0..0.6 (after the hidden layer) | 0 | |
| zoom_range, rotation_range, horizontal_flip | as in ``augmentation`` (see below) | 0, 0, false | (*) |
| epochs, early_stopping, patience | 1..50, false/true, 0..10 | 20, false, - | |
| optimizer, learning_rate, batch_size | adam/sgd/rmsprop, 1e-4..1e-2 log, 16..128 | adam, 1e-3, 32 | |

(*) Layers active in training only, used when the backbone runs per epoch (fine-tuning, or ``frozen_augment``); the
choice points are unconditional because the vocabulary has no "or" condition, and a cached frozen trial ignores them.

Study (STUDY.md part 3), CUB-200-2010 (200 classes), 224x224, ``resnet50.preprocess_input``:

| config | layers | epochs | test acc |
|---|---|---|---|
| 3.1 frozen (features once) | avg pool -> Dense 2048 + BN + ReLU -> Dense 200 + BN + softmax (4,615,144) | 20 | 36.5% |
| 3.2 fine-tuned, all layers | avg pool -> Dense 2048 + ReLU + BN -> Dense 200 softmax | 14 | 40.13% |

The 3.1 head has 2048*2048+2048 + 4*2048 + 2048*200+200 + 4*200 = 4,615,144 parameters (4,496 non-trainable: the
BatchNormalization moving means and variances) on 2048 features with 200 classes, as the study reports.

How the modes train:

* ``frozen``: the backbone's pooled features (2048 floats per image) are computed once per dataset, image size and
  weights and cached on disk (``tuner/_features.py``); the trial trains only the head on them, in seconds. The saved
  model is still one model, backbone + head, taking raw uint8 images. Augmentation needs a backbone pass per image and
  epoch, so it is off in this mode unless ``frozen_augment=true``, which trains end to end with the backbone frozen
  (no cache: each epoch costs a full forward pass of ResNet50 over the training images, ~100x a cached epoch on CPU).
* ``fine_tune_top`` / ``fine_tune_all``: end to end; the top ``trainable_stages`` residual stages (or all layers) are
  trained with a learning rate ``backbone_lr_scale`` times the head's. The backbone runs in inference mode
  (BatchNormalization keeps its ImageNet statistics; its scale and offset still train), Keras' advice for fine-tuning.

Not choice points: the image size is a data key (``image_size=160`` ... ``224``, default 224 for ``cub200``; ResNet50
needs at least 32), because it changes the data (and the feature cache key), not the model; the backbone weights are
the run option ``weights=imagenet|none|PATH`` (default ``imagenet``). Preprocessing is ``preprocess_input``'s (RGB ->
BGR, minus the ImageNet channel means) as layers inside the model.
"""

from __future__ import annotations

from typing import Any, Mapping

from search_spaces import _blocks, _cnn, _resnet
from tuner.errors import SpaceError
from tuner.spec import Baseline, Claim, ModelSpec

NAME = "transfer"
DESCRIPTION = "Study 3: ImageNet ResNet50 on birds, frozen (cached features) or fine-tuned top K stages / all"
DEFAULT_DATA = "cub200"
# Run-level options (``key=value`` words that are neither data nor choice points) and their defaults.
DEFAULT_OPTIONS = {"weights": "imagenet"}

MODES = ("frozen", "fine_tune_top", "fine_tune_all")
HEAD_UNITS_RANGE = (256, 2048)
DROPOUT_MAX = 0.6
BACKBONE_LR_SCALE_RANGE = (1e-3, 1.0)
N_FEATURES = 2048  # ResNet50's pooled features

BASELINES: list[Baseline] = [
    Baseline(
        "frozen",
        params={"mode": "frozen", "frozen_augment": False, "head_units": 2048, "head_bn": "before",
                "head_bn_output": True, "dropout": 0.0, "epochs": 20},
        reported=36.5,
        note="STUDY 3.1 (frozen ResNet50, features once; CUB-200-2010, 200 classes)",
    ),
    Baseline(
        "fine_tuned",
        # One learning rate for all layers, as the study trained it.
        params={"mode": "fine_tune_all", "backbone_lr_scale": 1.0, "head_units": 2048, "head_bn": "after",
                "head_bn_output": False, "dropout": 0.0, "epochs": 14},
        reported=40.13,
        note="STUDY 3.2 (all layers trainable; CUB-200-2010, 200 classes)",
    ),
]
CLAIMS: list[Claim] = []


def declare(hp) -> None:
    """Declares the backbone mode, the head, the learning rates, augmentation and epochs; defaults = study 3.1."""
    hp.Choice("mode", list(MODES), default="frozen")
    with hp.conditional_scope("mode", ["frozen"]):
        hp.Boolean("frozen_augment", default=False)
    with hp.conditional_scope("mode", ["fine_tune_top"]):
        hp.Int("trainable_stages", 1, len(_resnet.STAGES), default=1)
    with hp.conditional_scope("mode", ["fine_tune_top", "fine_tune_all"]):
        hp.Float("backbone_lr_scale", *BACKBONE_LR_SCALE_RANGE, sampling="log", default=0.1)
    hp.Int("head_units", *HEAD_UNITS_RANGE, sampling="log", default=2048)
    hp.Choice("head_bn", list(_blocks.BN_POSITIONS), default="before")
    with hp.conditional_scope("head_bn", ["before", "after"]):
        hp.Boolean("head_bn_output", default=True)
    hp.Float("dropout", 0.0, DROPOUT_MAX, default=0.0)
    # Used when the backbone runs per epoch (fine-tuning, or frozen_augment); a frozen cached trial ignores them.
    _blocks.declare_augmentation(hp, zoom=0.0, rotation=0, flip=False)
    _blocks.declare_epochs(hp, default=20, searched=True)
    _blocks.declare_optimizer(hp, searched=True)


def check_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Run-level options with defaults filled in and ``weights`` normalized.

    Raises:
        SpaceError: an unknown option or a bad ``weights=`` value.
    """
    unknown = sorted(set(options) - set(DEFAULT_OPTIONS))
    if unknown:
        raise SpaceError(f"space {NAME} has no option {unknown[0]!r}; options: {', '.join(DEFAULT_OPTIONS)}")
    merged = {**DEFAULT_OPTIONS, **dict(options)}
    return {"weights": _resnet.check_weights(merged["weights"])}


def prepare(options: Mapping[str, Any]) -> None:
    """Fetches the ImageNet weights once before any trial, so a machine without them fails fast with one line."""
    if check_options(options)["weights"] == "imagenet":
        _resnet.imagenet_weights_file()


def _weights(spec: ModelSpec) -> str:
    return check_options({k: v for k, v in spec.options.items() if k in DEFAULT_OPTIONS})["weights"]


def _image_input(spec: ModelSpec):
    """uint8 image -> float 0..255 with three channels (grayscale is repeated)."""
    import keras
    from keras import layers

    height, width, channels = _cnn.check_spec(spec)
    if min(height, width) < _resnet.MIN_SIZE:
        raise _blocks.SpaceValueError(f"ResNet50 needs images of at least {_resnet.MIN_SIZE}x{_resnet.MIN_SIZE}; pass "
                                      f"image_size=32 or more. Received: input_shape={spec.input_shape}")
    if channels not in (1, 3):
        raise _blocks.SpaceValueError(f"ResNet50 takes RGB (or grayscale) images. Received: channels={channels}")
    inputs = keras.Input(shape=(height, width, channels), dtype="uint8", name="image")
    x = layers.Rescaling(1.0, name="to_float")(inputs)
    if channels == 1:
        x = layers.Concatenate(name="gray_to_rgb")([x, x, x])
    return inputs, x


def _backbone_input_shape(spec: ModelSpec) -> tuple[int, int, int]:
    return int(spec.input_shape[0]), int(spec.input_shape[1]), 3


def _head_layers(x, params: Mapping[str, Any], spec: ModelSpec):
    """Dense + ReLU (+BN before/after) -> dropout -> Dense logits (+BN) -> softmax ``predictions``."""
    from keras import layers

    units = params["head_units"]
    if isinstance(units, bool) or not isinstance(units, int) or units < 1:
        raise _blocks.SpaceValueError(f"head_units must be a positive int. Received: head_units={units!r}")
    bn = _cnn.bn_position(params, "head_bn")
    x = layers.Dense(units, name="head_dense")(x)
    x = _cnn.relu_block(x, "head_dense", bn)
    if params.get("dropout", 0.0) > 0:
        x = layers.Dropout(float(params["dropout"]), name="head_dropout")(x)
    x = layers.Dense(spec.num_classes, name="head_logits")(x)
    if bn != "none" and bool(params.get("head_bn_output", True)):
        x = layers.BatchNormalization(name="head_logits_bn")(x)
    return layers.Activation("softmax", dtype="float32", name="predictions")(x)


def _compile(model, params: Mapping[str, Any], optimizer=None):
    model.compile(optimizer=optimizer or _cnn.make_optimizer(params), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def _uses_cache(params: Mapping[str, Any]) -> bool:
    return params["mode"] == "frozen" and not params.get("frozen_augment", False)


def feature_extractor(params: Mapping[str, Any], spec: ModelSpec):
    """For cached-feature training: ``(model, identity)`` in frozen mode without augmentation, else ``None``.

    The model maps raw uint8 images to the backbone's 2048 pooled features; ``identity`` names the backbone and its
    weights (``resnet50/avg/imagenet``, ``.../none-seed0``, ``.../sha256:...``) for the feature cache key.
    """
    if not _uses_cache(params):
        return None
    import keras

    weights = _weights(spec)
    inputs, x = _image_input(spec)
    net = _resnet.backbone_net(_backbone_input_shape(spec), weights)
    net.trainable = False
    features = net(_resnet.preprocess(x), training=False)
    model = keras.Model(inputs, features, name="feature_extractor")
    return model, f"{_resnet.BACKBONE}/avg/{_resnet.weights_identity(weights)}"


def head(params: Mapping[str, Any], spec: ModelSpec, n_features: int = N_FEATURES):
    """The compiled head alone, on ``(n_features,)`` float features (study 3.1's head with the defaults)."""
    import keras

    inputs = keras.Input(shape=(int(n_features),), name="features")
    return _compile(keras.Model(inputs, _head_layers(inputs, params, spec), name="head"), params)


def build(params: Mapping[str, Any], spec: ModelSpec):
    """The compiled end-to-end model: uint8 image -> [augmentation] -> preprocessing -> ResNet50 -> head.

    Frozen mode builds it with the backbone frozen (used with ``frozen_augment``, or when the feature cache is off).
    """
    import keras

    mode = params["mode"]
    if mode not in MODES:
        raise _blocks.SpaceValueError(f"mode must be one of {list(MODES)}. Received: mode={mode!r}")
    inputs, x = _image_input(spec)
    if mode != "frozen" or params.get("frozen_augment", False):
        x = _cnn.augmentation_layers(x, params)
    net = _resnet.backbone_net(_backbone_input_shape(spec), _weights(spec))
    if mode == "frozen":
        net.trainable = False
    elif mode == "fine_tune_top":
        top = _resnet.STAGES[: int(params["trainable_stages"])]
        for layer in net.layers:
            layer.trainable = layer.name.startswith(top)
    # training=False: BatchNormalization inside the backbone keeps its statistics, also while fine-tuning.
    outputs = _head_layers(net(_resnet.preprocess(x), training=False), params, spec)
    model = keras.Model(inputs, outputs, name=NAME)
    optimizer = _cnn.make_optimizer(params)
    scale = float(params.get("backbone_lr_scale", 1.0))
    if mode != "frozen" and scale != 1.0:
        optimizer = _resnet.scaled_optimizer(optimizer, scale, net.trainable_variables)
    return _compile(model, params, optimizer)


def saveable(model):
    """The model as it is saved: compiled with a built-in optimizer (the backbone-LR optimizer is training-only)."""
    plain = _resnet.plain_optimizer(model.optimizer)
    if plain is model.optimizer:
        return model
    model.compile(optimizer=plain, loss=model.loss, metrics=["accuracy"])
    plain.build(model.trainable_variables)  # its slots are saved, so loading warns about nothing
    return model
