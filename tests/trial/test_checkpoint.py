"""Trials survive preemption: per-epoch checkpoints, resume on retry (Ctrl-C/SIGTERM, a killed worker), and the
out-of-memory reason."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import tuner
from conftest import FakeRunner, run_cli
from conftest import sample_checkpoint as _ckpt
from tuner.signals import deferred, interruptible, raise_if_interrupted
from tuner.store import Location
from tuner.trial import _checkpoint

# 50 generated classes: 1,600 training images, about a second per BaseNet epoch here, so that a process can be
# stopped in the middle of a trial.
SLOW_SYN = ["space=basenet", "data=synthetic", "classes=50", "epochs=6", "learning_rate=0.001"]


# -- the file --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("best_epoch", [3, 2])
def test_a_checkpoint_reads_back_what_was_written(tmp_path, best_epoch):
    written = _ckpt(3, best_epoch=best_epoch)
    path = _checkpoint.write(tmp_path / "trial_0001", written)
    assert path.local == tmp_path / "trial_0001" / "checkpoint.npz"
    assert os.listdir(path.local.parent) == ["checkpoint.npz"]
    back = _checkpoint.read(tmp_path / "trial_0001")
    assert back.epoch == 3 and back.best_epoch == best_epoch and back.best == pytest.approx(written.best)
    assert back.history == written.history and back.early_stopping == written.early_stopping
    assert back.config == {"learning_rate": 0.001, "epochs": 4, "widths": [6, 16]}  # as JSON stores it
    assert _checkpoint.same_config(back.config, written.config)
    for group in ("weights", "optimizer", "rng"):
        assert len(getattr(back, group)) == len(getattr(written, group))
        for a, b in zip(getattr(back, group), getattr(written, group)):
            assert a.dtype == b.dtype
            np.testing.assert_array_equal(a, b)
    expected_best = written.weights if best_epoch == 3 else written.best_weights
    for a, b in zip(back.best_epoch_weights(), expected_best):
        np.testing.assert_array_equal(a, b)
    meta = _checkpoint.read_meta(tmp_path / "trial_0001")
    assert meta["epoch"] == 3 and meta["history"] == written.history
    assert _checkpoint.read(tmp_path / "nothing") is None and _checkpoint.read_meta(tmp_path / "nothing") is None


def test_a_write_that_dies_before_the_rename_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    folder = tmp_path / "trial_0002"
    _checkpoint.write(folder, _ckpt(1))

    def crash(src, dst):
        assert Path(src).parent == folder and Path(src).stat().st_size > 0  # the new file was written in full
        raise OSError("killed between the write and the rename")

    monkeypatch.setattr(_checkpoint.os, "replace", crash)
    with pytest.raises(OSError, match="killed"):
        _checkpoint.write(folder, _ckpt(2, seed=1))
    monkeypatch.undo()
    assert os.listdir(folder) == ["checkpoint.npz"]  # the temporary file is gone
    # A process killed outright leaves its temporary file behind; readers never look at it.
    (folder / ".checkpoint.npz.abc.tmp").write_bytes(b"PK\x03\x04 half a zip")
    back = _checkpoint.read(folder)
    assert back.epoch == 1 and back.history == _ckpt(1).history
    np.testing.assert_array_equal(back.weights[0], _ckpt(1).weights[0])
    # A truncated checkpoint reads as none (it is never produced by write, but a disk can fail).
    (folder / "checkpoint.npz").write_bytes((folder / "checkpoint.npz").read_bytes()[:100])
    assert _checkpoint.read(folder) is None and _checkpoint.read_meta(folder) is None


def test_a_rewritten_checkpoint_replaces_the_last_one_and_discard_removes_it(tmp_path):
    _checkpoint.write(tmp_path / "trial_0001", _ckpt(2))
    _checkpoint.write(str(tmp_path / "trial_0001"), _ckpt(3, seed=1))  # a retry writes where it read
    assert _checkpoint.read_meta(tmp_path / "trial_0001")["epoch"] == 3
    assert os.listdir(tmp_path / "trial_0001") == ["checkpoint.npz"]
    _checkpoint.discard(tmp_path / "trial_0001")
    _checkpoint.discard(tmp_path / "trial_0001")  # nothing there: nothing to do
    assert not (tmp_path / "trial_0001").exists()


def test_a_signal_while_training_is_deferred_to_the_next_boundary_and_a_second_one_raises_at_once():
    reached = []
    with pytest.raises(KeyboardInterrupt):
        with interruptible():
            with deferred():
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.05)
                reached.append("after the signal")  # the batch in flight finishes
                with pytest.raises(KeyboardInterrupt):
                    raise_if_interrupted()
                reached.append("a boundary raised it")
            reached.append("not reached: leaving deferred() raises it too")
    assert reached == ["after the signal", "a boundary raised it"]
    with pytest.raises(KeyboardInterrupt):
        with interruptible():
            with deferred():
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.05)
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(5)  # the second signal raises here
                pytest.fail("a second signal must raise at once")


# -- the runner ------------------------------------------------------------------------------------------------------
def _space(epochs: int, name: str = "basenet"):
    import search_spaces
    from tuner.data import load_dataset
    from tuner.hp import Defaults, resolve

    space = getattr(search_spaces, name)
    return space, load_dataset("synthetic"), {**resolve(space, Defaults()), "epochs": epochs}


def _sigterm_at(epoch: int, seen: list[int]):
    """An ``on_epoch`` hook that records the epochs and sends this process SIGTERM after ``epoch``."""

    def hook(e, logs):
        seen.append(e)
        if e == epoch:
            os.kill(os.getpid(), signal.SIGTERM)

    return hook


def _start_state(holder: dict):
    import keras

    class Capture(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            holder["weights"] = self.model.get_weights()
            holder["optimizer"] = [v.numpy() for v in self.model.optimizer.variables]

    return Capture()


# BaseNet; and a space with random augmentation layers and batch normalization, whose random streams resume too;
# BaseNet's checkpoints in a bucket (an S3-protocol server on 127.0.0.1) as well as in a folder.
@pytest.mark.slow
@pytest.mark.parametrize("name, where", [("basenet", "folder"), ("improved", "folder"), ("basenet", "bucket")])
def test_an_interrupted_trial_resumes_from_its_epoch_checkpoint(tmp_path, request, name, where):
    import keras

    from tuner.trial import run_trial

    space, data, params = _space(4, name)
    root = tmp_path if where == "folder" else Location.of(request.getfixturevalue("s3"))
    folder = root / "checkpoints" / "trial_0000"
    seen: list[int] = []
    with pytest.raises(KeyboardInterrupt):
        with interruptible():
            run_trial(space, params, data, seed=3, model_path=None, checkpoint_dir=folder,
                      on_epoch=_sigterm_at(2, seen))
    assert seen == [1, 2]  # SIGTERM after epoch 2 ended the trial there, once epoch 2's checkpoint was written
    saved = _checkpoint.read(folder)
    assert saved.epoch == 2 and len(saved.history["loss"]) == 2 and saved.config == params
    steps = -(-int(len(data.x_train)) // params["batch_size"])
    assert int(saved.optimizer[0]) == 2 * steps  # Adam's step count: two epochs of batches

    start: dict = {}
    seen.clear()
    out = run_trial(space, params, data, seed=3, model_path=tmp_path / "resumed.keras", checkpoint_dir=folder,
                    resume_from=folder, on_epoch=lambda e, logs: seen.append(e), extra_callbacks=[_start_state(start)])
    assert seen == [3, 4]  # only the epochs it still had to train
    for a, b in zip(start["weights"], saved.weights):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(start["optimizer"], saved.optimizer):
        np.testing.assert_array_equal(a, b)
    assert out.epochs_run == 4 and len(out.history["loss"]) == 4
    for key, values in saved.history.items():
        assert out.history[key][:2] == values  # the predecessor's epochs, once
    val = out.history["val_accuracy"]
    assert out.best_epoch == val.index(max(val)) + 1 and out.val_accuracy == pytest.approx(max(val))
    assert _checkpoint.read_meta(folder)["epoch"] == 4  # the caller deletes it once the trial is recorded
    # Interrupted after its last epoch (while testing or saving): the retry trains nothing and finishes the trial.
    seen.clear()
    last = run_trial(space, params, data, seed=3, model_path=None, resume_from=folder,
                     on_epoch=lambda e, logs: seen.append(e))
    assert seen == [] and last.epochs_run == 4 and last.history == out.history
    assert (last.best_epoch, last.val_accuracy) == (out.best_epoch, out.val_accuracy)

    # The same seed without the interruption trains the same: Keras (TensorFlow) feeds the arrays in the same
    # shuffled order every epoch, and the checkpoint holds the optimizer's and the random layers' states.
    whole = run_trial(space, params, data, seed=3, model_path=tmp_path / "whole.keras")
    for key, values in whole.history.items():
        np.testing.assert_allclose(out.history[key], values, rtol=1e-5, atol=1e-6)
    assert (out.best_epoch, out.val_accuracy) == (whole.best_epoch, pytest.approx(whole.val_accuracy))
    resumed_weights = keras.saving.load_model(tmp_path / "resumed.keras").get_weights()
    for a, b in zip(resumed_weights, keras.saving.load_model(tmp_path / "whole.keras").get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_a_checkpoint_of_another_configuration_is_not_resumed(tmp_path):
    from tuner.trial import run_trial

    space, data, params = _space(2)
    _checkpoint.write(tmp_path / "ck", _ckpt(1))
    with pytest.raises(tuner.CnntuneError, match="another configuration"):
        run_trial(space, params, data, seed=0, model_path=None, resume_from=tmp_path / "ck")
    with pytest.raises(tuner.CnntuneError, match="no checkpoint"):
        run_trial(space, params, data, seed=0, model_path=None, resume_from=tmp_path / "none")


def test_early_stopping_state_survives_a_resume(tmp_path):
    from tuner.trial import run_trial

    space, data, params = _space(8)
    # At a learning rate of 1e-9 nothing improves after epoch 1: patience 3 stops after epoch 4.
    params = {**params, "learning_rate": 1e-9, "early_stopping": True, "patience": 3}
    whole = run_trial(space, params, data, seed=0, model_path=None)
    assert whole.epochs_run == 4
    with pytest.raises(KeyboardInterrupt):
        with interruptible():
            run_trial(space, params, data, seed=0, model_path=None, checkpoint_dir=tmp_path / "ck",
                      on_epoch=_sigterm_at(2, []))
    assert _checkpoint.read_meta(tmp_path / "ck")["early_stopping"]["wait"] == 1
    resumed = run_trial(space, params, data, seed=0, model_path=None, resume_from=tmp_path / "ck")
    assert resumed.epochs_run == 4 and len(resumed.history["loss"]) == 4  # it waited 3 epochs in all, not 3 more


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:.*tf.function retracing")
def test_a_head_only_trial_resumes_from_its_checkpoint(tmp_path):
    from PIL import Image

    from search_spaces import transfer
    from tuner import hp as H
    from tuner.data import load_dataset
    from tuner.trial import run_trial

    for c, cls in enumerate(("a", "b")):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(6):
            Image.new("RGB", (32, 32), (40 * i, 120 * c, 0)).save(tmp_path / "imgs" / cls / f"{i}.png")
    data = load_dataset("folder", data_dir=tmp_path / "imgs", image_size=32)
    params = {**H.resolve(transfer, H.Defaults()), "epochs": 3, "head_units": 256}
    kwargs = dict(spec_options={"weights": "none"}, feature_cache=tmp_path / "cache")
    folder = tmp_path / "ck"
    with pytest.raises(KeyboardInterrupt):
        with interruptible():
            run_trial(transfer, params, data, seed=0, model_path=None, checkpoint_dir=folder,
                      on_epoch=_sigterm_at(1, []), **kwargs)
    saved = _checkpoint.read(folder)
    assert saved.epoch == 1
    start: dict = {}
    out = run_trial(transfer, params, data, seed=0, model_path=tmp_path / "m.keras", checkpoint_dir=folder,
                    resume_from=folder, extra_callbacks=[_start_state(start)], **kwargs)
    assert out.extra["feature_cache"] == "hit"  # the head, not the backbone, was checkpointed and resumed
    for a, b in zip(start["weights"], saved.weights):
        np.testing.assert_array_equal(a, b)
    assert out.epochs_run == 3 and len(out.history["loss"]) == 3 and out.history["loss"][0] == saved.history["loss"][0]


# -- the objective: which trial resumes, when checkpoints go -------------------------------------------------------
class CheckpointingFake(FakeRunner):
    """A ``FakeRunner`` that writes a checkpoint (epoch 2, or one more than it resumed from) and is interrupted on
    the calls in ``interrupt``, and remembers the checkpoint arguments of every call."""

    def __init__(self, interrupt=(), config_change=None, raise_on=None):
        super().__init__()
        self.interrupt = set(interrupt)
        self.config_change = config_change or {}
        self.raise_on = raise_on
        self.kwargs: list[dict] = []

    def __call__(self, space, params, data, *, seed, model_path, **kwargs):
        self.kwargs.append(kwargs)
        n = len(self.kwargs)
        if kwargs.get("checkpoint_dir") is not None and (n in self.interrupt or n == self.raise_on):
            resumed = _checkpoint.read_meta(kwargs["resume_from"]) if kwargs.get("resume_from") else None
            ckpt = _ckpt(2 if resumed is None else resumed["epoch"] + 1)  # one more epoch than it resumed from
            ckpt.config = {**params, **self.config_change}
            _checkpoint.write(kwargs["checkpoint_dir"], ckpt)
        if n in self.interrupt:
            self.calls.append((dict(params), int(seed)))
            raise KeyboardInterrupt
        if n == self.raise_on:
            raise RuntimeError("boom")
        return super().__call__(space, params, data, seed=seed, model_path=model_path, **kwargs)


def _study(store, name):
    import optuna

    return optuna.load_study(study_name=name, storage=store).trials


def _checkpoints(store_dir: Path, study: str) -> list[str]:
    root = store_dir / "cnntune_artifacts" / study / "checkpoints"
    return sorted(p.name for p in root.iterdir()) if root.is_dir() else []


def test_a_retried_baseline_and_a_retried_trial_resume_their_predecessors_checkpoints_in_place(store, tmp_path):
    words = ["space=basenet", "data=synthetic", "epochs=4"]
    runner = CheckpointingFake(interrupt=[1])
    # Trial numbers below are those of a study without queued warm starts.
    with pytest.raises(KeyboardInterrupt):  # the baseline (trial 0) is interrupted at epoch 2
        tuner.search(words, tuner.SearchOptions(trials=2, storage=store, study="r", warm_start=0), runner=runner)
    assert _checkpoints(tmp_path, "r") == ["trial_0000"]
    runner.interrupt = {3}  # rerun: the retried baseline completes, the next searched trial is interrupted
    with pytest.raises(KeyboardInterrupt):
        tuner.search(words, tuner.SearchOptions(trials=2, storage=store, study="r", warm_start=0), runner=runner)
    folder = tmp_path / "cnntune_artifacts" / "r" / "checkpoints"
    # The retry reads and goes on writing its predecessor's checkpoint where it is: nothing is moved.
    assert runner.kwargs[1]["checkpoint_dir"] == folder / "trial_0000"
    assert runner.kwargs[1]["resume_from"] == folder / "trial_0000"
    assert runner.kwargs[2]["resume_from"] is None and runner.kwargs[2]["checkpoint_dir"] == folder / "trial_0002"
    assert _checkpoints(tmp_path, "r") == ["trial_0002"]  # trial 1 finished: its chain's checkpoint went
    tuner.search(words, tuner.SearchOptions(trials=2, storage=store, study="r", warm_start=0), runner=runner)
    assert runner.kwargs[3]["resume_from"] == folder / "trial_0002"
    trials = _study(store, "r")
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]
    assert trials[1].user_attrs["baseline"] == "basenet" and trials[1].user_attrs["retry_of"] == 0
    assert trials[1].user_attrs["resumed_from_epoch"] == 2 and trials[3].user_attrs["resumed_from_epoch"] == 2
    assert trials[3].user_attrs["retry_of"] == 2 and "resumed_from_epoch" not in trials[4].user_attrs
    assert _checkpoints(tmp_path, "r") == []


def test_a_retry_of_a_retry_resumes_from_the_latest_checkpoint(store, tmp_path):
    words = ["space=basenet", "data=synthetic", "epochs=4"]
    runner = CheckpointingFake(interrupt=[1, 2])
    for _ in range(2):  # trial 0 stops at epoch 2; its retry, trial 1, resumes and stops at epoch 3
        with pytest.raises(KeyboardInterrupt):
            tuner.search(words, tuner.SearchOptions(trials=1, storage=store, study="rr", baselines=False),
                         runner=runner)
    assert _checkpoints(tmp_path, "rr") == ["trial_0000"]  # read by trial 1 and advanced in place
    tuner.search(words, tuner.SearchOptions(trials=1, storage=store, study="rr", baselines=False), runner=runner)
    trials = _study(store, "rr")
    assert [t.user_attrs.get("retry_of") for t in trials] == [None, 0, 1]
    assert [t.user_attrs.get("checkpoint_of") for t in trials] == [0, 0, 0]
    assert [t.user_attrs.get("resumed_from_epoch") for t in trials] == [None, 2, 3]
    assert trials[2].state.name == "COMPLETE" and _checkpoints(tmp_path, "rr") == []


def test_a_heartbeat_retry_names_the_latest_trial_of_its_chain(tmp_path):
    import optuna

    from tuner.trial import Objective

    study = optuna.create_study(direction="maximize")
    # Trial 0 was interrupted and retried as trial 1 (retry_of 0); trial 1's worker died, and Optuna's retry callback
    # copied its user attributes and recorded the chain in the system attributes of the new trial.
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.WAITING, user_attrs={"retry_of": 0},
                                              system_attrs={"failed_trial": 1, "retry_history": [1]}))
    trial = study.ask()
    objective = Objective(None, None, model_dir=tmp_path, feature_cache=tmp_path, seed=0, display=None)
    assert objective.predecessor(trial, dict(trial.user_attrs)) == 1
    plain = study.ask()
    assert objective.predecessor(plain, {}) is None and objective.predecessor(plain, {"retry_of": 4}) == 4


def test_a_retry_does_not_resume_a_checkpoint_of_another_configuration(store, tmp_path):
    words = ["space=basenet", "data=synthetic", "epochs=4"]
    runner = CheckpointingFake(interrupt=[1], config_change={"learning_rate": 0.5})
    with pytest.raises(KeyboardInterrupt):
        tuner.search(words, tuner.SearchOptions(trials=1, storage=store, study="c", baselines=False), runner=runner)
    tuner.search(words, tuner.SearchOptions(trials=1, storage=store, study="c", baselines=False), runner=runner)
    assert runner.kwargs[1]["resume_from"] is None
    retry = _study(store, "c")[1]
    assert retry.user_attrs["retry_of"] == 0 and retry.user_attrs["resumed_from_epoch"] == 0
    assert _checkpoints(tmp_path, "c") == []


def test_failed_trials_delete_their_checkpoint_and_replays_write_none(store, tmp_path):
    words = ["space=basenet", "data=synthetic", "epochs=4"]
    runner = CheckpointingFake(raise_on=1)
    tuner.search(words, tuner.SearchOptions(trials=2, storage=store, study="f", baselines=False, max_failures=0),
                 runner=runner)
    assert [t.state.name for t in _study(store, "f")] == ["FAIL", "COMPLETE"]
    assert _checkpoints(tmp_path, "f") == []
    tuner.reevaluate(study="f", storage=store, top=1, seeds=1, runner=runner)
    assert runner.kwargs[-1].get("checkpoint_dir") is None


def test_a_runner_without_the_checkpoint_arguments_still_works(store):
    calls = []

    def old_runner(space, params, data, *, seed, model_path, on_epoch=None, should_stop=None, spec_options=None,
                   feature_cache=None):
        calls.append(seed)
        return FakeRunner()(space, params, data, seed=seed, model_path=model_path)

    tuner.search(["space=basenet", "data=synthetic", "epochs=1"],
                 tuner.SearchOptions(trials=1, storage=store, study="o", baselines=False), runner=old_runner)
    assert calls and [t.state.name for t in _study(store, "o")] == ["COMPLETE"]


# -- out of memory ---------------------------------------------------------------------------------------------------
class ResourceExhaustedError(RuntimeError):
    """Named like TensorFlow's; the objective recognizes it without importing TensorFlow."""


