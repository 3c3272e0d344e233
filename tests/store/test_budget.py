"""The budget of ``search --trials N`` (``tuner.store.Budget``): one authority for both engines and every worker; a
retried trial takes its predecessor's place, and only it; and how a trial ended is a stored kind, not a message."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

import tuner
from conftest import FakeRunner
from tuner.records import FailureKind, TrialRecord
from tuner.store import Budget

SLOW_SYN = ["space=basenet", "data=synthetic", "classes=50", "epochs=6", "learning_rate=0.001"]


def _rec(number: int, state: str = "complete", kind: FailureKind | None = None, **tags) -> TrialRecord:
    return TrialRecord(number=number, state=state, params={}, val_accuracy=0.5, kind=kind, tags=tags)


def test_a_dead_workers_trial_and_its_retry_hold_one_place():
    dead = _rec(0, "fail", FailureKind.WORKER_DIED)
    retry = _rec(1, "running", retry_of=0)
    budget = Budget(2)
    # One place is held (by the retry), one is free: the search goes on to a second trial.
    assert [r.number for r in budget.places([dead, retry])] == [1]
    assert budget.used([dead, retry]) == 0 and budget.left([dead, retry]) == 2
    assert not budget.full([dead, retry])
    done = [dead, _rec(1, retry_of=0)]
    assert budget.used(done) == 1 and not budget.full(done)
    assert budget.full([*done, _rec(2, "running")])
    # Trials running where the study does not show them yet (Keras Tuner's) count too.
    assert budget.full(done, elsewhere=1)


def test_interrupted_and_budget_full_trials_hold_no_place_and_a_chain_keeps_its_first_place():
    baseline = _rec(7)
    baseline.baseline = "basenet"
    records = [_rec(0, "fail", FailureKind.INTERRUPTED), _rec(1), _rec(2, "fail", FailureKind.BUDGET_FULL),
               _rec(3, "fail", FailureKind.WORKER_DIED, retry_of=0), _rec(4, "running", retry_of=3),
               _rec(5, "running"), baseline]
    budget = Budget(3)
    # 0 -> 3 -> 4 is one chain: its place is its first trial's (0), ahead of trial 1; the baseline holds none.
    assert [r.number for r in budget.places(records)] == [4, 1, 5]
    assert [budget.place(records, n) for n in (4, 1, 5, 2, 7)] == [0, 1, 2, 3, 3]
    assert budget.used(records) == 1 and budget.left(records) == 2
    assert budget.full(records)  # three places held, nothing queued
    assert not budget.full([*records, _rec(8, "waiting")])  # a queued trial runs first


@pytest.mark.parametrize("state, attrs, kind", [
    ("fail", {"fail_reason": "interrupted"}, FailureKind.INTERRUPTED),
    ("fail", {"fail_reason": "diverged at epoch 3"}, FailureKind.DIVERGED),
    ("fail", {"fail_reason": "out of memory at batch size 64"}, FailureKind.OUT_OF_MEMORY),
    ("fail", {"fail_reason": "TrialCrashed: trial process killed by SIGKILL"}, FailureKind.ERROR),
    ("fail", {"fail_reason": "RuntimeError: boom"}, FailureKind.ERROR),
    ("fail", {}, FailureKind.WORKER_DIED),
    ("fail", {"over_budget": True, "fail_reason": "not run: the study's budget was full"}, FailureKind.BUDGET_FULL),
    ("pruned", {"fail_reason": "pruned at epoch 2"}, FailureKind.PRUNED),
    ("pruned", {"fail_reason": "stopped at epoch 1: the search's time was up"}, FailureKind.TIME_UP),
    ("complete", {}, None),
    ("running", {}, None),
    # A stored kind wins over the message; an unknown one (a later cnntune's) is a failure all the same.
    ("fail", {"fail_kind": "crashed", "fail_reason": "TrialCrashed: ..."}, FailureKind.CRASHED),
    ("fail", {"fail_kind": "from-the-future", "fail_reason": "interrupted"}, FailureKind.ERROR),
])
def test_a_trials_kind_is_read_from_its_stored_kind_or_once_from_an_older_trials_message(state, attrs, kind):
    assert FailureKind.of(state, attrs) is kind
    assert TrialRecord.from_parts(0, state, None, attrs, {}).kind is kind


@pytest.mark.slow
def _postgres_url() -> str:
    url = os.environ.get("CNNTUNE_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("CNNTUNE_TEST_POSTGRES_URL is not set: no postgresql server to test against")
    return url


def _kill_mid_trial(args: list[str], folder: Path) -> None:
    """Runs ``cnntune ARGS`` until it has checkpointed an epoch it trained itself (a ``checkpoint.npz`` under
    ``folder`` written after it started), then kills it with SIGKILL and waits past the heartbeat grace (2 s)."""
    started = time.time()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.Popen([sys.executable, "-m", "tuner.cli", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while not any(p.stat().st_mtime > started for p in folder.glob("trial_*/checkpoint.npz")):
            if proc.poll() is not None:
                pytest.fail(f"the search ended first:\n{proc.communicate()[0][-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail("no checkpoint of an epoch after 120 s")
            time.sleep(0.1)
    finally:
        proc.kill()  # SIGKILL: nothing recorded, its trial stays "running" until its heartbeat is found stale
        proc.wait(timeout=30)
    time.sleep(3)  # past the grace period


def _search_killed(tmp_path, monkeypatch, trials: int, kills: int):
    """A ``--trials N`` search on PostgreSQL killed ``kills`` times mid-trial, each time run again, then run to its
    end (with a fake runner); returns the runner, the result, the study's records and each trial's user attributes."""
    url = _postgres_url()
    import optuna

    from tuner.store import open_storage

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CNNTUNE_HEARTBEAT_INTERVAL", "1")
    name = f"cnntune-kill-{uuid.uuid4().hex[:12]}"
    args = ["search", *SLOW_SYN, "--trials", str(trials), "--no-baselines", "--warm-start", "0",
            "--heartbeat-grace", "2", "--study", name, "--storage", url, "-q"]
    try:
        for _ in range(kills):
            _kill_mid_trial(args, tmp_path / "cnntune_artifacts" / name / "checkpoints")
        runner = FakeRunner()
        result = tuner.search([*SLOW_SYN],
                              tuner.SearchOptions(trials=trials, storage=url, study=name, baselines=False,
                                                  warm_start=0, heartbeat_grace=2), runner=runner)
        attrs = [t.user_attrs for t in optuna.load_study(study_name=name, storage=open_storage(url)).trials]
        return runner, result, tuner.trials(study=name, storage=url).records, attrs
    finally:
        with contextlib.suppress(KeyError):
            optuna.delete_study(study_name=name, storage=open_storage(url))


def test_a_killed_search_rerun_on_postgresql_ends_with_every_trial_of_its_budget(tmp_path, monkeypatch):
    """``--trials 2`` on PostgreSQL, the searching process killed (SIGKILL) while its first trial trains, then the
    same search again: the dead trial's retry takes its place and the study ends with 2 complete searched trials."""
    runner, result, records, _ = _search_killed(tmp_path, monkeypatch, trials=2, kills=1)
    assert [(r.number, r.state, r.kind) for r in records] == [
        (0, "fail", FailureKind.WORKER_DIED), (1, "complete", None), (2, "complete", None)]
    assert records[1].tags["retry_of"] == 0 and records[1].params == records[0].params
    assert len(runner.calls) == 2 and len(result.ran) == 2


