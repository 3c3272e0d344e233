"""The search spaces: contract, the study's exact architectures, baselines, conditions, augmentation semantics.

Fast: small models only (32x32 inputs), one tiny fit; no data loading.
"""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

import search_spaces
from conftest import non_trainable, run_python
from search_spaces import _cnn
from tuner import hp as H
from tuner.spec import Baseline, ModelSpec

keras = pytest.importorskip("keras")

# weights=none: the transfer space's backbone gets random weights (no download); the other spaces ignore options.
SPEC = ModelSpec(input_shape=(32, 32, 3), num_classes=25, options={"weights": "none"})
SPACE_NAMES = list(search_spaces.SPACES)
ALL_BASELINES = [(name, b) for name, space in search_spaces.SPACES.items() for b in space.BASELINES]


@pytest.fixture(autouse=True)
def _fresh_session():
    # Keeps memory flat and layer-name counters independent across the many small builds; one garbage
    # collection per test is enough (it is the slow part of clear_session).
    keras.backend.clear_session(free_memory=False)
    yield
    keras.backend.clear_session()


class RandomHP(H.HyperParameters):
    """Samples every active choice point at random; inactive ones are never sampled (base-class behaviour)."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        self._rng = random.Random(seed)

    def _value(self, param: H.Param):
        rng = self._rng
        if isinstance(param, H.Choice):
            return rng.choice(param.values)
        if isinstance(param, H.Boolean):
            return rng.random() < 0.5
        if isinstance(param, H.Int):
            if param.sampling == "log":
                low, high = math.log(max(param.min_value, 1)), math.log(param.max_value)
                value = int(round(math.exp(rng.uniform(low, high))))
                return min(max(value, param.min_value), param.max_value)
            return rng.randrange(param.min_value, param.max_value + 1, param.step or 1)
        if isinstance(param, H.Float):
            if param.sampling == "log":
                return math.exp(rng.uniform(math.log(param.min_value), math.log(param.max_value)))
            return rng.uniform(param.min_value, param.max_value)
        return param.default  # Fixed


def _np(x) -> np.ndarray:
    return keras.ops.convert_to_numpy(x)


def _defaults(space, values=None) -> dict:
    return H.resolve(space, H.Defaults(values))


def _layers(model) -> list[tuple[str, tuple]]:
    return [(layer.__class__.__name__, tuple(layer.output.shape[1:])) for layer in model.layers]



# -- registry and import hygiene ---------------------------------------------------------------------------------
def test_registry_order_and_names():
    assert SPACE_NAMES == ["basenet", "normalization", "augmentation", "deeper_net", "batchnorm", "epochs", "improved",
                           "transfer", "modern"]
    for name, space in search_spaces.SPACES.items():
        assert space.NAME == name
        assert name in search_spaces.__all__
    assert "SPACES" in search_spaces.__all__


def test_import_and_declare_do_not_import_keras():
    code = (
        "import sys, search_spaces\n"
        "from tuner import hp\n"
        "for s in search_spaces.SPACES.values():\n"
        "    hp.describe(s); hp.resolve(s, hp.Defaults())\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('keras', 'tensorflow', 'keras_tuner'))\n"
        "assert not bad, bad\n"
    )
    run_python(code)


# -- the study's exact models --------------------------------------------------------------------------------------
BASENET_LAYERS = [
    ("InputLayer", (32, 32, 3)),
    ("Rescaling", (32, 32, 3)),
    ("Conv2D", (28, 28, 6)),
    ("Activation", (28, 28, 6)),
    ("MaxPooling2D", (14, 14, 6)),
    ("Conv2D", (10, 10, 16)),
    ("Activation", (10, 10, 16)),
    ("MaxPooling2D", (5, 5, 16)),
    ("Flatten", (400,)),
    ("Dense", (50,)),
    ("Activation", (50,)),
    ("Dense", (25,)),
    ("Activation", (25,)),
]

FINAL_LAYERS = [
    ("InputLayer", (32, 32, 3)),
    ("Normalization", (32, 32, 3)),
    ("RandomZoom", (32, 32, 3)),
    ("RandomFlip", (32, 32, 3)),
    ("Conv2D", (28, 28, 6)),
    ("Activation", (28, 28, 6)),
    ("BatchNormalization", (28, 28, 6)),
    ("Conv2D", (24, 24, 56)),
    ("Activation", (24, 24, 56)),
    ("BatchNormalization", (24, 24, 56)),
    ("Conv2D", (20, 20, 106)),
    ("Activation", (20, 20, 106)),
    ("BatchNormalization", (20, 20, 106)),
    ("MaxPooling2D", (10, 10, 106)),
    ("Flatten", (10600,)),
    ("Dense", (50,)),
    ("Activation", (50,)),
    ("BatchNormalization", (50,)),
    ("Dense", (25,)),
    ("BatchNormalization", (25,)),
    ("Activation", (25,)),
]


def test_basenet_defaults_are_the_study_basenet():
    model = search_spaces.basenet.build(_defaults(search_spaces.basenet), SPEC)
    assert model.count_params() == 24_197
    assert non_trainable(model) == 0
    assert _layers(model) == BASENET_LAYERS
    for name in ("block1_conv", "block2_conv", "block2_pool", "flatten", "dense1", "predictions"):
        model.get_layer(name)
    assert model.get_layer("block1_conv").kernel_size == (5, 5)
    assert model.get_layer("predictions").activation.__name__ == "softmax"


def test_improved_defaults_are_the_study_final_model():
    model = search_spaces.improved.build(_defaults(search_spaces.improved), SPEC)
    assert model.count_params() == 689_715
    assert non_trainable(model) == 486
    assert _layers(model) == FINAL_LAYERS
    zoom = model.get_layer("aug_zoom")
    assert (zoom.height_lower, zoom.height_upper, zoom.width_lower, zoom.width_upper) == (-0.2, 0.2, -0.2, 0.2)
    assert model.get_layer("aug_flip").mode == "horizontal"
    assert _defaults(search_spaces.improved)["epochs"] == 20


def test_improved_final_baseline_is_the_defaults():
    final = next(b for b in search_spaces.improved.BASELINES if b.name == "final")
    assert final.reported == 55.6
    params = _defaults(search_spaces.improved, final.params)
    assert params == _defaults(search_spaces.improved)
    model = search_spaces.improved.build(params, SPEC)
    assert model.count_params() == 689_715
    assert non_trainable(model) == 486


def test_improved_basenet_baseline_is_basenet():
    base = next(b for b in search_spaces.improved.BASELINES if b.name == "basenet")
    params = _defaults(search_spaces.improved, base.params)
    assert params["epochs"] == 15 and "conv3_filters" not in params and "bn_output" not in params
    model = search_spaces.improved.build(params, SPEC)
    assert model.count_params() == 24_197
    assert _layers(model) == BASENET_LAYERS


def test_the_study_chain_links_up():
    # Each step's chosen config is the next step's "previous" baseline: same architecture, same size.
    counts = {
        name: search_spaces.SPACES[name].build(_defaults(search_spaces.SPACES[name]), SPEC).count_params()
        for name in ("normalization", "augmentation", "deeper_net", "batchnorm", "epochs")
    }
    assert counts["normalization"] == counts["augmentation"] == 24_197  # normalization/augmentation add no weights
    assert counts["deeper_net"] == 6 * 76 + 56 * 151 + 106 * 1401 + 10600 * 50 + 50 + 50 * 25 + 25
    assert counts["batchnorm"] == counts["epochs"] == 689_715


# -- every space ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", SPACE_NAMES)
def test_module_contract(name):
    space = search_spaces.SPACES[name]
    assert isinstance(space.DESCRIPTION, str) and space.DESCRIPTION and "\n" not in space.DESCRIPTION
    assert space.DEFAULT_DATA == ("cub200" if name == "transfer" else "cifar100_25")
    assert space.__doc__ and "|---|" in space.__doc__  # the study table, as Markdown
    assert space.BASELINES and all(isinstance(b, Baseline) for b in space.BASELINES)
    assert len({b.name for b in space.BASELINES}) == len(space.BASELINES)
    for b in space.BASELINES:
        if name == "modern" and b.name == "resnet20":  # a recipe from its paper: no figure on this data
            assert b.reported is None and "He et al. 2016" in b.note
            continue
        assert isinstance(b.reported, (int, float)) and 0 < b.reported < 100, b
        assert b.note.startswith("STUDY"), b


@pytest.mark.parametrize("name", SPACE_NAMES)
def test_nuisance_names_and_defaults(name):
    space = search_spaces.SPACES[name]
    params = H.describe(space)
    for key in ("optimizer", "learning_rate", "batch_size", "epochs"):
        assert key in params, key
    defaults = _defaults(space)
    assert (defaults["optimizer"], defaults["learning_rate"], defaults["batch_size"]) == ("adam", 1e-3, 32)
    searched = name in ("basenet", "improved", "transfer", "modern")
    for key in ("optimizer", "learning_rate", "batch_size"):
        assert params[key].is_tunable == searched, key
    # every declaration carries a default that is a valid value
    for param in params.values():
        assert param.contains(param.default), param


@pytest.mark.parametrize("name", SPACE_NAMES)
def test_builds_with_defaults(name):
    space = search_spaces.SPACES[name]
    model = space.build(_defaults(space), SPEC)
    assert model.name == name
    assert model.input.dtype == "uint8"
    assert tuple(model.output.shape) == (None, 25)
    assert model.optimizer is not None and model.loss == "sparse_categorical_crossentropy"


@pytest.mark.parametrize("name", SPACE_NAMES)
def test_builds_random_samples(name):
    space = search_spaces.SPACES[name]
    described = H.describe(space)
    for seed in range(4):
        params = H.resolve(space, RandomHP(seed))
        for key, value in params.items():
            assert described[key].contains(value), (key, value)
        model = space.build(params, SPEC)
        assert tuple(model.output.shape) == (None, 25)
        keras.backend.clear_session(free_memory=False)


@pytest.mark.parametrize(("name", "baseline"), ALL_BASELINES, ids=[f"{n}-{b.name}" for n, b in ALL_BASELINES])
def test_baseline_is_valid_and_builds(name, baseline):
    space = search_spaces.SPACES[name]
    described = H.describe(space)
    for key, value in baseline.params.items():
        assert key in described, key
        assert described[key].contains(value), (key, value)
    params = _defaults(space, baseline.params)
    assert set(baseline.params) <= set(params), "a baseline pins an inactive hyperparameter"
    model = space.build(params, SPEC)
    assert tuple(model.output.shape) == (None, 25)


def test_baseline_counts():
    counts = {name: len(space.BASELINES) for name, space in search_spaces.SPACES.items()}
    assert counts == {"basenet": 1, "normalization": 2, "augmentation": 10, "deeper_net": 9, "batchnorm": 5,
                      "epochs": 7, "improved": 2, "transfer": 2, "modern": 3}
    reported = {b.name: b.reported for b in search_spaces.augmentation.BASELINES}
    assert reported["zoom0.2+flip"] == 41.32 and reported["zoom1.2"] == 33.60


@pytest.mark.parametrize("name", SPACE_NAMES)
def test_declare_with_keras_tuner(name):
    kt = pytest.importorskip("keras_tuner")
    space = search_spaces.SPACES[name]
    hp = kt.HyperParameters()
    params = H.resolve(space, hp)
    assert params == _defaults(space)
    assert {p.name for p in hp.space} == set(H.describe(space))
    space.build(params, SPEC)


# -- deeper_net bodies ---------------------------------------------------------------------------------------------
DEEPER_FLATTEN = {
    "basenet_body": 5 * 5 * 16,
    "extra3x3_before_pool": 3 * 3 * 16,
    "extra3x3_after_pool": 2 * 2 * 16,
    "third5x5_no_pool1": 4 * 4 * 32,
    "third5x5_no_pool2": 3 * 3 * 32,
    "third5x5_pool_end": 10 * 10 * 32,
    "stack_5333_5333": 1 * 1 * 16,
    "stack_5333335": 7 * 7 * 16,
    "6-56-106": 10_600,
}
DEEPER_CONVS = {  # (kernel sizes in order, number of max-pools)
    "basenet_body": ([5, 5], 2),
    "extra3x3_before_pool": ([5, 3, 5, 3], 2),
    "extra3x3_after_pool": ([5, 3, 5, 3], 2),
    "third5x5_no_pool1": ([5, 5, 5], 2),
    "third5x5_no_pool2": ([5, 5, 5], 2),
    "third5x5_pool_end": ([5, 5, 5], 1),
    "stack_5333_5333": ([5, 3, 3, 3, 5, 3, 3, 3], 1),
    "stack_5333335": ([5, 3, 3, 3, 3, 3, 5], 1),
    "6-56-106": ([5, 5, 5], 1),
}


@pytest.mark.parametrize("baseline", search_spaces.deeper_net.BASELINES, ids=lambda b: b.name)
def test_deeper_net_baseline_architectures(baseline):
    space = search_spaces.deeper_net
    model = space.build(_defaults(space, baseline.params), SPEC)
    assert model.get_layer("flatten").output.shape[1] == DEEPER_FLATTEN[baseline.name]
    kernels = [layer.kernel_size[0] for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    pools = [layer for layer in model.layers if isinstance(layer, keras.layers.MaxPooling2D)]
    assert (kernels, len(pools)) == DEEPER_CONVS[baseline.name]
    # the study's earlier choices are kept: normalization + zoom 0.2 + flip, no BN
    assert [type(layer).__name__ for layer in model.layers[1:4]] == ["Normalization", "RandomZoom", "RandomFlip"]
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers)


def test_six_56_106_net():
    model = search_spaces.deeper_net.build(_defaults(search_spaces.deeper_net), SPEC)
    convs = [layer.filters for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert convs == [6, 56, 106]
    assert model.get_layer("flatten").output.shape[1] == 10_600
    assert model.count_params() == 689_715 - (24 + 224 + 424 + 200 + 100)


@pytest.mark.parametrize("name", SPACE_NAMES)
def test_builds_for_other_image_shapes(name):
    # non-square, single-channel images with their own statistics (e.g. a folder dataset at another resolution)
    spec = ModelSpec(input_shape=(40, 36, 1), num_classes=7, mean=(90.0,), variance=(3000.0,),
                     options={"weights": "none"})
    space = search_spaces.SPACES[name]
    model = space.build(_defaults(space), spec)
    assert tuple(model.output.shape) == (None, 7)


def test_body_too_deep_for_small_images_raises():
    small = ModelSpec(input_shape=(16, 16, 3), num_classes=5)
    space = search_spaces.deeper_net
    with pytest.raises(ValueError, match="collapses below 1x1"):
        space.build(_defaults(space, {"body": "stack_5333_5333"}), small)
    # a shallower body fits
    space.build(_defaults(space, {"body": "third5x5_pool_end"}), small)


def test_unknown_key_and_bad_value_raise():
    space = search_spaces.basenet
    with pytest.raises(ValueError, match="Unknown hyperparameters"):
        space.build({**_defaults(space), "conv9_filters": 3}, SPEC)
    with pytest.raises(ValueError, match="optimizer"):
        space.build({**_defaults(space), "optimizer": "adagrad"}, SPEC)


# -- batchnorm positions -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("baseline", search_spaces.batchnorm.BASELINES, ids=lambda b: b.name)
def test_batchnorm_positions(baseline):
    space = search_spaces.batchnorm
    params = _defaults(space, baseline.params)
    model = space.build(params, SPEC)
    names = [layer.name for layer in model.layers]

    def position(block: str) -> str:
        if f"{block}_bn" not in names:
            return "none"
        return "before" if names.index(f"{block}_bn") < names.index(f"{block}_relu") else "after"

    assert {position(f"block{i}") for i in (1, 2, 3)} == {params["bn_conv"]}
    assert position("dense1") == params["bn_dense"]
    assert ("logits_bn" in names) == (params["bn_dense"] != "none")


# -- conditional hyperparameters -----------------------------------------------------------------------------------
def test_conditionals_are_inactive_when_parent_is_off():
    assert "patience" not in _defaults(search_spaces.epochs, {"early_stopping": False})
    assert _defaults(search_spaces.epochs, {"early_stopping": True})["patience"] == 0
    improved = search_spaces.improved
    params = _defaults(improved, {"body": "basenet"})
    assert "conv3_filters" not in params and "conv1_3x3_filters" not in params and "conv2_3x3_filters" not in params
    params = _defaults(improved, {"body": "stack_5333335"})
    assert "conv1_3x3_filters" in params and "conv2_3x3_filters" not in params and "conv3_filters" not in params
    assert "bn_output" not in _defaults(search_spaces.batchnorm, {"bn_dense": "none"})
    # describe still sees every choice point, with its condition
    described = H.describe(improved)
    assert described["conv3_filters"].conditions[0].name == "body"
    assert described["patience"].conditions == (H.Condition("early_stopping", (True,)),)


def test_conditionals_under_keras_tuner():
    kt = pytest.importorskip("keras_tuner")
    hp = kt.HyperParameters()
    search_spaces.improved.declare(hp)
    assert not hp.is_active("patience") and not hp.is_active("conv1_3x3_filters")
    assert hp.is_active("conv3_filters")


# -- input stem ----------------------------------------------------------------------------------------------------
def _augmented_model(zoom=0.0, rotation=0, flip=False):
    space = search_spaces.augmentation
    params = _defaults(space, {"zoom_range": zoom, "rotation_range": rotation, "horizontal_flip": flip})
    return space.build(params, SPEC)


def test_zoom_matches_image_data_generator_range():
    layer = _augmented_model(zoom=0.2).get_layer("aug_zoom")
    t = layer.get_random_transformation(np.zeros((512, 32, 32, 3), "float32"), training=True)
    hz, wz = _np(t["height_zoom"]).ravel(), _np(t["width_zoom"]).ravel()
    for z in (hz, wz):
        assert z.min() >= 0.8 - 1e-6 and z.max() <= 1.2 + 1e-6
        assert z.min() < 0.85 and z.max() > 1.15  # the whole range is used
    assert not np.allclose(hz, wz)  # drawn independently for height and width
    assert layer.fill_mode == "nearest"


def test_zoom_above_one_is_clipped_to_keras_range():
    assert _cnn.zoom_bounds(1.2) == (-0.99, 1.0)
    assert _cnn.zoom_bounds(0.2) == (-0.2, 0.2)
    layer = _augmented_model(zoom=1.2).get_layer("aug_zoom")
    assert (layer.height_lower, layer.height_upper) == (-0.99, 1.0)


def test_rotation_matches_image_data_generator_range():
    layer = _augmented_model(rotation=20).get_layer("aug_rotation")
    angles = _np(layer.get_random_transformation(np.zeros((512, 32, 32, 3), "float32"))["angle"])
    assert angles.min() >= -20 - 1e-4 and angles.max() <= 20 + 1e-4
    assert angles.min() < -15 and angles.max() > 15
    assert layer.fill_mode == "nearest"


def test_zero_amounts_add_no_layers():
    names = [layer.name for layer in _augmented_model().layers]
    assert not any(name.startswith("aug_") for name in names)
    names = [layer.name for layer in _augmented_model(zoom=0.2, rotation=20, flip=True).layers]
    assert [n for n in names if n.startswith("aug_")] == ["aug_rotation", "aug_zoom", "aug_flip"]


def test_augmentation_is_identity_at_inference():
    model = _augmented_model(zoom=0.2, rotation=20, flip=True)
    x = np.random.default_rng(0).integers(0, 256, size=(8, 32, 32, 3), dtype=np.uint8)
    np.testing.assert_array_equal(_np(model(x, training=False)), _np(model(x, training=False)))
    stem = keras.Model(model.input, model.get_layer("aug_flip").output)
    normalized = keras.Model(model.input, model.get_layer("normalize").output)
    np.testing.assert_allclose(_np(stem(x, training=False)), _np(normalized(x, training=False)))
    assert not np.allclose(_np(stem(x, training=True)), _np(normalized(x, training=False)))


def test_featurewise_normalization_uses_the_spec_statistics():
    spec = ModelSpec(input_shape=(32, 32, 3), num_classes=25, mean=(100.0, 110.0, 120.0), variance=(400.0, 900.0,
                                                                                                      1600.0))
    model = search_spaces.normalization.build(_defaults(search_spaces.normalization), spec)
    x = np.full((1, 32, 32, 3), 140, dtype=np.uint8)
    out = _np(keras.Model(model.input, model.get_layer("normalize").output)(x))
    np.testing.assert_allclose(out[0, 0, 0], [2.0, 1.0, 0.5], rtol=1e-5)
    assert model.count_params() == 24_197
    plain = search_spaces.normalization.build(_defaults(search_spaces.normalization, {"normalize": False}), spec)
    assert _np(keras.Model(plain.input, plain.get_layer("rescale").output)(x))[0, 0, 0, 0] == pytest.approx(
        140 / 255)


# -- training and export -------------------------------------------------------------------------------------------
def test_one_tiny_fit_with_every_augmentation():
    space = search_spaces.improved
    params = _defaults(space, {"rotation_range": 20, "conv2_filters": 8, "conv3_filters": 16})
    model = space.build(params, SPEC)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(16, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 25, size=(16,))
    history = model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    assert np.isfinite(history.history["loss"][0])


# An exported, never-trained model has no optimizer slots yet; Keras says so on load, harmlessly.
@pytest.mark.filterwarnings("ignore:Skipping variable loading for optimizer")
def test_saved_model_round_trip(tmp_path):
    model = search_spaces.basenet.build(_defaults(search_spaces.basenet), SPEC)
    path = tmp_path / "m.keras"
    model.save(path)
    keras.backend.clear_session()
    loaded = keras.saving.load_model(path)
    x = np.random.default_rng(1).integers(0, 256, size=(4, 32, 32, 3), dtype=np.uint8)
    probs = _np(loaded.predict(x, verbose=0))
    assert probs.shape == (4, 25)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(probs, _np(model.predict(x, verbose=0)), rtol=1e-5, atol=1e-6)


@pytest.mark.filterwarnings("ignore:Skipping variable loading for optimizer")
def test_saved_final_model_round_trip(tmp_path):
    # normalization constants and augmentation layers must serialize with built-in layers only
    spec = ModelSpec(input_shape=(32, 32, 3), num_classes=25, mean=(120.0, 115.0, 100.0), variance=(4000.0,) * 3)
    model = search_spaces.improved.build(_defaults(search_spaces.improved), spec)
    path = tmp_path / "final.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.count_params() == 689_715
    x = np.random.default_rng(2).integers(0, 256, size=(2, 32, 32, 3), dtype=np.uint8)
    np.testing.assert_allclose(_np(loaded(x, training=False)), _np(model(x, training=False)),
                               rtol=1e-5, atol=1e-6)
