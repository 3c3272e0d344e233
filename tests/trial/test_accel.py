"""Mixed precision, JIT and several trials per GPU (``tuner.trial._accel``): checked options, stored with the study,
applied to the trial's model, recorded per trial, and a process-wide policy that never leaks.

The ``backends`` tests train under each policy and with JIT on JAX and PyTorch too (``make test-backends``)."""

from __future__ import annotations

import sys

import pytest

import tuner
from conftest import SYN, FakeRunner, fake_nvidia_smi, one_line_error, run_cli
from tuner.errors import CnntuneError
from tuner.trial import accel_of, check_precision, share_gpu_env


def test_precision_names_and_bad_values():
    assert check_precision(None) == "float32"
    assert check_precision("off") == "float32"
    assert check_precision("bf16") == "bfloat16"
    assert check_precision("mixed_float16") == "float16"
    with pytest.raises(CnntuneError, match="--mixed-precision must be"):
        check_precision("float8")
    assert accel_of(None) == {}
    assert accel_of(tuner.SearchOptions().resolved()) == {}
    assert accel_of(tuner.SearchOptions(mixed_precision="bf16", jit=False)) == {"precision": "bfloat16", "jit": False}


def test_bad_accelerator_options_are_one_line(store, tmp_path, monkeypatch):
    fake_nvidia_smi(tmp_path, monkeypatch, 1)  # GPU 0 is there: what is refused below is the rest
    one_line_error(run_cli("search", "space=basenet", *SYN, "--storage", store, "--mixed-precision", "fp8"),
                   "--mixed-precision must be")
    one_line_error(run_cli("search", "space=basenet", *SYN, "--storage", store, "--trials-per-gpu", "0"),
                   "--trials-per-gpu must be at least 1")
    one_line_error(run_cli("search", "space=basenet", *SYN, "--storage", store, "--trials-per-gpu", "2",
                           "--gpus", "0", "--workers", "3"), "drop --workers")
    # Two workers on one GPU writing one SQLite file: refused like any two workers.
    one_line_error(run_cli("search", "space=basenet", *SYN, "--storage", store, "--trials-per-gpu", "2",
                           "--gpus", "0"), "database is locked")


def test_a_gpu_shared_by_k_workers_gives_each_a_share_of_its_memory():
    assert share_gpu_env(1) == {}
    env = share_gpu_env(4)
    assert env["TF_FORCE_GPU_ALLOW_GROWTH"] == "true"
    assert env["XLA_PYTHON_CLIENT_MEM_FRACTION"] == "0.22"
    assert "expandable_segments" in env["PYTORCH_CUDA_ALLOC_CONF"]
    # A value the user set wins.
    assert "XLA_PYTHON_CLIENT_MEM_FRACTION" not in share_gpu_env(2, {"XLA_PYTHON_CLIENT_MEM_FRACTION": "0.3"})


def test_trials_per_gpu_starts_k_workers_per_gpu_each_with_its_share(tmp_path, monkeypatch):
    from tuner.searching import worker_pool
    from tuner.records import Display

    url = f"journal:{tmp_path / 's.journal'}"
    fake_nvidia_smi(tmp_path, monkeypatch, 2)
    pool = worker_pool(tuner.SearchOptions(gpus="0,1", trials_per_gpu=2), url=url, pooled=True)
    assert pool.gpus == ["0", "1", "0", "1"]
    # Without --gpus: every GPU nvidia-smi lists (a fake one on PATH here).
    fake_nvidia_smi(tmp_path, monkeypatch, 1)
    monkeypatch.delenv("XLA_PYTHON_CLIENT_MEM_FRACTION", raising=False)
    monkeypatch.delenv("TF_FORCE_GPU_ALLOW_GROWTH", raising=False)
    pool = worker_pool(tuner.SearchOptions(trials_per_gpu=3), url=url, pooled=True)
    assert pool.gpus == ["0", "0", "0"]

    # What each worker process gets: its GPU and its share (the processes print their environment here).
    class Lines(Display):
        def __init__(self):
            self.lines: list[tuple[str, str]] = []

        def worker_output(self, name, line):
            self.lines.append((name, line))

    probe = ("import os; print(os.environ['CUDA_VISIBLE_DEVICES'], os.environ['XLA_PYTHON_CLIENT_MEM_FRACTION'], "
             "os.environ['TF_FORCE_GPU_ALLOW_GROWTH'])")
    monkeypatch.setattr(type(pool), "command", lambda self, study, name, timeout: [sys.executable, "-c", probe])
    display = Lines()
    pool.run("s", timeout=None, display=display)
    assert sorted(display.lines) == [(f"w{i}", "0 0.30 true") for i in range(3)]