@pytest.mark.e2e
def test_a_trial_preempted_three_times_keeps_its_place_and_resumes_each_time(tmp_path, monkeypatch):
    """``--trials 4`` on PostgreSQL, the worker killed three times mid-trial (each run resumes the dead run's trial
    from its checkpoint and trains another epoch before it dies): the study ends with 4 complete searched trials."""
    runner, result, records, attrs = _search_killed(tmp_path, monkeypatch, trials=4, kills=3)
    assert [(r.state, r.kind) for r in records] == [("fail", FailureKind.WORKER_DIED)] * 3 + [("complete", None)] * 4, [
        (r.number, r.state, r.kind, r.tags, a) for r, a in zip(records, attrs)]
    chain = records[:4]
    assert [r.tags.get("retry_of") for r in chain] == [None, 0, 1, 2]  # each names the run it replaces
    assert all(r.params == chain[0].params for r in chain)
    # Each retry resumed from its predecessor's checkpoint, one epoch further at least each time.
    resumed = [int(a.get("resumed_from_epoch") or 0) for a in attrs[:4]]
    assert resumed[0] == 0 and resumed[1] >= 1 and resumed[2] > resumed[1] and resumed[3] > resumed[2]
    assert len(runner.calls) == 4 and len(result.ran) == 4