@pytest.mark.parametrize("error", [
    ResourceExhaustedError("OOM when allocating tensor with shape[64,32,224,224]"),
    RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 1.2GiB"),  # JAX/XLA
    type("OutOfMemoryError", (RuntimeError,), {})("CUDA out of memory. Tried to allocate 2.00 GiB"),  # PyTorch
])
def test_an_out_of_memory_trial_records_its_batch_size_and_the_search_goes_on(store, error):
    class OomRunner(FakeRunner):
        def __call__(self, space, params, data, **kwargs):
            if not self.calls:
                self.calls.append((dict(params), 0))
                raise error
            return super().__call__(space, params, data, **kwargs)

    tuner.search(["space=basenet", "data=synthetic", "epochs=1", "batch_size=64"],
                 tuner.SearchOptions(trials=2, storage=store, study="oom", baselines=False), runner=OomRunner())
    records = tuner.trials(study="oom", storage=store).records
    assert [(r.state, r.reason) for r in records] == [("fail", "out of memory at batch size 64"), ("complete", None)]


def test_other_errors_keep_their_own_reason():
    from tuner.trial import fail_reason, is_out_of_memory

    assert fail_reason(ValueError("bad shape\nmore"), 32) == "ValueError: bad shape"
    assert not is_out_of_memory(ValueError("bad shape"))
    try:
        try:
            raise ResourceExhaustedError("OOM")
        except ResourceExhaustedError as exc:
            raise RuntimeError("training failed") from exc
    except RuntimeError as wrapped:
        assert fail_reason(wrapped, 16) == "out of memory at batch size 16"  # also when wrapped


