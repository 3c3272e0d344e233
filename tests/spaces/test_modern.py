"""The ``modern`` space: the study's final model as its defaults, the ResNet-20 recipe, the modern layers and the
learning-rate schedules."""

from __future__ import annotations

import math

import numpy as np
import pytest

import search_spaces
from search_spaces import _cnn
from tuner import hp as H
from tuner.spec import ModelSpec, soft_targets

keras = pytest.importorskip("keras")

MODERN = search_spaces.modern
SPEC = ModelSpec(input_shape=(32, 32, 3), num_classes=50, train_size=1000)


@pytest.fixture(autouse=True)
def _fresh_session():
    keras.backend.clear_session(free_memory=False)
    yield
    keras.backend.clear_session()


def _params(values=None) -> dict:
    return H.resolve(MODERN, H.Defaults(values))


def _layers(model) -> list[tuple[str, str, tuple]]:
    return [(layer.name, layer.__class__.__name__, tuple(layer.output.shape[1:])) for layer in model.layers]


def test_defaults_are_the_study_final_model_layer_for_layer():
    params = _params()
    assert {k: params[k] for k in search_spaces.improved.FINAL} == search_spaces.improved.FINAL
    assert not soft_targets(params)
    modern, improved = MODERN.build(params, SPEC), search_spaces.improved.build(_params_of_improved(), SPEC)
    assert _layers(modern) == _layers(improved)
    assert modern.count_params() == improved.count_params()
    assert modern.loss == "sparse_categorical_crossentropy" and type(modern.optimizer) is keras.optimizers.Adam
    assert float(modern.optimizer.learning_rate) == pytest.approx(1e-3)


def _params_of_improved() -> dict:
    return H.resolve(search_spaces.improved, H.Defaults())


def test_baselines_of_the_study_are_those_of_improved():
    improved = {b.name: H.resolve(search_spaces.improved, H.Defaults(b.params)) for b in search_spaces.improved.BASELINES}
    for name in ("basenet", "final"):
        (b,) = [b for b in MODERN.BASELINES if b.name == name]
        params = _params(b.params)
        assert {k: params[k] for k in improved[name]} == improved[name]
        assert set(params) - set(improved[name]) == {"translate", "augment_policy", "head", "dropout", "lr_schedule",
                                                     "label_smoothing", "mix"}
        assert (params["augment_policy"], params["head"], params["lr_schedule"], params["mix"]) == (
            "none", "flatten_dense", "constant", "none")


def test_resnet20_is_the_papers_network():
    (recipe,) = [b for b in MODERN.BASELINES if b.name == "resnet20"]
    params = _params(recipe.params)
    assert set(recipe.params) <= set(params)  # no inactive choice point pinned
    model = MODERN.build(params, SPEC)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    shortcuts = [c for c in convs if "shortcut" in c.name]
    assert len(convs) - len(shortcuts) == 19 and len(shortcuts) == 2  # + the classifier = 20 weighted layers
    assert [c.filters for c in convs if "shortcut" not in c.name] == [16] * 7 + [32] * 6 + [64] * 6
    # 3x3 convolutions and BatchNormalization of 16/32/64 filters, two 1x1 projections, a 64 -> 50 classifier.
    bn = lambda c: 4 * c  # noqa: E731 gamma, beta, moving mean and variance
    expected = (27 * 16 + bn(16) + 6 * (144 * 16 + bn(16))
                + 144 * 32 + bn(32) + 5 * (288 * 32 + bn(32)) + 16 * 32 + bn(32)
                + 288 * 64 + bn(64) + 5 * (576 * 64 + bn(64)) + 32 * 64 + bn(64) + 64 * 50 + 50)
    assert model.count_params() == expected == 276_642
    assert model.get_layer("gap").output.shape[1:] == (64,)
    assert model.get_layer("stage3_block1_1_conv").output.shape[1:3] == (8, 8)
    assert model.get_layer("aug_translate") is not None and model.get_layer("aug_flip") is not None
    assert type(model.optimizer) is keras.optimizers.SGD and model.optimizer.weight_decay == pytest.approx(1e-4)
    assert isinstance(model.optimizer._learning_rate, keras.optimizers.schedules.CosineDecay)


def test_modern_layers_are_where_the_config_puts_them():
    params = _params({"body": "resnet", "res_width": 8, "res_blocks": 2, "stochastic_depth": 0.2,
                      "augment_policy": "randaugment", "randaugment_magnitude": 0.3, "head": "gap", "dropout": 0.25,
                      "optimizer": "adamw", "weight_decay": 0.05, "label_smoothing": 0.1})
    model = MODERN.build(params, SPEC)
    names = [layer.name for layer in model.layers]
    # The policy works on 0-255 pixels, before the input scaling.
    assert names.index("aug_randaugment") < names.index("normalize") < names.index("aug_flip")
    policy = model.get_layer("aug_randaugment")
    assert policy.num_ops == 2 and tuple(policy.factor) == pytest.approx((0.0, 0.3))
    drops = [model.get_layer(f"stage{s}_block{b}_drop") for s in (1, 2, 3) for b in (1, 2)]
    assert [d.rate for d in drops] == pytest.approx([0.2 * i / 6 for i in range(1, 7)])
    assert all(tuple(d.noise_shape) == (None, 1, 1, 1) for d in drops)  # one draw per image: the whole branch
    assert model.get_layer("dropout").rate == 0.25
    assert type(model.optimizer) is keras.optimizers.AdamW and model.optimizer.weight_decay == pytest.approx(0.05)
    assert model.loss.get_config()["label_smoothing"] == pytest.approx(0.1)
    trivial = MODERN.build(_params({"augment_policy": "trivialaugment"}), SPEC).get_layer("aug_trivialaugment")
    assert trivial.num_ops == 1 and tuple(trivial.factor) == (0.0, 1.0)


