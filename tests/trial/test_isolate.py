"""Each trial in its own process (``tuner.trial.isolated``): same measurements, relayed hooks, crashes recorded as failures.

The runners handed to the child live in ``tests/isolate_helpers.py`` (a child imports them by name); most of them
train nothing, so a child starts in a fraction of a second. The tests that train BaseNet import TensorFlow in
every child (a few seconds each) and are marked slow.
"""

from __future__ import annotations

import inspect
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import isolate_helpers as helpers
import tuner
from conftest import PLANTED, ROOT, SYN
from search_spaces import basenet
from tuner.data import load_dataset
from tuner.errors import CnntuneError
from tuner.hp import Defaults, resolve
from tuner.signals import interruptible
from tuner.trial import ChildError, IsolatedRunner, TrialCrashed, crash_reason, isolated
from tuner.trial import fail_reason
from tuner.trial import TrialDiverged, run_trial



@pytest.fixture(scope="module")
def data():
    return load_dataset("synthetic")


def basenet_params(epochs: int) -> dict:
    return resolve(basenet, Defaults({"epochs": epochs}))


# -- the same trial, in-process and isolated ----------------------------------------------------------------------
@pytest.mark.slow
def test_an_isolated_basenet_trial_measures_exactly_what_an_in_process_one_does(data, tmp_path):
    params = basenet_params(2)
    here = run_trial(basenet, params, data, seed=3, model_path=tmp_path / "here.keras")
    there = isolated()(basenet, params, data, seed=3, model_path=tmp_path / "there.keras")
    # TensorFlow on one machine is bit-identical across processes for a fixed seed: compare exactly.
    assert there.val_accuracy == here.val_accuracy
    assert there.test_accuracy == here.test_accuracy
    assert there.history == here.history and len(there.history["val_accuracy"]) == 2
    assert (there.best_epoch, there.epochs_run, there.n_params, there.backend) == (
        here.best_epoch, here.epochs_run, here.n_params, here.backend)
    assert there.model_path == str(tmp_path / "there.keras") and Path(there.model_path).is_file()
    assert there.extra["isolate_seconds"] > 0 and "isolate_seconds" not in here.extra


@pytest.mark.slow
def test_a_stop_after_epoch_1_of_3_stops_the_child_after_epoch_1(data, tmp_path):
    seen, asked = [], []

    def should_stop(epoch, logs):
        asked.append(epoch)
        return epoch == 1

    out = isolated()(basenet, basenet_params(3), data, seed=0, model_path=None,
                     on_epoch=lambda epoch, logs: seen.append((epoch, sorted(logs))), should_stop=should_stop)
    assert out.epochs_run == 1 and len(out.history["loss"]) == 1
    assert seen == [(1, ["accuracy", "loss", "val_accuracy", "val_loss"])] and asked == [1]


@pytest.mark.slow
def test_an_isolated_search_records_the_trial_an_in_process_search_records(store):
    words = ["space=basenet", *SYN]
    tuner.search(words, tuner.SearchOptions(trials=1, baselines=False, study="here", storage=store, seed=4))
    tuner.search(words, tuner.SearchOptions(trials=1, baselines=False, study="there", storage=store, seed=4),
                 runner=isolated())
    here, there = (tuner.trials(study=name, storage=store).records[0] for name in ("here", "there"))
    assert there.state == here.state == "complete"
    assert (there.params, there.val_accuracy, there.history) == (here.params, here.val_accuracy, here.history)


def test_hooks_are_called_in_the_parent_in_the_childs_order(data):
    calls = []
    main_pid = os.getpid()

    def on_epoch(epoch, logs):
        calls.append(("epoch", epoch, logs["val_accuracy"], os.getpid()))

    def should_stop(epoch, logs):
        calls.append(("stop?", epoch, logs["val_accuracy"], os.getpid()))
        return epoch == 2

    out = isolated(helpers.epochs)(basenet, {"epochs": 5}, data, seed=0, model_path=None, on_epoch=on_epoch,
                                   should_stop=should_stop)
    assert out.epochs_run == 2
    assert calls == [("epoch", 1, 0.1, main_pid), ("stop?", 1, 0.1, main_pid),
                     ("epoch", 2, 0.2, main_pid), ("stop?", 2, 0.2, main_pid)]