def test_a_search_stores_precision_and_jit_and_hands_them_to_every_trial(store):
    import optuna

    from tuner.store import study_meta

    runner = Recording()
    tuner.search(["space=basenet", *SYN],
                 tuner.SearchOptions(trials=1, storage=store, study="mp", mixed_precision="bfloat16", jit=False),
                 runner=runner)
    assert runner.kwargs and all(k.get("precision") == "bfloat16" and k.get("jit") is False for k in runner.kwargs)
    meta = study_meta(optuna.load_study(study_name="mp", storage=store))
    stored = tuner.SearchOptions.from_meta(meta, "mp")
    assert (stored.mixed_precision, stored.jit) == ("bfloat16", False)
    # A plain study hands the runner neither keyword, so runners written before them keep working.
    plain = Recording()
    tuner.search(["space=basenet", *SYN], tuner.SearchOptions(trials=1, storage=store, study="fp32"), runner=plain)
    assert plain.kwargs and all("precision" not in k and "jit" not in k for k in plain.kwargs)
    # The re-evaluation of the top configurations retrains them as they were searched.
    again = Recording()
    tuner.reevaluate(study="mp", storage=store, top=2, seeds=1, runner=again)
    assert again.kwargs and all(k.get("precision") == "bfloat16" for k in again.kwargs)


def test_a_runner_without_the_keywords_is_refused_in_one_line(store):
    def old_runner(space, params, data, *, seed, model_path, on_epoch=None, should_stop=None, spec_options=None,
                   feature_cache=None):
        raise AssertionError("never called")

    with pytest.raises(CnntuneError, match="does not take precision"):
        tuner.search(["space=basenet", *SYN],
                     tuner.SearchOptions(trials=1, storage=store, study="old", mixed_precision="float16"),
                     runner=old_runner)


class Recording(FakeRunner):
    """A fake runner that keeps the keywords of every call."""

    def __init__(self):
        super().__init__(accuracy=lambda params, seed: (0.3 + 0.01 * (seed % 7), 0.2))
        self.kwargs: list[dict] = []

    def __call__(self, space, params, data, **kwargs):
        self.kwargs.append(kwargs)
        return super().__call__(space, params, data, **kwargs)


@pytest.mark.backends
@pytest.mark.parametrize("precision, policy", [("bfloat16", "mixed_bfloat16"), ("float16", "mixed_float16")])
def test_a_trial_trains_under_the_mixed_policy_and_leaves_float32_behind(precision, policy, tmp_path):
    import keras

    from search_spaces import get_space
    from tuner.data import load_dataset
    from tuner.hp import Defaults, resolve
    from tuner.trial import run_trial

    space = get_space("basenet")
    params = resolve(space, Defaults({"epochs": 1}))
    data = load_dataset("synthetic")
    seen: dict = {}

    class Capture(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            seen["optimizer"] = type(self.model.optimizer).__name__
            seen["output"] = self.model.output.dtype

    out = run_trial(space, params, data, seed=1, model_path=tmp_path / "m.keras", precision=precision, jit=False,
                    extra_callbacks=[Capture()])
    assert keras.config.dtype_policy().name == "float32"  # restored
    assert out.extra["precision"] == precision and out.extra["jit"] is False
    assert 0.0 <= out.val_accuracy <= 1.0
    assert seen["output"] == "float32"  # the softmax stays in float32
    assert (seen["optimizer"] == "LossScaleOptimizer") == (precision == "float16")  # float16 scales the loss
    model = keras.saving.load_model(tmp_path / "m.keras", compile=False)
    conv = next(layer for layer in model.layers if "conv" in layer.name)
    assert conv.dtype_policy.name == policy
    # A float32 trial after it builds float32 layers again.
    plain = run_trial(space, params, data, seed=1, model_path=tmp_path / "p.keras")
    assert "precision" not in plain.extra and "jit" not in plain.extra
    conv = next(layer for layer in keras.saving.load_model(tmp_path / "p.keras").layers if "conv" in layer.name)
    assert conv.dtype_policy.name == "float32"


@pytest.mark.backends
def test_jit_compiles_the_training_step_when_asked(tmp_path):
    from search_spaces import get_space
    from tuner.data import load_dataset
    from tuner.hp import Defaults, resolve
    from tuner.trial import run_trial

    space = get_space("basenet")
    params = resolve(space, Defaults({"epochs": 1}))
    out = run_trial(space, params, load_dataset("synthetic"), seed=2, model_path=None, jit=True)
    assert out.extra["jit"] is True
    assert len(out.history["val_accuracy"]) == 1


@pytest.mark.backends
def test_random_zoom_and_rotation_compile_on_jax_instead_of_running_eagerly():
    import keras
    import numpy as np

    from search_spaces import get_space
    from tuner.trial import apply_jit
    from tuner.hp import Defaults, resolve
    from tuner.spec import ModelSpec

    space = get_space("improved")
    params = resolve(space, Defaults({"zoom_range": 0.2, "rotation_range": 10}))
    model = space.build(params, ModelSpec(input_shape=(32, 32, 3), num_classes=3))
    keras_choice = bool(model.jit_compile)  # Keras's "auto": False for these layers on every backend
    assert apply_jit(model, None) is (True if keras.backend.backend() == "jax" else keras_choice)
    x = np.random.default_rng(0).integers(0, 256, size=(8, 32, 32, 3), dtype=np.uint8)
    history = model.fit(x, np.arange(8) % 3, batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert apply_jit(model, False) is False
