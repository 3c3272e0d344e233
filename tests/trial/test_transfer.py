"""The ``transfer`` space: study 3's heads, ImageNet preprocessing as layers, backbone weights, the feature cache.

Every ResNet50 here has random weights (``weights=none``) or weights saved in ``tmp_path``: nothing is downloaded.
"""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

import tuner
from conftest import non_trainable
from search_spaces import _resnet, transfer
from tuner import hp as H
from tuner.errors import CnntuneError, SpaceError
from tuner.experiment import parse_words
from tuner.spec import ModelSpec

keras = pytest.importorskip("keras")

NONE = {"weights": "none"}


def _params(values=None) -> dict:
    return H.resolve(transfer, H.Defaults(values))


def _baseline(name: str) -> dict:
    return _params(next(b for b in transfer.BASELINES if b.name == name).params)



def _folder(root, colour=0):
    """A tiny class-per-folder tree: 2 classes x 6 photos of 32x32."""
    from PIL import Image

    for c, cls in enumerate(("a", "b")):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(6):
            Image.new("RGB", (32, 32), (40 * i, 120 * c, colour)).save(root / cls / f"{i}.png")
    return root


# -- the study's heads -----------------------------------------------------------------------------------------------
def test_baseline_heads_have_the_study_parameter_counts():
    spec = ModelSpec(input_shape=(224, 224, 3), num_classes=200, options=NONE)
    frozen = transfer.head(_baseline("frozen"), spec)
    # Dense 2048 + BN + ReLU, Dense 200 + BN + softmax on 2048 features (STUDY 3.1).
    assert frozen.count_params() == 2048 * 2048 + 2048 + 4 * 2048 + 2048 * 200 + 200 + 4 * 200 == 4_615_144
    assert non_trainable(frozen) == 4_496
    assert [type(layer).__name__ for layer in frozen.layers[1:]] == [
        "Dense", "BatchNormalization", "Activation", "Dense", "BatchNormalization", "Activation"]
    # Dense 2048 + ReLU + BN, Dense 200 softmax (STUDY 3.2).
    fine = transfer.head(_baseline("fine_tuned"), spec)
    assert fine.count_params() == 2048 * 2048 + 2048 + 4 * 2048 + 2048 * 200 + 200
    assert [type(layer).__name__ for layer in fine.layers[1:]] == [
        "Dense", "Activation", "BatchNormalization", "Dense", "Activation"]
    assert _baseline("frozen") == _params()  # the defaults are study 3.1
    assert _baseline("fine_tuned")["epochs"] == 14 and _baseline("frozen")["epochs"] == 20


def test_choice_points_and_conditions():
    assert "trainable_stages" not in _params() and "backbone_lr_scale" not in _params()
    top = _params({"mode": "fine_tune_top", "trainable_stages": 2})
    assert top["trainable_stages"] == 2 and "frozen_augment" not in top and "backbone_lr_scale" in top
    assert "head_bn_output" not in _params({"head_bn": "none"})
    # the image size is a data key, never a choice point
    assert "image_size" not in H.describe(transfer)


def test_preprocessing_is_resnet50_preprocess_input():
    inputs = keras.Input((8, 8, 3), dtype="uint8")
    model = keras.Model(inputs, _resnet.preprocess(keras.layers.Rescaling(1.0)(inputs)))
    x = np.random.default_rng(0).integers(0, 256, size=(3, 8, 8, 3), dtype=np.uint8)
    expected = keras.applications.resnet50.preprocess_input(x.astype("float32"))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(x)), expected, rtol=0, atol=1e-4)


def test_fine_tune_top_trains_the_top_stages_with_a_lower_rate(tmp_path):
    spec = ModelSpec(input_shape=(32, 32, 3), num_classes=3, options=NONE)
    params = _params({"mode": "fine_tune_top", "trainable_stages": 1, "backbone_lr_scale": 0.01})
    model = transfer.build(params, spec)
    net = model.get_layer("resnet50")
    trained = {layer.name.split("_")[0] for layer in net.layers if layer.trainable and layer.weights}
    assert trained == {"conv5"}
    assert type(model.optimizer).cnntune_scale == 0.01
    conv4, conv5 = net.get_layer("conv4_block1_1_conv"), net.get_layer("conv5_block1_1_conv")
    before4, before5 = np.array(conv4.kernel), np.array(conv5.kernel)
    x = np.random.default_rng(0).integers(0, 256, size=(4, 32, 32, 3), dtype=np.uint8)
    model.fit(x, np.array([0, 1, 2, 0]), epochs=1, batch_size=4, verbose=0)
    np.testing.assert_array_equal(np.array(conv4.kernel), before4)
    assert not np.array_equal(np.array(conv5.kernel), before5)
    saved = transfer.saveable(model)
    assert type(saved.optimizer) is keras.optimizers.Adam  # a built-in class goes into the file