def test_a_dead_trial_is_retried_while_it_makes_progress_and_twice_without():
    import optuna

    from tuner.store import EPOCH_REACHED, MAX_RETRY, RESUMED_FROM, retry_dead_trial

    study = optuna.create_study()
    dist = {"x": optuna.distributions.FloatDistribution(0, 1)}

    def die(trial, reached: int, resumed: int):
        """Retries ``trial`` as if its run had checkpointed epoch ``reached`` after resuming from ``resumed``."""
        trial.user_attrs.update({EPOCH_REACHED: reached, RESUMED_FROM: resumed})
        before = len(study.trials)
        retry_dead_trial(study, trial)
        return study.trials[-1] if len(study.trials) > before else None

    trial = optuna.create_trial(params={"x": 0.5}, distributions=dist, value=0.0)
    study.add_trial(trial)
    trial = study.trials[-1]
    for epoch in range(1, 6):  # five runs, each one epoch further: five retries, past MAX_RETRY
        trial = die(trial, epoch, epoch - 1)
        assert trial is not None and trial.params == {"x": 0.5} and trial.system_attrs["failed_trial"] == 0
    assert trial.system_attrs["retry_history"] == [0, 1, 2, 3, 4]
    for _ in range(MAX_RETRY):  # runs that die before their first new epoch: MAX_RETRY more retries
        trial = die(trial, 5, 5)
        assert trial is not None
    assert die(trial, 5, 5) is None


def test_a_surviving_worker_waits_for_a_dead_workers_trial_and_runs_its_retry(store, monkeypatch):
    """A trial of another worker holds the last place of ``--trials 2``; that worker dies (its heartbeat stops) after
    this one has run the other place: this one does not exit, it waits past the grace period, fails the dead trial
    and runs its retry, so the study ends with 2 complete searched trials."""
    import threading

    import optuna

    from tuner.store import create_or_load_study, open_storage

    monkeypatch.setenv("CNNTUNE_HEARTBEAT_INTERVAL", "1")
    words = ["space=basenet", "data=synthetic", "epochs=1"]
    options = tuner.SearchOptions(trials=2, storage=store, study="w", baselines=False, warm_start=0,
                                  heartbeat_grace=2)
    storage = open_storage(store, heartbeat=True, grace=2)
    elsewhere = create_or_load_study(storage, "w").ask()  # the other worker's trial, running
    first_done = threading.Event()

    def beat() -> None:  # the other worker's heartbeat, until this worker has finished a trial
        while not first_done.wait(0.3):
            storage.record_heartbeat(elsewhere._trial_id)

    class Signalling(FakeRunner):
        def __call__(self, *args, **kwargs):
            try:
                return super().__call__(*args, **kwargs)
            finally:
                first_done.set()

    storage.record_heartbeat(elsewhere._trial_id)
    beating = threading.Thread(target=beat)
    beating.start()
    try:
        started = time.monotonic()
        tuner.search(words, options, runner=Signalling())
        took = time.monotonic() - started
    finally:
        first_done.set()
        beating.join()
    records = tuner.trials(study="w", storage=store).records
    assert [(r.number, r.state, r.kind, r.tags.get("retry_of")) for r in records] == [
        (0, "fail", FailureKind.WORKER_DIED, None), (1, "complete", None, None), (2, "complete", None, 0)]
    assert took >= 2  # it waited out the grace period
    assert optuna.load_study(study_name="w", storage=storage).trials[2].system_attrs["failed_trial"] == 0
