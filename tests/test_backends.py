"""Every Keras 3 backend as a supported path: TensorFlow, JAX and PyTorch.

Three groups:

* marker ``backends``: a smoke subset run on whatever ``KERAS_BACKEND`` says (``make test`` runs it on TensorFlow,
  ``make test-backends`` once with ``KERAS_BACKEND=jax`` and once with ``KERAS_BACKEND=torch``): every space builds
  and runs on raw uint8 images, a 2-trial Optuna search of ``improved`` with ``best --export`` and a reload that
  predicts raw images, a Keras Tuner search, the transfer space on cached ResNet50 features at 64 px;
* marker ``backend_matrix``: a BaseNet trained and exported on each backend, each export loaded and run on each
  backend, in subprocesses; the predictions agree across backends (``MATRIX_ATOL``). It needs the three backends
  installed: it skips and says so where one is missing, and fails instead under ``CNNTUNE_REQUIRE_BACKENDS=1``
  (``make test-backends``, so CI never skips it);
* unmarked: the rules that need no backend (a study refuses to mix backends unless told; the backend in ``best``
  and ``trials --wide``; finding the backend without importing Keras).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import search_spaces
import tuner
from conftest import ROOT, SYN, FakeRunner, one_line_error, run_cli
from tuner import hp as H
from tuner.spec import ModelSpec
from tuner.store import current_backend
from tuner.trial import TrialOutcome

BACKENDS = ("tensorflow", "jax", "torch")  # Keras 3's backends cnntune supports; the package of each is its name
# Largest absolute difference allowed between the class probabilities of one export run on two backends. Measured:
# at most 1.8e-7 on BaseNet (float32 kernels of oneDNN, XLA and PyTorch differ in summation order only); 1e-5 leaves
# a margin of 50x, while a wrong weight layout or preprocessing differs by 1e-2 and more.
MATRIX_ATOL = 1e-5


def _keras():
    return pytest.importorskip("keras")


def _np(x) -> np.ndarray:
    return _keras().ops.convert_to_numpy(x)


def _synthetic(image_size: int = 32):
    from tuner.data import load_dataset

    return load_dataset("synthetic", image_size=image_size)


# -- the smoke subset, on the backend of this process -----------------------------------------------------------------
@pytest.mark.backends
def test_the_backend_is_the_one_asked_for(monkeypatch):
    backend = _keras().backend.backend()
    if os.environ.get("KERAS_BACKEND"):
        assert backend == os.environ["KERAS_BACKEND"]
    monkeypatch.setitem(sys.modules, "keras", None)  # cnntune's answer without Keras: the same as Keras' own
    assert current_backend() == backend


@pytest.mark.backends
@pytest.mark.parametrize("name", list(search_spaces.SPACES))
def test_every_space_builds_and_runs_on_raw_images(name):
    keras = _keras()
    space = search_spaces.SPACES[name]
    spec = ModelSpec(input_shape=(32, 32, 3), num_classes=5, options={"weights": "none"})
    model = space.build(H.resolve(space, H.Defaults()), spec)
    assert model.input.dtype == "uint8" and tuple(model.output.shape) == (None, 5)
    images = np.random.default_rng(0).integers(0, 256, size=(2, 32, 32, 3), dtype=np.uint8)
    probs = _np(model(images, training=False))
    assert probs.shape == (2, 5)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    # Training mode too: the random augmentation layers, dropout and batch statistics of this backend (eagerly).
    assert _np(model(images, training=True)).shape == (2, 5)
    keras.backend.clear_session(free_memory=False)


@pytest.mark.backends
def test_every_augmentation_layer_runs_on_this_backend():
    space = search_spaces.augmentation
    params = H.resolve(space, H.Defaults({"zoom_range": 0.2, "rotation_range": 20, "horizontal_flip": True}))
    model = space.build(params, ModelSpec(input_shape=(32, 32, 3), num_classes=5))
    stem = _keras().Model(model.input, model.get_layer("aug_flip").output)
    images = np.random.default_rng(1).integers(0, 256, size=(4, 32, 32, 3), dtype=np.uint8)
    moved, kept = _np(stem(images, training=True)), _np(stem(images, training=False))
    assert moved.shape == kept.shape == (4, 32, 32, 3) and not np.allclose(moved, kept)


@pytest.mark.backends
def test_optuna_search_exports_a_model_that_predicts_raw_images(store, tmp_path, monkeypatch):
    keras = _keras()
    backend = keras.backend.backend()
    # Zoom and rotation pinned off: under JAX, XLA takes ~30 s per trial to compile their training step on 2 cores
    # (the layers run on every backend in the test above); the other choice points are searched.
    words = ["space=improved", *SYN, "zoom_range=0", "rotation_range=0"]
    tuner.search(words, tuner.SearchOptions(trials=2, storage=store, study="opt", baselines=False))
    view = tuner.trials(study="opt", storage=store)
    assert [r.state for r in view.records] == ["complete", "complete"]
    assert {r.backend for r in view.records} == {backend}
    monkeypatch.setenv("COLUMNS", "200")
    result = run_cli("best", "--study", "opt", "--storage", store, "--export", str(tmp_path / "best.keras"))
    assert result.exit_code == 0, result.output
    assert f"trained on {backend}" in result.output
    assert tuner.read_export_metadata(tmp_path / "best.keras")["backend"] == backend
    keras.backend.clear_session()
    model = keras.saving.load_model(tmp_path / "best.keras")
    data = _synthetic()
    probs = np.asarray(model.predict(data.x_test, verbose=0))  # uint8, as the images are stored
    assert data.x_test.dtype == np.uint8 and probs.shape == (len(data.x_test), 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    # The export is the trial's best-epoch model: the test accuracy it recorded, image for image.
    best = tuner.best(study="opt", storage=store).best
    assert np.mean(probs.argmax(axis=1) == data.y_test) == pytest.approx(best.test_accuracy, abs=1e-6)


# The modern space with every training-time choice on: a residual body with stochastic depth, a GAP head with dropout,
# a TrivialAugment-style policy and a translation, CutMix with label smoothing, AdamW on a one-cycle schedule.
MODERN_TRIAL = ["space=modern", *SYN, "body=resnet", "res_width=8", "res_blocks=1", "stochastic_depth=0.1",
                "head=gap", "dropout=0.1", "augment_policy=trivialaugment", "translate=0.1", "zoom_range=0",
                "mix=cutmix", "mix_alpha=1.0", "label_smoothing=0.1", "optimizer=adamw", "lr_schedule=one_cycle"]


@pytest.mark.backends
def test_a_modern_trial_exports_a_model_that_predicts_raw_images(store, tmp_path):
    keras = _keras()
    tuner.search(MODERN_TRIAL, tuner.SearchOptions(trials=1, storage=store, study="modern", baselines=False))
    (record,) = tuner.trials(study="modern", storage=store).records
    assert record.state == "complete" and record.params["mix"] == "cutmix"
    result = run_cli("best", "--study", "modern", "--storage", store, "--export", str(tmp_path / "modern.keras"))
    assert result.exit_code == 0, result.output
    keras.backend.clear_session()
    model = keras.saving.load_model(tmp_path / "modern.keras")
    assert model.input.dtype == "uint8"
    names = {layer.name for layer in model.layers}
    assert {"aug_trivialaugment", "aug_translate", "stage1_block1_drop", "gap", "dropout"} <= names
    data = _synthetic()
    probs = np.asarray(model.predict(data.x_test, verbose=0))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert np.mean(probs.argmax(axis=1) == data.y_test) == pytest.approx(record.test_accuracy, abs=1e-6)


@pytest.mark.backends
def test_keras_tuner_engine_searches_on_this_backend(store):
    backend = _keras().backend.backend()
    tuner.search(["space=basenet", *SYN],
                 tuner.SearchOptions(trials=2, storage=store, study="kt", engine="keras-tuner", baselines=False, seed=1))
    records = tuner.trials(study="kt", storage=store).records
    assert [r.state for r in records] == ["complete", "complete"]
    assert all(r.backend == backend and r.tags["engine"] == "keras-tuner" for r in records)


@pytest.mark.backends
def test_transfer_trains_a_head_on_cached_features_and_exports_one_model(store, tmp_path, monkeypatch):
    keras = _keras()
    monkeypatch.setenv("CNNTUNE_FEATURE_CACHE", str(tmp_path / "features"))
    words = ["space=transfer", "data=synthetic", "image_size=64", "weights=none", "mode=frozen",
             "frozen_augment=false", "epochs=1", "head_units=256"]
    tuner.search(words, tuner.SearchOptions(trials=1, storage=store, study="tr", baselines=False))
    (rec,) = tuner.trials(study="tr", storage=store).records
    import optuna

    (trial,) = optuna.load_study(study_name="tr", storage=store).trials
    assert rec.state == "complete" and trial.user_attrs["feature_cache"] == "built"
    assert rec.backend == keras.backend.backend()
    path = tuner.export(tmp_path / "transfer.keras", study="tr", storage=store)
    keras.backend.clear_session()
    model = keras.saving.load_model(path)
    assert model.input.dtype == "uint8" and tuple(model.input.shape[1:]) == (64, 64, 3)
    data = _synthetic(64)
    probs = np.asarray(model.predict(data.x_test, verbose=0))
    assert probs.shape == (len(data.x_test), 3)
    # Backbone + head in one model agree with the head trained on the cached features: the test accuracy the trial
    # measured on those features, within one image (a near-tie may fall the other way).
    assert abs(np.mean(probs.argmax(axis=1) == data.y_test) - rec.test_accuracy) <= 1 / len(data.y_test) + 1e-9


@pytest.mark.backends
def test_a_lower_backbone_learning_rate_applies_on_this_backend():
    # PyTorch's fused optimizers bypass update_step, where the scale is applied (search_spaces/_resnet.py).
    keras = _keras()
    from search_spaces import _resnet

    keras.utils.set_random_seed(0)
    backbone, top = keras.layers.Dense(2, name="bb"), keras.layers.Dense(2, name="top")
    inputs = keras.Input((2,))
    model = keras.Model(inputs, top(backbone(inputs)))
    opt = _resnet.scaled_optimizer(keras.optimizers.Adam(learning_rate=0.1), 0.0, backbone.trainable_variables)
    model.compile(optimizer=opt, loss="mse")
    before = [np.array(w) for w in model.get_weights()]
    model.fit(np.ones((4, 2)), np.zeros((4, 2)), epochs=2, verbose=0)
    after = model.get_weights()
    np.testing.assert_array_equal(after[0], before[0])  # backbone kernel: learning rate x 0
    assert not np.allclose(after[2], before[2])  # head kernel moved


NO_TENSORFLOW = """
import sys
from importlib.machinery import PathFinder