def test_scaled_optimizer_scales_only_the_backbone():
    backbone, top = keras.layers.Dense(2, name="bb"), keras.layers.Dense(2, name="top")
    inputs = keras.Input((2,))
    model = keras.Model(inputs, top(backbone(inputs)))
    opt = _resnet.scaled_optimizer(keras.optimizers.SGD(learning_rate=0.1), 0.0, backbone.trainable_variables)
    model.compile(optimizer=opt, loss="mse")
    before = [np.array(w) for w in model.get_weights()]
    model.fit(np.ones((4, 2)), np.zeros((4, 2)), epochs=1, verbose=0)
    after = model.get_weights()
    np.testing.assert_array_equal(after[0], before[0])  # backbone kernel: learning rate x 0
    assert not np.allclose(after[2], before[2])  # head kernel moved


# -- weights= ------------------------------------------------------------------------------------------------------
def test_weights_is_a_run_option_of_backbone_spaces_only(tmp_path):
    exp = parse_words(["space=transfer"])
    assert exp.options == {"weights": "imagenet"} and exp.data.name == "cub200"
    assert parse_words(["space=transfer", "weights=NONE"]).options == {"weights": "none"}
    with pytest.raises(SpaceError, match="takes no weights="):
        parse_words(["space=basenet", "weights=none"])
    with pytest.raises(SpaceError, match="does not exist"):
        parse_words(["space=transfer", f"weights={tmp_path / 'missing.h5'}"])
    with pytest.raises(SpaceError, match="imagenet, none or a path"):
        parse_words(["space=transfer", "weights=resnet.bin"])


def test_cub200_images_default_to_224(tmp_path):
    from PIL import Image

    from tuner.data import load_dataset

    root = tmp_path / "cub"
    rows = ["path,label,class_name,split"]
    for label, cls in enumerate(("a", "b")):
        (root / cls).mkdir(parents=True)
        for i in range(4):
            Image.new("RGB", (50, 40), (60 * i, 100 * label, 0)).save(root / cls / f"{i}.jpg")
            rows.append(f"{cls}/{i}.jpg,{label},{cls},{'train' if i < 3 else 'test'}")
    (root / "split.csv").write_text("\n".join(rows) + "\n")
    assert load_dataset("cub200", data_dir=root).input_shape == (224, 224, 3)


def test_weights_path_loads_a_local_file(tmp_path):
    source = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(32, 32, 3))
    path = tmp_path / "resnet50_notop.weights.h5"
    source.save_weights(path)
    weights = _resnet.check_weights(str(path))
    net = _resnet.backbone_net((32, 32, 3), weights)
    for a, b in zip(source.get_weights(), net.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert _resnet.weights_identity(weights).startswith("sha256:")
    # the legacy .h5 format of Keras' ImageNet download loads the same way
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    legacy = tmp_path / "resnet50_notop.h5"
    with h5py.File(legacy, "w") as fh:
        legacy_h5_format.save_weights_to_hdf5_group(fh, source)
    net = _resnet.backbone_net((32, 32, 3), _resnet.check_weights(str(legacy)))
    for a, b in zip(source.get_weights(), net.get_weights()):
        np.testing.assert_array_equal(a, b)
    model = transfer.build(_params(), ModelSpec(input_shape=(32, 32, 3), num_classes=3, options={"weights": weights}))
    np.testing.assert_array_equal(model.get_layer("resnet50").get_weights()[0], source.get_weights()[0])
    (tmp_path / "wrong.h5").write_bytes(b"not hdf5")
    with pytest.raises(CnntuneError, match="cannot load"):
        _resnet.backbone_net((32, 32, 3), str(tmp_path / "wrong.h5"))


def test_imagenet_without_network_gives_one_line(store, tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / ".keras"))

    def offline(*args, **kwargs):
        raise Exception(f"URL fetch failure on {_resnet.IMAGENET_URL}: None -- [Errno -3] Temporary failure in "
                        "name resolution")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    from tuner.cli import app

    result = CliRunner().invoke(app, ["search", "space=transfer", "data=synthetic", "--storage", store],
                                catch_exceptions=False)
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for needle in (_resnet.IMAGENET_URL, "~/.keras/models/", "weights=PATH"):
        assert needle in lines[0]
    from tuner.store import open_storage, study_names

    assert study_names(open_storage(store)) == []  # failed before any study or trial was recorded


# -- the feature cache ---------------------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:.*tf.function retracing")
def test_fine_tuned_trial_saves_a_plain_keras_model(tmp_path):
    from tuner.data import load_dataset
    from tuner.trial import run_trial

    data = load_dataset("folder", data_dir=_folder(tmp_path / "imgs"), image_size=32)
    params = {**_params({"mode": "fine_tune_top", "trainable_stages": 1, "backbone_lr_scale": 0.1,
                         "horizontal_flip": True}), "epochs": 1, "head_units": 256}
    out = run_trial(transfer, params, data, seed=0, model_path=tmp_path / "ft.keras", spec_options=NONE,
                    feature_cache=tmp_path / "cache")
    assert out.extra["feature_cache"] == "off" and not (tmp_path / "cache").exists()
    assert out.extra["macs"] > 0 and out.extra["activations"] > 0  # the whole model trains: its costs
    keras.backend.clear_session()
    model = keras.saving.load_model(tmp_path / "ft.keras")  # built-in classes only, optimizer included
    assert type(model.optimizer) is keras.optimizers.Adam
    assert "aug_flip" in [layer.name for layer in model.layers]
    assert np.asarray(model.predict(data.x_test, verbose=0)).shape == (len(data.x_test), 2)


