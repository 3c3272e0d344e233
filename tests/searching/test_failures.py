"""Trials that go wrong never stop a search: divergence, exceptions, pruning, Ctrl-C/SIGTERM and resume, seeds."""

from __future__ import annotations

import gc
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import tuner
from conftest import PLANTED, SYN, FakeRunner, run_cli
from tuner.cli import app
from tuner.records import FailureKind
from tuner.signals import interruptible

# Grid seed 5 walks plant = none, diverge, raise, flat (in that order).
PLANTED_WORDS = [f"space={PLANTED}", "data=synthetic", "learning_rate=0.003"]


def test_diverging_and_raising_trials_fail_with_their_reason_and_the_search_goes_on(store):
    import optuna

    # ASHA prunes the flat trial at its first rung (epoch 2): it is far below the healthy trial measured before it.
    tuner.search([*PLANTED_WORDS, "epochs=3"],
                 tuner.SearchOptions(trials=4, storage=store, study="plant", sampler="grid", seed=5, pruner="asha"))
    records = {r.params["plant"]: r for r in tuner.trials(study="plant", storage=store).records}
    assert records["none"].state == "complete" and records["none"].val_accuracy > 0.9
    assert records["diverge"].state == "fail" and records["diverge"].reason == "diverged at epoch 1"
    assert records["diverge"].history["loss"]  # what it trained before diverging is kept
    assert records["raise"].state == "fail"
    assert records["raise"].reason == "RuntimeError: planted build failure"
    flat = records["flat"]
    assert flat.state == "pruned" and flat.reason == "pruned at epoch 2"
    assert len(flat.history["val_accuracy"]) == 2 and flat.val_accuracy == pytest.approx(
        max(flat.history["val_accuracy"]))
    assert flat.epochs_run == 2
    # Each way of ending is stored as its kind beside its message, and read back as such.
    kinds = {plant: r.kind for plant, r in records.items()}
    assert kinds == {"none": None, "diverge": FailureKind.DIVERGED, "raise": FailureKind.ERROR,
                     "flat": FailureKind.PRUNED}
    stored = {t.params.get("plant"): t.user_attrs.get("fail_kind")
              for t in optuna.load_study(study_name="plant", storage=store).trials}
    assert stored == {"none": None, "diverge": "diverged", "raise": "error", "flat": "pruned"}
    view = tuner.trials(study="plant", storage=store)
    assert view.meta["search"]["pruner"] == "asha"
    result = CliRunner().invoke(app, ["trials", "--study", "plant", "--storage", store], env={"COLUMNS": "300"})
    assert "pruned" in result.output and "diverged at epoch 1" in result.output


def test_consecutive_failures_stop_the_search_with_one_line(store):
    result = CliRunner().invoke(app, ["search", *PLANTED_WORDS, "plant=raise", "--trials", "5",
                                      "--max-failures", "2", "--storage", store, "--study", "planted", "-q"])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: search stopped: 2 consecutive trials failed")
    assert "planted build failure" in lines[0]
    assert len(tuner.trials(study="planted", storage=store).records) == 2


def test_keras_tuner_engine_also_stops_after_consecutive_failures(store):
    with pytest.raises(tuner.CnntuneError, match="consecutive"):
        tuner.search([f"space={PLANTED}", "data=synthetic", "plant=raise"],
                     tuner.SearchOptions(trials=5, storage=store, study="ktfail", engine="keras-tuner", max_failures=2))
    records = tuner.trials(study="ktfail", storage=store).records
    assert len(records) == 2 and all(r.reason == "RuntimeError: planted build failure" for r in records)


def _states(db: Path, study: str) -> list[tuple[int, str]]:
    if not db.exists():
        return []
    try:
        with sqlite3.connect(db) as con:
            return con.execute(
                "SELECT t.number, t.state FROM trials t JOIN studies s ON s.study_id = t.study_id "
                "WHERE s.study_name = ? ORDER BY t.number", (study,)).fetchall()
    except sqlite3.OperationalError:  # the search is still creating its tables
        return []


@pytest.mark.slow
def test_sigint_leaves_a_resumable_study_and_the_interrupted_trial_is_retried(tmp_path):
    db = tmp_path / "int.db"
    cmd = [sys.executable, "-m", "tuner.cli", "search", "space=basenet", "data=synthetic", "epochs=4",
           "--trials", "3", "--no-baselines", "--study", "int", "--storage", f"sqlite:///{db}", "-q"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 90
    try:
        # Interrupt once a trial has completed and the next one is running.
        while time.monotonic() < deadline:
            states = _states(db, "int")
            if any(s == "COMPLETE" for _, s in states) and states[-1][1] == "RUNNING":
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"the search never reached a second trial: {states}")
        time.sleep(0.3)  # inside the trial's build/fit, well before its 4 epochs end
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, output
    assert "interrupted" in output
    before = tuner.trials(study="int", storage=f"sqlite:///{db}").records
    completed = {r.number for r in before if r.state == "complete"}
    interrupted = [r for r in before if r.reason == "interrupted"]
    assert completed and len(interrupted) == 1 and interrupted[0].state == "fail"
    # Rerunning the same command resumes: the interrupted trial is retried with its values; nothing is lost.
    tuner.search(["space=basenet", "data=synthetic", "epochs=4"],
                 tuner.SearchOptions(trials=3, baselines=False, study="int", storage=f"sqlite:///{db}"))
    after = tuner.trials(study="int", storage=f"sqlite:///{db}").records
    assert completed <= {r.number for r in after if r.state == "complete"}
    retry = [r for r in after if r.tags.get("retry_of") == interrupted[0].number]
    assert len(retry) == 1 and retry[0].state == "complete"
    assert {k: v for k, v in retry[0].params.items()} == interrupted[0].params
    searched = [r for r in after if r.state == "complete"]
    assert len(searched) == 3  # the budget: the retry counts, the interrupted trial does not


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_sigint_and_sigterm_raise_keyboard_interrupt_and_handlers_are_restored(signum):
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    with pytest.raises(KeyboardInterrupt):
        with interruptible():
            os.kill(os.getpid(), signum)
            time.sleep(5)
    assert {sig: signal.getsignal(sig) for sig in before} == before