def test_a_hook_that_raises_in_the_parent_ends_the_trial_with_that_exception(data):
    def on_epoch(epoch, logs):
        raise ValueError("storage went away")

    with pytest.raises(ValueError, match="storage went away"):
        isolated(helpers.epochs)(basenet, {"epochs": 3}, data, seed=0, model_path=None, on_epoch=on_epoch)


# -- what the child receives ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("space_name", ["basenet", PLANTED])
def test_the_child_gets_the_space_the_data_memory_mapped_and_every_keyword(data, tmp_path, space_name):
    from search_spaces import get_space

    space = get_space(space_name)  # a registered module, or a user's file loaded under a made-up module name
    runner = IsolatedRunner(helpers.describe, workdir=tmp_path)
    keywords = dict(spec_options={"weights": "none"}, feature_cache=str(tmp_path / "fc"), initial_epoch=2,
                    continue_from="trial_0001.keras", checkpoint_dir=str(tmp_path / "ck"), resume_from=None)
    out = runner(space, {"lr": 0.1}, data, seed=7, model_path=str(tmp_path / "m.keras"), **keywords)
    got = out.extra
    assert got["space"] == space.NAME and got["space_module"] == space.__name__
    assert got["pid"] != os.getpid()
    assert (got["params"], got["seed"], got["model_path"]) == ({"lr": 0.1}, 7, str(tmp_path / "m.keras"))
    assert got["kwargs"] == dict(sorted(keywords.items()))
    assert got["fingerprint"] == data.fingerprint and got["classes"] == data.class_names
    assert got["pixels"] == int(data.x_train.sum()) + int(data.x_val.sum()) + int(data.x_test.sum())
    assert got["labels"] == data.y_train.tolist() + data.y_val.tolist() + data.y_test.tolist()
    assert got["mapped"]  # the child reads the parent's .npy files, it does not load the dataset again
    # The dataset is written once per runner, not per trial.
    files = sorted(tmp_path.glob("cnntune-isolate-*/*/*.npy"))
    assert len(files) == 6
    stamps = [f.stat().st_mtime_ns for f in files]
    runner(space, {}, data, seed=8, model_path=None)
    assert [f.stat().st_mtime_ns for f in sorted(tmp_path.glob("cnntune-isolate-*/*/*.npy"))] == stamps


def test_the_isolated_runner_takes_the_keywords_its_inner_runner_takes():
    # Callers that check which keywords a runner accepts (checkpointing) see the inner runner's signature.
    assert inspect.signature(isolated(run_trial)).parameters.keys() == inspect.signature(run_trial).parameters.keys()
    assert "checkpoint_dir" not in inspect.signature(isolated(helpers.oom_killed)).parameters


def test_a_keyword_that_cannot_reach_the_child_is_one_clear_error(data):
    with pytest.raises(CnntuneError, match=r"cannot send extra_callbacks= to its process"):
        isolated(helpers.describe)(basenet, {}, data, seed=0, model_path=None, extra_callbacks=[lambda: None])


# -- a child that dies, and exceptions that come back -----------------------------------------------------------------
def test_a_child_killed_by_sigkill_raises_a_crash_that_names_the_oom_killer(data):
    with pytest.raises(TrialCrashed) as info:
        isolated(helpers.oom_killed)(basenet, {}, data, seed=0, model_path=None)
    assert isinstance(info.value, CnntuneError)
    assert info.value.exitcode == -signal.SIGKILL
    assert str(info.value) == ("trial process killed by SIGKILL (the kernel's OOM killer sends it when memory runs "
                               "out)")


@pytest.mark.parametrize("runner, reason", [
    (helpers.segfault, "trial process crashed with SIGSEGV"),
    (helpers.exit_3, "trial process exited with code 3 without a result"),
])
def test_a_segfault_or_a_silent_exit_is_a_crash_with_its_reason(data, runner, reason):
    with pytest.raises(TrialCrashed) as info:
        isolated(runner)(basenet, {}, data, seed=0, model_path=None)
    assert str(info.value) == reason


def test_crash_reasons():
    assert crash_reason(-signal.SIGTERM) == "trial process killed by SIGTERM"
    assert crash_reason(-signal.SIGABRT) == "trial process crashed with SIGABRT"
    assert crash_reason(1) == "trial process exited with code 1 without a result"