def test_cache_is_hit_and_invalidated_when_the_data_changes(tmp_path):
    from tuner.data import clear_cache, load_dataset
    from tuner.trial import run_trial

    root = _folder(tmp_path / "imgs")
    cache = tmp_path / "cache"
    params = {**_params(), "epochs": 1, "head_units": 256}

    def trial(seed):
        data = load_dataset("folder", data_dir=root, image_size=32)
        out = run_trial(transfer, params, data, seed=seed, model_path=None, spec_options=NONE, feature_cache=cache)
        return out.extra["feature_cache"], data.fingerprint

    first, key1 = trial(0)
    second, _ = trial(1)
    assert (first, second) == ("built", "hit")
    assert len(list(cache.glob("*.npy"))) == 3  # train, val, test
    from PIL import Image

    Image.new("RGB", (32, 32), (255, 255, 255)).save(root / "a" / "0.png")  # one image changes
    clear_cache()
    third, key2 = trial(2)
    assert third == "built" and key2 != key1
    assert len(list(cache.glob("*.npy"))) == 6
    clear_cache()


def test_frozen_search_on_the_birds_hits_the_cache_and_exports_one_model(store, birds_dir, tmp_path):
    from tuner.trial import _features
    from tuner.data import load_dataset

    words = ["space=transfer", "data=cub200", f"data_dir={birds_dir}", "image_size=64", "classes=5",
             "weights=none", "mode=frozen", "frozen_augment=false", "epochs=1", "head_units=256"]
    tuner.search(words, tuner.SearchOptions(trials=2, storage=store, study="birds", baselines=False))
    import optuna

    trials = optuna.load_study(study_name="birds", storage=store).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    assert [t.user_attrs["feature_cache"] for t in trials] == ["built", "hit"]
    assert all(t.user_attrs["feature_seconds"] >= 0 for t in trials)
    meta = tuner.trials(study="birds", storage=store).meta
    assert meta["options"] == {"weights": "none"} and meta["skip_bad_images"] is False
    with pytest.raises(CnntuneError, match="was run with"):  # other weights are another study
        tuner.search([w for w in words if w != "weights=none"] + ["weights=imagenet"],
                     tuner.SearchOptions(trials=3, storage=store, study="birds"))

    path = tuner.export(tmp_path / "birds.keras", study="birds", storage=store)
    assert tuner.read_export_metadata(path)["options"] == {"weights": "none"}
    keras.backend.clear_session()
    model = keras.saving.load_model(path)  # plain Keras, safe mode: built-in layers only
    assert model.input.dtype == "uint8" and tuple(model.input.shape[1:]) == (64, 64, 3)
    assert [layer.name for layer in model.layers] == ["image", "feature_extractor", "head"]
    data = load_dataset("cub200", data_dir=str(birds_dir), image_size=64, classes=5)
    probs = np.asarray(model.predict(data.x_test, verbose=0))
    assert probs.shape == (len(data.x_test), 5)
    # one model == backbone features -> head, on the cached features and on freshly computed ones
    cache = store_dir(store) / "cnntune_artifacts" / "feature_cache"
    cached = np.load(_features.cache_path(cache, data, "test", "resnet50/avg/none-seed0"))
    head = model.get_layer("head")
    np.testing.assert_allclose(np.asarray(head.predict(cached, verbose=0)), probs, rtol=1e-4, atol=1e-5)
    fresh = model.get_layer("feature_extractor").predict(data.x_test, verbose=0)
    np.testing.assert_allclose(np.asarray(head.predict(fresh, verbose=0)), probs, rtol=1e-4, atol=1e-5)


def store_dir(store: str):
    from pathlib import Path

    return Path(store[len("sqlite:///"):]).parent


@pytest.mark.filterwarnings("ignore:skipped 1 unreadable image")
def test_skip_bad_images_flag_is_used_and_remembered(store, tmp_path):
    from tuner.cli import app

    root = _folder(tmp_path / "imgs")
    (root / "b" / "broken.png").write_bytes(b"not a png at all")
    result = CliRunner().invoke(app, ["search", "space=basenet", "data=folder", f"data_dir={root}", "image_size=32",
                                      "epochs=1", "--trials", "1", "--no-baselines", "--quiet", "--skip-bad-images",
                                      "--storage", store], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert tuner.trials(storage=store).meta["skip_bad_images"] is True
    # resuming without the flag keeps it (otherwise the broken file would now stop the study)
    tuner.search([], tuner.SearchOptions(trials=2, storage=store, study="basenet", baselines=False))
    assert len(tuner.trials(storage=store).records) == 2