class _SignalInFinalizer:
    """Its finalizer receives SIGINT: Python prints "Exception ignored in ..." and drops the KeyboardInterrupt,
    as happens when Ctrl-C lands while ``gc.collect()`` runs SQLAlchemy's or TensorFlow's weakref callbacks."""

    def __del__(self):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(2)  # the handler runs here and its KeyboardInterrupt is dropped with the finalizer


def _ctrl_c_swallowed_by_the_garbage_collector() -> None:
    item = _SignalInFinalizer()
    item.cycle = item
    del item
    gc.collect()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_ctrl_c_swallowed_between_trials_still_stops_the_search(store):
    class Runner(FakeRunner):
        def __call__(self, *args, **kwargs):
            out = super().__call__(*args, **kwargs)
            if len(self.calls) == 2:
                _ctrl_c_swallowed_by_the_garbage_collector()
            return out

    runner = Runner()
    with pytest.raises(KeyboardInterrupt):
        tuner.search(["space=basenet", *SYN], tuner.SearchOptions(trials=5, storage=store, study="gc", baselines=False),
                     runner=runner)
    # The trial in which Ctrl-C was pressed finished and is kept; no further trial started. The next search runs
    # the warm starts not yet run, then stops at the budget.
    assert len(runner.calls) == 2
    records = tuner.trials(study="gc", storage=store).records
    assert [(r.state, r.tags.get("warm_start")) for r in records] == [("complete", 0), ("complete", 1)]
    tuner.search(["space=basenet", *SYN], tuner.SearchOptions(trials=5, storage=store, study="gc", baselines=False),
                 runner=FakeRunner())
    records = tuner.trials(study="gc", storage=store).records
    assert [(r.state, r.tags.get("warm_start")) for r in records] == [("complete", i) for i in range(5)]


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_ctrl_c_swallowed_during_training_stops_the_trial_at_the_next_batch(store):
    from tuner.trial import run_trial

    def runner(space, params, data, *, on_epoch, **kwargs):
        def hook(epoch, logs):
            on_epoch(epoch, logs)
            if epoch == 1:
                _ctrl_c_swallowed_by_the_garbage_collector()

        return run_trial(space, params, data, on_epoch=hook, **kwargs)

    result = run_cli("search", "space=basenet", "data=synthetic", "epochs=3", "--trials", "2", "--no-baselines",
                     "--storage", store, "--study", "gc", "--quiet")
    assert result.exit_code == 0  # without a Ctrl-C the same command finishes
    with pytest.raises(KeyboardInterrupt):
        tuner.search(["space=basenet", "data=synthetic", "epochs=3"],
                     tuner.SearchOptions(trials=3, storage=store, study="gc", baselines=False), runner=runner)
    records = tuner.trials(study="gc", storage=store).records
    assert [(r.state, r.reason) for r in records] == [("complete", None), ("complete", None), ("fail", "interrupted")]


@pytest.mark.parametrize("engine", ["optuna", "keras-tuner"])
def test_the_same_seed_picks_the_same_values_in_the_same_order(store, engine):
    words = ["space=basenet", "data=synthetic", "epochs=1", "batch_size=64"]
    runs = []
    for name in ("a", "b"):
        tuner.search(words,
                     tuner.SearchOptions(trials=2, storage=store, study=f"{engine}-{name}", seed=11, baselines=False,
                                         engine=engine))
        runs.append([r.params for r in tuner.trials(study=f"{engine}-{name}", storage=store).records])
    assert runs[0] == runs[1] and len(runs[0]) == 2
    assert len({r["learning_rate"] for r in runs[0]}) == 2


def test_the_median_pruner_never_stops_a_trial_in_its_first_epoch():
    import optuna

    from tuner.searching.engines import make_pruner

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(direction="maximize", pruner=make_pruner("median"))
    for _ in range(3):  # the pruner's startup trials, all far better
        good = study.ask()
        good.report(0.9, 1)
        good.report(0.9, 2)
        study.tell(good, 0.9)
    bad = study.ask()
    bad.report(0.1, 1)  # epochs are reported as steps 1, 2, ...
    assert not bad.should_prune()
    bad.report(0.1, 2)
    assert bad.should_prune()
