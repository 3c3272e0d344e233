"""Accuracy and size: ``search --objective accuracy,params|accuracy,latency`` and ``best --max-params/--max-latency-ms``."""

from __future__ import annotations

import pytest

import tuner
from conftest import SYN, FakeRunner, one_line_error, run_cli


class SizedFake(FakeRunner):
    """Bigger dense layers are more accurate, with diminishing returns; the parameter count follows the width."""

    def __call__(self, space, params, data, **kwargs):
        from dataclasses import replace

        out = super().__call__(space, params, data, **kwargs)
        units = int(params["dense_units"])
        return replace(out, val_accuracy=round(units / (units + 40), 4), n_params=1000 + 300 * units)


def test_a_two_objective_search_returns_a_front_with_smaller_models_than_the_most_accurate(store):
    import optuna

    result = tuner.search(["space=improved", *SYN],
                          tuner.SearchOptions(trials=8, storage=store, study="mo", objective="accuracy,params"),
                          runner=SizedFake())
    study = optuna.load_study(study_name="mo", storage=store)
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    assert all(len(t.values) == 2 for t in study.trials)
    front, records = result.pareto, tuner.trials(study="mo", storage=store).records
    most_accurate = max(records, key=lambda r: r.val_accuracy)
    assert most_accurate.number in {r.number for r in front}
    assert any(r.n_params < most_accurate.n_params for r in front)
    # Smallest first, each one more accurate than the last, and none of them beaten on both counts.
    assert [r.n_params for r in front] == sorted(r.n_params for r in front)
    for r in front:
        assert not any(o.val_accuracy >= r.val_accuracy and o.n_params < r.n_params for o in records)
    # Optuna's own front agrees (it also lists trials with the same values; the front keeps the first of them).
    assert {tuple(t.values) for t in study.best_trials} == {(r.val_accuracy, r.n_params) for r in front}
    # The most accurate model within a budget of parameters.
    limit = sorted(r.n_params for r in records)[len(records) // 2]
    report = tuner.best(study="mo", storage=store, max_params=limit)
    inside = [r for r in records if r.n_params <= limit]
    assert report.best.n_params <= limit and report.best.val_accuracy == max(r.val_accuracy for r in inside)
    cli = run_cli("best", "--study", "mo", "--storage", store, "--max-params", str(limit))
    assert cli.exit_code == 0 and f"trial {report.best.number}" in cli.output.replace("#", "trial ")


@pytest.mark.slow
def test_latency_is_measured_per_image_and_bounds_the_export(store, tmp_path):
    result = tuner.search(["space=basenet", *SYN],
                          tuner.SearchOptions(trials=1, storage=store, study="lat", objective="accuracy,latency"))
    records = tuner.trials(study="lat", storage=store).records
    assert all(r.latency_ms is not None and 0 < r.latency_ms < 1000 for r in records)
    assert result.pareto
    fastest = min(records, key=lambda r: r.latency_ms)
    target = tmp_path / "small.keras"
    out = run_cli("best", "--study", "lat", "--storage", store, "--max-latency-ms", str(fastest.latency_ms),
                  "--export", str(target))
    assert out.exit_code == 0, out.output
    assert target.is_file() and f"trial {fastest.number}" in out.output
    one_line_error(run_cli("best", "--study", "lat", "--storage", store, "--max-params", "1"), "at most 1",
                   "the least")


def test_objective_errors_are_one_line(store):
    words = ["search", "space=basenet", *SYN, "--storage", store]
    one_line_error(run_cli(*words, "--objective", "params"), "--objective must be one of")
    one_line_error(run_cli(*words, "--objective", "accuracy,params", "--pruner", "asha"), "--pruner")
    one_line_error(run_cli(*words, "--objective", "accuracy,params", "--engine", "keras-tuner"), "keras-tuner")
    one_line_error(run_cli(*words, "--objective", "accuracy,params", "--reeval-share", "0.2"), "--max-params")
    tuner.search(["space=basenet", *SYN], tuner.SearchOptions(trials=1, storage=store, study="one"),
                 runner=FakeRunner())
    one_line_error(run_cli(*words, "--study", "one", "--objective", "accuracy,params"), "another --study")
    one_line_error(run_cli("best", "--study", "one", "--storage", store, "--max-latency-ms", "5"), "measured")
