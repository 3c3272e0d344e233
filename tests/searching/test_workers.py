"""Many workers on one study: an exact shared budget on every storage, ``search --workers/--gpus``, the grace period.

The budget tests run the workers as threads of this process with a runner that trains nothing, so that they hit the
storage as hard and as concurrently as possible (each thread opens its own storage connection, as a process would);
``test_search_with_two_worker_processes_end_to_end`` runs real ``cnntune worker`` processes that train.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
import uuid

import pytest

import tuner
from conftest import SYN, FakeRunner, fake_nvidia_smi, one_line_error, run_cli, storage_url
from tuner.errors import CnntuneError
from tuner.store import heartbeat_timing, open_storage


class SlowFake(FakeRunner):
    """Trains nothing, but takes a little time, so that workers overlap; accuracy varies by trial."""

    def __call__(self, space, params, data, **kwargs):
        time.sleep(0.05)
        return super().__call__(space, params, data, **kwargs)


@pytest.mark.e2e
@pytest.mark.parametrize("kind", ["journal", "postgresql", "mysql"])
@pytest.mark.parametrize("n_workers", [2, 4])
def test_workers_and_a_search_finish_an_exact_shared_budget(kind, n_workers, tmp_path, monkeypatch):
    import optuna

    monkeypatch.chdir(tmp_path)
    url = storage_url(kind, tmp_path)
    name = f"budget-{uuid.uuid4().hex[:10]}"
    trials = 3 * n_workers + 1
    words = ["space=basenet", *SYN]
    try:
        created = tuner.search(words, tuner.SearchOptions(trials=trials, storage=url, study=name, workers=0))
        assert created.ran == [] and "is ready" in created.message
        errors: list[BaseException] = []

        def work(i: int) -> None:
            try:
                if i == 0:  # a plain search beside the workers: the budget is shared by both kinds of process
                    tuner.search(words, tuner.SearchOptions(trials=trials, storage=url, study=name), runner=SlowFake())
                else:
                    tuner.worker(name, url, worker_id=f"t{i}", runner=SlowFake())
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(n_workers + 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        assert not errors, errors
        records = tuner.trials(study=name, storage=url).records
        searched = [r for r in records if r.baseline is None]
        assert len(searched) == trials
        assert [r.baseline for r in records if r.baseline] == ["basenet"]
        assert all(r.state == "complete" and r.val_accuracy is not None for r in records)
        assert all(r.params and r.seed is not None for r in records)
        numbers = [t.number for t in optuna.load_study(study_name=name, storage=open_storage(url)).trials]
        assert len(numbers) == len(set(numbers))
        # A worker that finds the budget spent runs nothing.
        again = tuner.worker(name, url, runner=SlowFake())
        assert again.ran == []
    finally:
        if kind != "journal":
            with contextlib.suppress(KeyError):
                optuna.delete_study(study_name=name, storage=open_storage(url))


def test_trials_created_past_the_budget_run_nothing_and_are_not_listed(store):
    import optuna

    tuner.search(["space=basenet", *SYN], tuner.SearchOptions(trials=1, storage=store, study="b", baselines=False),
                 runner=FakeRunner())
    study = optuna.load_study(study_name="b", storage=store)
    # Another process created a trial at the same moment as the one that took the last place.
    late = study.ask()
    from tuner.store import Budget, read_records

    assert Budget(1).place(read_records(study), late.number) == 1  # >= --trials: no place
    runner = FakeRunner()
    study.tell(late, state=optuna.trial.TrialState.FAIL)
    result = tuner.search(["space=basenet", *SYN],
                          tuner.SearchOptions(trials=2, storage=store, study="b", baselines=False), runner=runner)
    # The failed trial holds a place (it counts as run), so one more trial fills the budget of 2.
    assert len(runner.calls) == 0 and result.ran == []


def test_places_follow_trial_numbers_and_a_retry_takes_its_trials_place():
    from tuner.records import FailureKind, TrialRecord
    from tuner.store import Budget

    budget_place = Budget(4).place

    def rec(number, state="complete", **tags):
        return TrialRecord(number=number, state=state, params={}, val_accuracy=0.5, tags=tags)

    records = [TrialRecord(number=0, state="complete", params={}, val_accuracy=0.5, baseline="basenet"), rec(1), rec(2, "fail"), rec(3, "running"), rec(4, "running"), rec(5, "waiting", retry_of=2)]
    # Baseline 0 holds no place; trial 2 failed and is retried by 5, which takes its place (before 3 and 4).
    assert [budget_place(records, n) for n in (1, 5, 3, 4)] == [0, 1, 2, 3]
    over = [*records, TrialRecord(number=6, state="fail", params={}, kind=FailureKind.BUDGET_FULL), rec(7, "running")]
    assert budget_place(over, 7) == 4


def test_workers_option_errors_are_one_line(store, tmp_path):
    one_line_error(run_cli("search", "space=basenet", *SYN, "--storage", store, "--workers", "2"),
                   "database is locked", "journal:")
    one_line_error(run_cli("search", "space=basenet", *SYN, "--storage", store, "--workers", "-1"),
                   "--workers must be 0")
    one_line_error(run_cli("search", "space=basenet", *SYN, "--storage", store, "--workers", "2",
                           "--engine", "keras-tuner"), "--chief")
    one_line_error(run_cli("search", "space=basenet", *SYN, "--storage", store, "--gpus", "0,,1"), "--gpus")
    one_line_error(run_cli("search", "space=basenet", *SYN, "--storage", store, "--gpus", "0,0"), "twice")
    one_line_error(run_cli("search", "space=basenet", *SYN, "--storage", store, "--heartbeat-grace", "1"),
                   "--heartbeat-grace")


def test_gpus_give_each_worker_its_own_device(monkeypatch, tmp_path):
    from tuner.searching import parse_gpus, worker_pool

    url = f"journal:{tmp_path / 's.journal'}"
    def pool(**given):
        return worker_pool(tuner.SearchOptions(**given), url=url, pooled=True)

    # The GPUs are those nvidia-smi -L lists: a fake one on PATH, with 4.
    fake_nvidia_smi(tmp_path, monkeypatch, 4)
    assert pool(gpus="1,3").gpus == ["1", "3"]
    assert pool(gpus="GPU-2").gpus == ["GPU-2"]  # a UUID, as CUDA_VISIBLE_DEVICES takes it
    # More workers than GPUs: they take the GPUs in turn (several small trials per GPU).
    assert pool(workers=4, gpus=["0", "1"]).gpus == ["0", "1", "0", "1"]
    assert pool() is None and pool(workers=1) is None
    assert parse_gpus("all") == ["0", "1", "2", "3"]


def test_gpus_that_the_machine_does_not_have_are_refused(monkeypatch, tmp_path, store):
    from tuner.searching import parse_gpus

    fake_nvidia_smi(tmp_path, monkeypatch, 2)
    with pytest.raises(CnntuneError, match="no GPU 7, 9; nvidia-smi -L lists 0, 1"):
        parse_gpus("0,7,9")
    one_line_error(run_cli("search", "space=basenet", *SYN, "--storage", store, "--gpus", "2"),
                   "this machine has no GPU 2")
    # No nvidia-smi at all (a machine without NVIDIA GPUs): no GPU index means anything, not even 0.
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    for asked in ("0", "all"):
        with pytest.raises(CnntuneError, match="nvidia-smi is not installed here"):
            parse_gpus(asked)


def test_the_grace_period_is_an_option_stored_for_workers(store):
    assert heartbeat_timing(None) == (30, 90)
    assert heartbeat_timing(6) == (2, 6)
    tuner.search(["space=basenet", *SYN], tuner.SearchOptions(trials=1, storage=store, study="g", heartbeat_grace=6),
                 runner=FakeRunner())
    import optuna

    from tuner.store import study_meta

    meta = study_meta(optuna.load_study(study_name="g", storage=store))
    assert tuner.SearchOptions.from_meta(meta, "g").heartbeat_grace == 6
    storage = open_storage(store, heartbeat=True, grace=6)
    assert storage.get_heartbeat_interval() == 2


@pytest.mark.e2e
@pytest.mark.slow
def test_search_with_two_worker_processes_end_to_end(tmp_path):
    url = f"journal:{tmp_path / 'studies.journal'}"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, "-m", "tuner.cli", "search", "space=basenet", "data=synthetic",
                           "epochs=1", "--trials", "3", "--storage", url, "--study", "e2e", "--workers", "2"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "w0 " in out and "w1 " in out  # each worker's lines, tagged
    records = tuner.trials(study="e2e", storage=url).records
    assert [r.state for r in records] == ["complete"] * 4
    assert sum(1 for r in records if r.baseline is None) == 3
    assert "best so far: trial" in out
