"""The Keras Tuner engine (local and chief/workers), the Optuna worker, and a PostgreSQL study store."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import uuid

import pytest
from typer.testing import CliRunner

import tuner
from conftest import SYN
from tuner.cli import app
from tuner.store import HEARTBEAT_INTERVAL, open_storage



@pytest.mark.parametrize("kind", ["random", "bayesian", "hyperband", "grid"])
def test_each_keras_tuner_tuner_records_its_trials_in_the_study(store, kind):
    # A finite space for the grid: learning rate pinned, optimizer x batch size walked.
    words = ["space=basenet", *SYN, "learning_rate=0.001"] if kind == "grid" else ["space=basenet", *SYN]
    tuner.search(words,
                 tuner.SearchOptions(trials=2, storage=store, study=kind, engine="keras-tuner", tuner=kind, seed=1))
    view = tuner.trials(study=kind, storage=store)
    records = view.records
    # Hyperband decides its own number of trials (brackets); the budget caps it.
    assert (1 if kind == "hyperband" else 2) <= len(records) - 1 <= 2
    first = records[0]
    assert first.baseline == "basenet" and first.params["learning_rate"] == 0.001
    for rec in records:
        assert rec.state == "complete" and rec.tags["engine"] == "keras-tuner"
        assert 0.0 <= rec.val_accuracy <= 1.0 and rec.test_accuracy is not None and rec.n_params > 0
        assert rec.backend == "tensorflow" and rec.history["val_accuracy"] and os.path.isfile(rec.model_path)
        assert rec.params["epochs"] == 1
    assert view.meta["search"]["engine"] == "keras-tuner" and view.meta["search"]["tuner"] == kind
    # Keras Tuner's project (its oracle state) lives next to the study's model files.
    assert os.path.isfile(os.path.join(view.meta["artifacts"], "keras_tuner", "oracle.json"))
    if kind == "random":
        result = CliRunner().invoke(app, ["trials", "--study", kind, "--storage", store], env={"COLUMNS": "300"})
        assert result.exit_code == 0 and result.output.count("complete") == 3
        exported = CliRunner().invoke(app, ["best", "--study", kind, "--storage", store, "--export", "m.keras"])
        assert exported.exit_code == 0 and os.path.isfile("m.keras")
        # Resuming with a larger budget continues the same Keras Tuner project.
        tuner.search(words,
                     tuner.SearchOptions(trials=3, storage=store, study=kind, engine="keras-tuner", tuner=kind, seed=1))
        again = tuner.trials(study=kind, storage=store).records
        assert len(again) == 4 and [r.baseline for r in again].count("basenet") == 1


def test_keras_tuner_engine_honours_the_timeout(store):
    # Like the Optuna engine: the first trial finishes, no other starts.
    tuner.search(["space=basenet", *SYN],
                 tuner.SearchOptions(trials=5, storage=store, study="kt-t", engine="keras-tuner", baselines=False,
                                     timeout=0.001))
    records = tuner.trials(study="kt-t", storage=store).records
    assert len(records) == 1 and records[0].state == "complete"


def test_keras_tuner_grid_rejects_a_continuous_choice(store):
    with pytest.raises(tuner.SpaceError, match="--tuner grid needs a finite space"):
        tuner.search(["space=basenet", *SYN],
                     tuner.SearchOptions(trials=2, storage=store, engine="keras-tuner", tuner="grid"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.e2e
@pytest.mark.slow
def test_keras_tuner_chief_and_two_workers_finish_and_exit(tmp_path):
    db = f"sqlite:///{tmp_path / 'dist.db'}"
    chief = f"127.0.0.1:{_free_port()}"
    base = [sys.executable, "-m", "tuner.cli"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    common = ["--study", "dist", "--storage", db, "--engine", "keras-tuner", "--chief", chief, "-q"]
    procs = [subprocess.Popen(base + ["search", "space=basenet", *SYN, "--trials", "4", "--no-baselines", *common],
                              cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)]
    for wid in ("tuner0", "tuner1"):
        procs.append(subprocess.Popen(base + ["worker", *common, "--worker-id", wid], cwd=tmp_path, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = []
    try:
        deadline = time.monotonic() + 150  # everything stops by itself well before this
        for proc in procs:
            out, _ = proc.communicate(timeout=max(deadline - time.monotonic(), 1))
            outputs.append(out)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    assert [p.returncode for p in procs] == [0, 0, 0], "\n---\n".join(o[-3000:] for o in outputs)
    records = tuner.trials(study="dist", storage=db).records
    assert len(records) == 4 and all(r.state == "complete" for r in records)
    # Each Keras Tuner trial ran exactly once, on one of the two workers.
    import optuna

    ids = sorted(int(t.user_attrs["kt_trial_id"]) for t in optuna.load_study(study_name="dist", storage=db).trials)
    assert ids == [0, 1, 2, 3] and sorted(r.seed for r in records) == [0, 1, 2, 3]


def test_an_optuna_worker_joins_a_study_and_stops_at_its_budget(store):
    # The search stops after its first trial (timeout); a worker finishes the study's budget of 3.
    tuner.search(["space=basenet", *SYN],
                 tuner.SearchOptions(trials=3, storage=store, study="w", baselines=False, timeout=0.001,
                                     pruner="median", warm_start=0))  # no queued warm starts: the worker's sampler proposes the rest
    assert len(tuner.trials(study="w", storage=store).records) == 1
    result = CliRunner().invoke(app, ["worker", "--study", "w", "--storage", store, "-q"])
    assert result.exit_code == 0, result.output
    records = tuner.trials(study="w", storage=store).records
    assert [r.state for r in records] == ["complete"] * 3
    again = tuner.worker("w", store)
    assert again.ran == []


def test_a_worker_needs_a_started_study(store, tmp_path):
    result = CliRunner().invoke(app, ["worker", "--study", "nothing", "--storage", store])
    assert result.exit_code == 1 and "no study store at" in result.output
    assert not (tmp_path / "studies.db").exists()  # joining never creates a store
    import optuna

    optuna.create_study(storage=store, study_name="other")
    result = CliRunner().invoke(app, ["worker", "--study", "nothing", "--storage", store])
    assert result.exit_code == 1 and "no study named 'nothing'" in result.output


# Database servers for the storage tests: CI sets both (.ci/run); a test whose variable is set fails, never skips,
# when its server cannot be used.
SERVERS = {"postgresql": "CNNTUNE_TEST_POSTGRES_URL", "mysql": "CNNTUNE_TEST_MYSQL_URL"}


@pytest.mark.parametrize("server", sorted(SERVERS))
def test_search_on_a_database_server_store(server, tmp_path, monkeypatch):
    url = os.environ.get(SERVERS[server])
    if not url:
        pytest.skip(f"{SERVERS[server]} is not set: no {server} server to test against")
    import optuna

    monkeypatch.chdir(tmp_path)
    name = f"cnntune-test-{uuid.uuid4().hex[:12]}"
    try:
        tuner.search(["space=basenet", *SYN], tuner.SearchOptions(trials=1, storage=url, study=name))
        records = tuner.trials(study=name, storage=url).records
        assert [r.state for r in records] == ["complete", "complete"] and records[0].baseline == "basenet"
        # Heartbeats are on for database storages, so a killed worker's trial would be retried.
        storage = open_storage(url, heartbeat=True)
        assert storage.get_heartbeat_interval() == HEARTBEAT_INTERVAL
    finally:
        with contextlib.suppress(KeyError):
            optuna.delete_study(study_name=name, storage=open_storage(url))


@pytest.mark.slow
def test_the_trial_of_a_killed_worker_is_retried(store, monkeypatch):
    import optuna

    monkeypatch.setenv("CNNTUNE_HEARTBEAT_INTERVAL", "1")
    monkeypatch.setenv("CNNTUNE_GRACE_PERIOD", "2")
    words = ["space=basenet", "data=synthetic", "epochs=8", "learning_rate=0.001"]
    tuner.search(words, tuner.SearchOptions(trials=2, storage=store, study="k", baselines=False, timeout=0.001))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.Popen([sys.executable, "-m", "tuner.cli", "worker", "--study", "k", "--storage", store, "-q"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            # Running, and training: its configuration is recorded (a trial just created may still be checking
            # its place in the budget).
            trials = optuna.load_study(study_name="k", storage=store).get_trials(deepcopy=False)
            if any(t.state == optuna.trial.TrialState.RUNNING and "config" in t.user_attrs for t in trials):
                break
            time.sleep(0.2)
        proc.kill()  # SIGKILL: no chance to record anything
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    time.sleep(3)  # past the grace period
    tuner.worker("k", store)
    records = tuner.trials(study="k", storage=store).records
    assert [r.state for r in records] == ["complete", "fail", "complete"]
    assert records[2].tags["retry_of"] == 1 and records[2].params == records[1].params


def test_keras_tuner_hyperband_continues_promoted_trials_from_their_last_round(store):
    import optuna

    # max_epochs 3: three 1-epoch trials, then the best of them promoted to 3 epochs (Keras Tuner's brackets).
    tuner.search(["space=basenet", "data=synthetic", "epochs=3"],
                 tuner.SearchOptions(trials=4, storage=store, study="hb", engine="keras-tuner", tuner="hyperband",
                                     baselines=False, seed=1))
    trials = optuna.load_study(study_name="hb", storage=store).trials
    assert [t.state.name for t in trials] == ["COMPLETE"] * 4
    first_round, (promoted,) = trials[:3], trials[3:]
    assert all(len(t.user_attrs["history"]["loss"]) == 1 for t in first_round)
    previous = next(t for t in first_round if t.user_attrs["kt_trial_id"] == promoted.user_attrs["continued_from"])
    assert promoted.user_attrs["continue_from"] == previous.user_attrs["model_path"]
    # It trains epochs 2 and 3 only, on top of the weights its first round ended with.
    assert promoted.user_attrs["initial_epoch"] == 1 and promoted.user_attrs["config"]["epochs"] == 3
    assert len(promoted.user_attrs["history"]["loss"]) == 2 and promoted.user_attrs["epochs_run"] == 3
    assert promoted.user_attrs["best_epoch"] in (2, 3)
    assert promoted.user_attrs["config"]["learning_rate"] == previous.user_attrs["config"]["learning_rate"]


def test_a_trial_continues_from_a_saved_model(tmp_path):
    import keras
    import numpy as np

    import search_spaces
    from tuner.data import load_dataset
    from tuner.hp import Defaults, resolve
    from tuner.trial import run_trial

    space = search_spaces.basenet
    data = load_dataset("synthetic")
    params = {**resolve(space, Defaults()), "epochs": 1}
    first = run_trial(space, params, data, seed=0, model_path=tmp_path / "first.keras")
    # Two epochs, the first of them already trained; at a learning rate of 1e-9 the weights barely move.
    frozen = {**params, "epochs": 2, "learning_rate": 1e-9}
    cont = run_trial(space, frozen, data, seed=5, model_path=tmp_path / "cont.keras", initial_epoch=1,
                     continue_from=first.model_path)
    fresh = run_trial(space, frozen, data, seed=5, model_path=tmp_path / "fresh.keras", initial_epoch=1)
    assert len(cont.history["loss"]) == 1 and cont.best_epoch == 2 and cont.epochs_run == 2

    def weights(path):
        return keras.saving.load_model(path).get_weights()

    for a, b in zip(weights(first.model_path), weights(cont.model_path)):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert not all(np.allclose(a, b, atol=1e-3) for a, b in zip(weights(first.model_path), weights(fresh.model_path)))
    assert cont.val_accuracy == pytest.approx(first.val_accuracy, abs=0.02)