def test_stochastic_depth_drops_whole_branches_in_training_only():
    params = _params({"body": "resnet", "res_width": 8, "res_blocks": 1, "stochastic_depth": 0.3, "head": "gap",
                      "zoom_range": 0.0, "horizontal_flip": False})
    model = MODERN.build(params, SPEC)
    images = np.random.default_rng(0).integers(0, 256, size=(64, 32, 32, 3), dtype=np.uint8)
    branch = keras.Model(model.input, model.get_layer("stage3_block1_drop").output)
    kept = keras.ops.convert_to_numpy(branch(images, training=True)).reshape(64, -1)
    zero = np.all(kept == 0, axis=1)
    assert 0 < zero.sum() < 64  # rate 0.3: some images lose the branch, the rest keep all of it
    inference = keras.ops.convert_to_numpy(branch(images, training=False)).reshape(64, -1)
    assert not np.all(inference == 0, axis=1).any()


def test_every_choice_point_has_a_valid_default_and_conditions_that_hold():
    described = H.describe(MODERN)
    for param in described.values():
        assert param.contains(param.default), param
    conditions = {name: {c.name: set(c.values) for c in p.conditions} for name, p in described.items()}
    assert conditions["res_width"] == {"body": {"resnet"}}
    assert "resnet" not in conditions["bn_conv"]["body"] and len(conditions["bn_conv"]["body"]) == 8
    assert conditions["bn_output"] == {"head": {"flatten_dense"}, "bn_dense": {"before", "after"}}
    assert conditions["weight_decay"] == {"optimizer": {"sgd", "adamw"}}
    assert conditions["mix_alpha"] == {"mix": {"mixup", "cutmix"}}
    assert (described["epochs"].max_value, H.describe(search_spaces.improved)["epochs"].max_value) == (100, 50)
    gap = _params({"head": "gap", "body": "resnet"})
    assert not {"dense_units", "bn_dense", "bn_output", "bn_conv", "conv1_filters"} & set(gap)


@pytest.mark.parametrize("bad, needle", [
    ({"augment_policy": "autoaugment"}, "augment_policy"), ({"head": "attention"}, "head"),
    ({"lr_schedule": "step"}, "lr_schedule"), ({"dropout": 1.5}, "dropout"), ({"translate": -0.1}, "translate"),
    ({"body": "resnet", "res_width": 0}, "res_width"), ({"label_smoothing": 1.0}, "label_smoothing"),
    ({"frobnicate": 1}, "Unknown hyperparameters"),
])
def test_bad_values_say_which(bad, needle):
    with pytest.raises(_cnn.SpaceValueError, match=needle):
        MODERN.build({**_params({"body": bad.get("body", "third5x5_pool_end")}), **bad}, SPEC)


def _lr(schedule, step: int) -> float:
    return float(schedule(step)) if callable(schedule) else float(schedule)


def test_learning_rate_schedules_follow_their_definitions():
    base = {"learning_rate": 0.1, "epochs": 10, "batch_size": 100}  # 1000 images: 10 steps an epoch, 100 in all
    assert _cnn.learning_rate({**base, "lr_schedule": "constant"}, SPEC) == 0.1
    cosine = _cnn.learning_rate({**base, "lr_schedule": "cosine"}, SPEC)
    assert _lr(cosine, 0) == pytest.approx(0.1) and _lr(cosine, 50) == pytest.approx(0.05, rel=1e-4)
    assert _lr(cosine, 100) == pytest.approx(0.0, abs=1e-7)
    warm = _cnn.learning_rate({**base, "lr_schedule": "cosine", "warmup_epochs": 2}, SPEC)
    assert _lr(warm, 0) == pytest.approx(0.0) and _lr(warm, 10) == pytest.approx(0.05)
    assert _lr(warm, 20) == pytest.approx(0.1) and _lr(warm, 60) == pytest.approx(0.05, rel=1e-4)
    cycle = _cnn.learning_rate({**base, "lr_schedule": "one_cycle"}, SPEC)
    assert _lr(cycle, 0) == pytest.approx(0.1 / 25) and _lr(cycle, 30) == pytest.approx(0.1)
    assert _lr(cycle, 100) == pytest.approx(0.1 / 25 / 1e4, rel=1e-3)
    assert max(_lr(cycle, s) for s in range(101)) == pytest.approx(0.1)
    assert all(math.isfinite(_lr(cycle, s)) for s in range(101))