def test_a_killed_trial_is_recorded_as_failed_with_its_reason_and_the_search_goes_on(store):
    tuner.search(["space=basenet", *SYN], tuner.SearchOptions(trials=2, baselines=False, study="oom", storage=store),
                 runner=isolated(helpers.oom_killed_first_seed))
    records = tuner.trials(study="oom", storage=store).records
    assert [(r.state, r.reason) for r in records] == [
        ("fail", "TrialCrashed: trial process killed by SIGKILL (the kernel's OOM killer sends it when memory runs "
                 "out)"),
        ("complete", None),
    ]
    assert records[1].val_accuracy == 0.6


def test_a_diverged_trial_comes_back_with_its_epoch_and_history(data):
    with pytest.raises(TrialDiverged) as info:
        isolated(helpers.diverge)(basenet, {}, data, seed=0, model_path=None)
    assert str(info.value) == "diverged at epoch 2" and info.value.epoch == 2
    assert info.value.history == {"loss": [1.5, float("inf")], "val_accuracy": [0.25, 0.25]}


def test_other_exceptions_keep_their_type_fields_and_the_childs_traceback(data):
    with pytest.raises(helpers.LocalOnly) as info:
        isolated(helpers.raise_custom)(basenet, {}, data, seed=0, model_path=None)
    assert info.value.code == 7 and str(info.value) == "code 7: custom failure"
    assert "raise_custom" in str(info.value.__cause__)  # where it was raised, in the child

    # A class the parent cannot import comes back as a ChildError of the same name: the record reads the same.
    with pytest.raises(ChildError) as info:
        isolated(helpers.raise_unbuildable)(basenet, {}, data, seed=0, model_path=None)
    assert fail_reason(info.value) == "Unimportable: from a local class"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_in_the_parent_ends_the_child_at_once(data, tmp_path, signum):
    pid_file = tmp_path / "child.pid"

    def interrupt_when_the_child_runs():
        deadline = time.monotonic() + 30
        while not pid_file.exists() or not pid_file.read_text():
            if time.monotonic() > deadline:
                return
            time.sleep(0.05)
        os.kill(os.getpid(), signum)

    threading.Thread(target=interrupt_when_the_child_runs, daemon=True).start()
    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        with interruptible():
            isolated(helpers.sleep_forever)(basenet, {}, data, seed=0, model_path=str(pid_file))
    assert time.monotonic() - start < 20
    child = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):  # terminated and reaped, not left sleeping
        os.kill(child, 0)


def _gone(pid: int) -> bool:
    """The process has exited (a zombie nobody reaped counts as exited)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):
        return True


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")
def test_a_child_does_not_outlive_a_parent_killed_by_sigkill(tmp_path):
    # A worker SIGKILLed by a scheduler (or the OOM killer) must not leave its trial training on the GPU.
    pid_file = tmp_path / "child.pid"
    code = ("import sys; sys.path.insert(0, 'tests'); import isolate_helpers as h; from search_spaces import basenet; "
            "from tuner.trial._isolate import isolated; "
            f"isolated(h.sleep_forever)(basenet, {{}}, None, seed=0, model_path={str(pid_file)!r})")
    parent = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        while not (pid_file.exists() and pid_file.read_text()):
            assert parent.poll() is None and time.monotonic() < deadline, "the child never started"
            time.sleep(0.05)
        child = int(pid_file.read_text())
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 15
        while not _gone(child) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _gone(child)
    finally:
        parent.kill()
        parent.wait()


@pytest.mark.slow
def test_search_isolate_runs_each_trial_in_a_child_and_workers_inherit_it(store):
    import optuna

    import tuner
    from conftest import SYN
    from tuner.store import study_meta

    tuner.search(["space=basenet", *SYN],
                 tuner.SearchOptions(trials=1, storage=store, study="iso", baselines=False, isolate=True))
    study = optuna.load_study(study_name="iso", storage=store)
    (trial,) = study.trials
    assert trial.state.name == "COMPLETE" and trial.user_attrs["isolate_seconds"] > 0
    assert tuner.SearchOptions.from_meta(study_meta(study), "iso").isolate is True