class NoTensorFlow(PathFinder):  # the path finder, as if TensorFlow were not installed: it finds no such module
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "tensorboard"):
            return None
        return super().find_spec(name, path, target)

sys.meta_path[:] = [NoTensorFlow if finder is PathFinder else finder for finder in sys.meta_path]
import numpy as np, keras, tuner
from tuner.data import load_dataset

for engine in ("optuna", "keras-tuner"):
    tuner.search(["space=basenet", "data=synthetic", "epochs=1"],
                 tuner.SearchOptions(trials=1, storage="sqlite:///s.db", study=engine, engine=engine, baselines=False))
    model = keras.saving.load_model(tuner.export(engine + ".keras", study=engine, storage="sqlite:///s.db"))
    assert model.predict(load_dataset("synthetic").x_test, verbose=0).shape == (60, 3)
assert "tensorflow" not in sys.modules
"""


@pytest.mark.backends
def test_jax_and_torch_need_no_tensorflow(tmp_path):
    # Installed, TensorFlow is imported anyway by Keras' own set_random_seed (to seed tf.data), whatever the backend;
    # a `pip install ".[jax]"` or ".[torch]" has none, and both engines search and export without it.
    backend = _keras().backend.backend()
    if backend == "tensorflow":
        pytest.skip("the tensorflow backend is TensorFlow")
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run([sys.executable, "-c", NO_TENSORFLOW], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# -- the 3x3 matrix: trained on each backend, loaded on each --------------------------------------------------------
TRAIN = """
import json, tuner
words = ["space=basenet", "data=synthetic", "epochs=1"]
tuner.search(words, tuner.SearchOptions(trials=1, storage="sqlite:///{backend}.db", study="m", baselines=False, seed=0))
tuner.export("{backend}.keras", study="m", storage="sqlite:///{backend}.db")
import keras
print(json.dumps({{"backend": keras.backend.backend()}}))
"""

LOAD = """
import json
import numpy as np
import keras
from tuner.data import load_dataset