def test_a_real_tensorflow_out_of_memory_error_is_recognized():
    tf = pytest.importorskip("tensorflow")
    from tuner.trial import fail_reason

    with pytest.raises(Exception) as info:
        tf.zeros((1 << 40,), dtype=tf.float32)  # 4 TiB: no allocator grants it
    assert type(info.value).__name__ == "ResourceExhaustedError"
    assert fail_reason(info.value, 128) == "out of memory at batch size 128"


# -- real processes --------------------------------------------------------------------------------------------------
def _meta_epoch(folder: Path) -> int:
    meta = _checkpoint.read_meta(folder)
    return 0 if meta is None else int(meta["epoch"])


def _wait_for_epoch(folder: Path, epoch: int, proc: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while _meta_epoch(folder) < epoch:
        if proc.poll() is not None:
            pytest.fail(f"the process ended first:\n{proc.communicate()[0][-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"no checkpoint of epoch {epoch} in {folder} after {timeout} s")
        time.sleep(0.05)


@pytest.mark.slow
def test_the_trial_of_a_killed_worker_resumes_from_its_checkpoint(store, tmp_path, monkeypatch):
    monkeypatch.setenv("CNNTUNE_HEARTBEAT_INTERVAL", "1")
    monkeypatch.setenv("CNNTUNE_GRACE_PERIOD", "2")
    # The study and its first trial, without training; the worker then runs trial 1 for real.
    tuner.search(SLOW_SYN, tuner.SearchOptions(trials=2, storage=store, study="k", baselines=False, timeout=0.001),
                 runner=FakeRunner())
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.Popen([sys.executable, "-m", "tuner.cli", "worker", "--study", "k", "--storage", store, "-q"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    folder = tmp_path / "cnntune_artifacts" / "k" / "checkpoints" / "trial_0001"
    try:
        _wait_for_epoch(folder, 3, proc)
        proc.kill()  # SIGKILL: no chance to record anything
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    reached = _meta_epoch(folder)  # 3, unless the worker finished another epoch before the signal landed
    assert 3 <= reached < 6
    time.sleep(3)  # past the grace period
    tuner.worker("k", store)
    records = tuner.trials(study="k", storage=store).records
    assert [r.state for r in records] == ["complete", "fail", "complete"]
    retry = records[2]
    assert retry.tags["retry_of"] == 1 and retry.params == records[1].params
    trial = _study(store, "k")[2]
    assert trial.user_attrs["resumed_from_epoch"] == reached
    assert len(retry.history["loss"]) == 6 and retry.epochs_run == 6
    assert retry.best_epoch == retry.history["val_accuracy"].index(max(retry.history["val_accuracy"])) + 1
    assert _checkpoints(tmp_path, "k") == []


@pytest.mark.slow
def test_sigterm_stops_a_search_within_seconds_and_the_same_command_resumes(store, tmp_path):
    args = ["search", *SLOW_SYN, "--trials", "1", "--no-baselines", "--study", "t", "--storage", store, "-q"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.Popen([sys.executable, "-m", "tuner.cli", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    folder = tmp_path / "cnntune_artifacts" / "t" / "checkpoints" / "trial_0000"
    try:
        _wait_for_epoch(folder, 2, proc)
        time.sleep(0.3)  # in the middle of an epoch
        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=60)
        took = time.monotonic() - signalled
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, output
    assert took < 10, f"{took:.1f} s from SIGTERM to exit"
    reached = _meta_epoch(folder)
    assert 2 <= reached < 6
    result = run_cli(*args)
    assert result.exit_code == 0, result.output
    first, retry = _study(store, "t")
    assert first.user_attrs["fail_reason"] == "interrupted" and retry.user_attrs["retry_of"] == 0
    assert retry.state.name == "COMPLETE" and retry.user_attrs["resumed_from_epoch"] == reached
    history = retry.user_attrs["history"]
    assert len(history["loss"]) == 6 and retry.user_attrs["epochs_run"] == 6
    assert _checkpoints(tmp_path, "t") == []
