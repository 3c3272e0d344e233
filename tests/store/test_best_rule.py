"""One rule for the best trial (``tuner.store.best_trial``): ``search``, ``worker``, ``trials``, ``best`` and ``export``
name the same trial, for every kind of study the suite builds (the ``store`` fixture checks ``trials`` against
``best`` after every test)."""

from __future__ import annotations

import pytest

import tuner
from conftest import SYN, FakeRunner
from tuner.store import REEVAL_SEED_STRIDE


def _accuracy(params, seed):
    """Single runs rank trials by their seed (trial n trains with seed n); re-evaluation runs (new seeds, far above)
    rank them the other way round, so the pick by the mean is never the single-run best."""
    n = seed % REEVAL_SEED_STRIDE
    val = 0.8 - 0.01 * n if seed >= REEVAL_SEED_STRIDE else 0.3 + 0.01 * n
    return val, val - 0.05


STUDIES = {
    "single run": dict(trials=3),
    "no baselines": dict(trials=2, baselines=False),
    "re-evaluated by its share": dict(trials=3, timeout=600, reeval_share=0.25),
    "two objectives": dict(trials=3, objective="accuracy,params"),
    "keras tuner": dict(trials=2, engine="keras-tuner"),
}


@pytest.mark.parametrize("kind", sorted(STUDIES))
def test_search_trials_and_best_name_the_same_trial(store, kind):
    words = ["space=basenet", *SYN]
    options = tuner.SearchOptions(storage=store, study="s", **STUDIES[kind])
    result = tuner.search(words, options, runner=FakeRunner(_accuracy))
    picked = tuner.best(study="s", storage=store).best.number
    assert result.best.number == picked == tuner.trials(study="s", storage=store).best
    # A search that finds the budget spent returns at once, naming the same trial.
    again = tuner.search(words, options, runner=FakeRunner(_accuracy))
    assert again.ran == [] and again.best.number == picked
    if kind == "re-evaluated by its share":
        report = tuner.best(study="s", storage=store)
        assert report.picked_by_mean is not None and report.single_run_best.number != picked


def test_a_re_evaluation_after_the_search_changes_the_pick_for_every_reader(store):
    words = ["space=basenet", *SYN]
    tuner.search(words, tuner.SearchOptions(trials=3, storage=store, study="r"), runner=FakeRunner(_accuracy))
    tuner.reevaluate(study="r", storage=store, top=2, seeds=2, runner=FakeRunner(_accuracy))
    report = tuner.best(study="r", storage=store)
    picked = report.best.number
    assert report.single_run_best.number != picked
    resumed = tuner.search(words, tuner.SearchOptions(trials=3, storage=store, study="r"), runner=FakeRunner(_accuracy))
    assert resumed.best.number == picked == tuner.trials(study="r", storage=store).best


def test_a_worker_names_the_same_trial(store):
    tuner.search(["space=basenet", *SYN], tuner.SearchOptions(trials=2, storage=store, study="w", workers=0))
    result = tuner.worker("w", store, runner=FakeRunner(_accuracy))
    assert result.best.number == tuner.best(study="w", storage=store).best.number


def test_time_to_quality_follows_when_trials_finished_and_leaves_replays_out():
    from tuner.records import TrialRecord
    from tuner.store import time_to_quality

    def rec(number, val, started, finished, state="complete", **tags):
        return TrialRecord(number, state, {}, val_accuracy=val, started=started, finished=finished, tags=tags)

    records = [rec(0, 0.30, 100.0, 110.0, baseline="b"), rec(1, 0.50, 110.0, 150.0),
               rec(2, 0.40, 111.0, 130.0),  # another worker: finished before trial 1
               rec(3, 0.90, 150.0, 160.0, reeval_of=1),  # a replay: never the search's best
               rec(4, 0.60, 150.0, 170.0, state="pruned"), rec(5, 0.55, 160.0, 180.0)]
    records[0].baseline = "b"
    assert time_to_quality(records) == [(10.0, 0.30, 0), (30.0, 0.40, 2), (50.0, 0.50, 1), (80.0, 0.55, 5)]
    assert time_to_quality([rec(0, 0.3, None, None)]) == []  # no times recorded