data = load_dataset("synthetic")
x, y = data.x_test, data.y_test
out = {{"backend": keras.backend.backend(), "optimizers": {{}}}}
for trained in {trained!r}:
    model = keras.saving.load_model(f"{{trained}}.keras")
    np.save(f"probs_{{trained}}_on_{backend}.npy", np.asarray(model.predict(x, verbose=0)))
    out["optimizers"][trained] = type(model.optimizer).__module__
    model.train_on_batch(x[:8], y[:8])  # and it trains on, with this backend's optimizer
print(json.dumps(out))
"""


def _run_each(scripts: dict[str, str], cwd: Path) -> dict[str, dict]:
    """Runs one script per backend, all at once (each ``KERAS_BACKEND=b python -c``); returns each one's JSON line."""
    procs = {}
    for backend, code in scripts.items():
        path = [str(ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
        env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": os.pathsep.join(path)}
        procs[backend] = subprocess.Popen([sys.executable, "-c", code], cwd=cwd, env=env, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True)
    results = {}
    for backend, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, f"KERAS_BACKEND={backend}:\n{stdout}\n{stderr}"
        results[backend] = json.loads(stdout.strip().splitlines()[-1])
    return results


@pytest.mark.backend_matrix
def test_an_export_of_any_backend_loads_and_predicts_the_same_on_every_backend(tmp_path):
    missing = [b for b in BACKENDS if importlib.util.find_spec(b) is None]
    if missing:
        why = f"the backend matrix needs {', '.join(BACKENDS)} installed; missing: {', '.join(missing)}"
        if os.environ.get("CNNTUNE_REQUIRE_BACKENDS"):
            pytest.fail(why)
        pytest.skip(why + " (make test-backends installs them)")
    trained = _run_each({b: TRAIN.format(backend=b) for b in BACKENDS}, tmp_path)
    import zipfile

    for backend in BACKENDS:
        assert trained[backend]["backend"] == backend
        assert tuner.read_export_metadata(tmp_path / f"{backend}.keras")["backend"] == backend
        # Nothing of the training backend in the model's config: no backend's own class, no resolved jit_compile.
        config = zipfile.ZipFile(tmp_path / f"{backend}.keras").read("config.json").decode()
        assert "keras.src.backend" not in config and json.loads(config)["compile_config"]["jit_compile"] == "auto"
    loaded = _run_each({b: LOAD.format(backend=b, trained=BACKENDS) for b in BACKENDS}, tmp_path)
    for loader, result in loaded.items():
        assert result["backend"] == loader
        for origin, module in result["optimizers"].items():
            # An export names public Keras classes only: no other backend's optimizer comes back with it.
            assert not any(other in module for other in BACKENDS if other != loader), (origin, loader, module)
    y = _synthetic().y_test
    for origin in BACKENDS:
        probs = {loader: np.load(tmp_path / f"probs_{origin}_on_{loader}.npy") for loader in BACKENDS}
        assert probs[origin].shape == (len(y), 3)
        for loader in BACKENDS:
            np.testing.assert_allclose(probs[loader], probs[origin], rtol=0, atol=MATRIX_ATOL,
                                       err_msg=f"trained on {origin}, loaded on {loader}")
            assert (probs[loader].argmax(axis=1) == probs[origin].argmax(axis=1)).all()


# -- a study keeps to one backend unless told ----------------------------------------------------------------------
class OtherBackendRunner(FakeRunner):
    """A runner whose trials say they trained on ``backend``."""

    def __init__(self, backend: str):
        super().__init__()
        self.backend = backend

    def __call__(self, *args, **kwargs) -> TrialOutcome:
        outcome = super().__call__(*args, **kwargs)
        outcome.backend = self.backend
        return outcome


def test_a_study_refuses_trials_of_another_backend_unless_told(store, monkeypatch):
    here = current_backend()
    other = "jax" if here != "jax" else "torch"
    tuner.search(["space=basenet", *SYN], tuner.SearchOptions(trials=1, storage=store, study="mix", baselines=False),
                 runner=OtherBackendRunner(other))
    settings = tuner.trials(study="mix", storage=store).meta["search"]
    # Refused before anything is run or rewritten (the real runner would train: it never starts).
    line = one_line_error(run_cli("search", "space=basenet", *SYN, "--trials", "2", "--no-baselines", "--study",
                                  "mix", "--storage", store, "--seed", "5"), "--allow-mixed-backends", other, here)
    assert f"KERAS_BACKEND={other}" in line
    one_line_error(run_cli("worker", "--study", "mix", "--storage", store), "--allow-mixed-backends")
    view = tuner.trials(study="mix", storage=store)
    assert len(view.records) == 1 and view.meta["search"] == settings
    # Told: the trials of this backend join the study, and the backend of each trial is shown.
    tuner.search(["space=basenet", *SYN],
                 tuner.SearchOptions(trials=2, storage=store, study="mix", baselines=False, allow_mixed_backends=True),
                 runner=OtherBackendRunner(here))
    assert [r.backend for r in tuner.trials(study="mix", storage=store).records] == [other, here]
    result = tuner.worker("mix", store, {"allow_mixed_backends": True}, runner=OtherBackendRunner(here))
    assert result.ran == [] and "already holds 2" in result.message
    monkeypatch.setenv("COLUMNS", "80")
    narrow = run_cli("trials", "--study", "mix", "--storage", store)
    assert narrow.exit_code == 0 and max(len(line) for line in narrow.output.splitlines()) <= 80
    assert "backend" not in narrow.output
    monkeypatch.setenv("COLUMNS", "160")
    wide = run_cli("trials", "--study", "mix", "--storage", store, "--wide")
    rows = [line.split() for line in wide.output.splitlines() if line.split()[:1] in (["0"], ["1"])]
    assert "backend" in wide.output and [other in rows[0], here in rows[1]] == [True, True], wide.output
    best = run_cli("best", "--study", "mix", "--storage", store)
    assert best.exit_code == 0 and "trained on " in best.output


def test_trials_of_a_runner_that_names_no_keras_backend_are_not_compared(store):
    tuner.search(["space=basenet", *SYN], tuner.SearchOptions(trials=1, storage=store, study="f", baselines=False),
                 runner=FakeRunner())
    tuner.search(["space=basenet", *SYN], tuner.SearchOptions(trials=2, storage=store, study="f", baselines=False),
                 runner=FakeRunner())
    assert [r.backend for r in tuner.trials(study="f", storage=store).records] == ["fake", "fake"]


def test_search_workers_pass_the_permission_on():
    from tuner.searching import worker_pool

    pool = worker_pool(tuner.SearchOptions(workers=2, allow_mixed_backends=True), url="journal:x.journal", pooled=True)
    assert "--allow-mixed-backends" in pool.command("s", "w0", None)
    pool = worker_pool(tuner.SearchOptions(workers=2), url="journal:x.journal", pooled=True)
    assert "--allow-mixed-backends" not in pool.command("s", "w0", None)


def test_the_backend_is_found_as_keras_finds_it_without_importing_keras(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "keras", None)  # as in a process that has not imported Keras
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    assert current_backend() == "tensorflow"  # no keras.json: Keras' default
    (tmp_path / "keras.json").write_text(json.dumps({"backend": "jax", "floatx": "float32"}))
    assert current_backend() == "jax"
    monkeypatch.setenv("KERAS_BACKEND", "torch")  # the variable wins over the file, as in Keras
    assert current_backend() == "torch"
    monkeypatch.setenv("KERAS_BACKEND", "")  # an empty variable is ignored, as in Keras
    assert current_backend() == "jax"
    (tmp_path / "keras.json").write_text("not json")
    assert current_backend() == "tensorflow"
