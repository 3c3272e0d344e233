"""``cnntune report``: report.md, a self-contained report.html and the figures, from a real (fake-trained) study and
from hand-made ones (empty, two objectives)."""

from __future__ import annotations

import io
import math
import re

import numpy as np
import pytest

import tuner
from conftest import SYN, FakeRunner, one_line_error, run_cli, run_python
from tuner.replays import reproduce
from tuner.reporting import _report as report_module

PNG = b"\x89PNG\r\n\x1a\n"


class CurvesRunner(FakeRunner):
    """A fake trainer whose accuracy depends on the choices (BatchNorm before ReLU helps most, then after; Adam and
    a learning rate near 3e-3 help), with a three-epoch history, and whose calls ``fail_on`` raise."""

    def __init__(self, fail_on: tuple[int, ...] = ()):
        super().__init__(self.score)
        self.fail_on = fail_on

    @staticmethod
    def score(params, seed):
        bn = {"before": 0.25, "after": 0.15}.get(params.get("bn_conv"), 0.0)
        val = (0.30 + bn + 0.10 * (params.get("optimizer") == "adam")
               - 0.05 * abs(math.log10(params.get("learning_rate", 3e-3) / 3e-3)) + 0.01 * (seed % 3))
        return val, val - 0.03

    def __call__(self, space, params, data, *, seed, model_path, on_epoch=None, **kwargs):
        out = super().__call__(space, params, data, seed=seed, model_path=model_path, on_epoch=on_epoch, **kwargs)
        if len(self.calls) in self.fail_on:
            raise RuntimeError("planted failure")
        v = out.val_accuracy
        out.history = {"loss": [2.0, 1.5, 1.2], "accuracy": [v - 0.2, v - 0.05, v + 0.05],
                       "val_loss": [2.1, 1.7, 1.5], "val_accuracy": [v - 0.2, v - 0.1, v]}
        out.epochs_run, out.best_epoch = 3, 3
        return out


@pytest.fixture
def searched(store):
    """A study of `improved` with 2 baselines, 10 searched trials (calls 4 and 7 fail) and one planted pruned trial."""
    import optuna

    tuner.search(["space=improved", *SYN], tuner.SearchOptions(trials=10, storage=store, study="imp"),
                 runner=CurvesRunner((4, 7)))
    st = optuna.load_study(study_name="imp", storage=store)
    st.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.PRUNED, user_attrs={
        "fail_reason": "pruned at epoch 2", "val_accuracy": 0.2, "history": {"val_accuracy": [0.1, 0.2]}}))
    return store


def _decoded(path):
    from PIL import Image

    data = path.read_bytes()
    assert data[:8] == PNG, path
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        pixels = np.asarray(img.convert("L"), dtype=float)
    return pixels


def test_report_writes_markdown_html_and_non_blank_figures(searched, tmp_path):
    result = tuner.report(study="imp", storage=searched, out=tmp_path / "rep")
    assert result.markdown.is_file() and result.html.is_file()
    assert set(result.figures) >= {"comparison", "curves", "history", "time_to_quality", "importance", "by_value"}, \
        result.failed
    assert not result.failed
    pngs = sorted((tmp_path / "rep").glob("*.png"))
    assert len(pngs) >= 6 and set(result.figures.values()) == set(pngs)
    for png in pngs:
        pixels = _decoded(png)
        assert pixels.shape[0] > 200 and pixels.shape[1] > 300, png
        # A drawn figure has axes, text and markers: many grey levels and a real spread, unlike a blank canvas.
        assert len(np.unique(pixels)) > 20 and pixels.std() > 10, png

    html = result.html.read_text()
    assert html.count("data:image/png;base64,") == len(pngs)
    assert "src=\"" not in html.replace('src="data:image/png;base64,', "")  # nothing external
    assert "<table>" in html and "basenet" in html and "best (trial" in html

    md = result.markdown.read_text()
    view = tuner.trials(study="imp", storage=searched)
    assert f"**trial {view.best}**" in md and f"best (trial {view.best})" in md
    mattered = md[md.index("## What mattered"):md.index("## Baselines vs best")]
    top = next(iter(report_module._importances(report_module._load("imp", searched))[0]))
    assert f"`{top}`" in mattered
    assert "hand-chosen configuration (`final`" in mattered and "noise" in mattered
    # Improvement over BaseNet and over the previous row, in points and percent, as the reference study's tables.
    assert "vs basenet pp" in md and "vs previous %" in md and "| 31.68 |" in md
    # The state: failures grouped by reason and counted, the pruned trial, the run's settings and data.
    assert "2 × RuntimeError: planted failure" in md and "1 × pruned at epoch 2" in md
    assert "`data.name` | synthetic" in md and "`sampler` | tpe" in md
    for name in result.figures:
        assert f"]({name}.png)" in md
    assert "## Pareto front" not in md and "| seeds |" not in md  # one objective; no extra seeds yet


def test_a_figure_that_fails_is_named_and_the_rest_is_written(searched, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no ink left\nsecond line")

    monkeypatch.setattr(report_module.figures, "history", broken)
    (tmp_path / "rep").mkdir()
    (tmp_path / "rep" / "history.png").write_bytes(b"an earlier report's figure")
    result = tuner.report(study="imp", storage=searched, out=tmp_path / "rep")
    assert result.failed == {"history": "RuntimeError: no ink left"}
    assert not (tmp_path / "rep" / "history.png").exists()
    assert {"comparison", "curves", "importance"} <= set(result.figures)
    md = result.markdown.read_text()
    assert "Figure `history` could not be drawn: RuntimeError: no ink left" in md
    assert "could not be drawn" in result.html.read_text() and "## State" in md


def test_an_empty_study_says_so_and_draws_nothing(store, tmp_path):
    import optuna

    st = optuna.create_study(study_name="empty", storage=store)
    st.set_user_attr("cnntune", {"space": "improved", "data": {"name": "synthetic"}, "n_val": 30})
    st.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL,
                                           user_attrs={"fail_reason": "RuntimeError: boom"}))
    result = tuner.report(study="empty", storage=store, out=tmp_path / "rep")
    md = result.markdown.read_text()
    assert "**No completed trials**" in md and "1 fail" in md and "1 × RuntimeError: boom" in md
    assert result.figures == {} and not list((tmp_path / "rep").glob("*.png")) and result.best is None
    assert "data:image/png" not in result.html.read_text()

    # One completed trial: a report, but no importances (they need two), said as such rather than as a failure.
    _hand_made(store, "one", ["accuracy"], PARETO_ROWS[:1])
    result = tuner.report(study="one", storage=store, out=tmp_path / "one")
    assert result.best == 0 and "importance" not in result.failed and "importance" not in result.figures
    assert "No importances: they need at least 2 completed trials" in result.markdown.read_text()


def test_out_naming_a_file_unknown_studies_and_storages_are_one_line_errors(store, tmp_path):
    _hand_made(store, "size", ["accuracy", "params"], PARETO_ROWS)
    target = tmp_path / "taken.txt"
    target.write_text("x")
    one_line_error(run_cli("report", "--study", "size", "--storage", store, "--out", str(target)),
                   "is a file", "taken.txt")
    assert target.read_text() == "x"
    one_line_error(run_cli("report", "--study", "nope", "--storage", store, "--out", str(tmp_path / "r")),
                   "no study named 'nope'")
    assert not (tmp_path / "r").exists()  # nothing created for a study that does not exist
    one_line_error(run_cli("report", "--storage", f"sqlite:///{tmp_path / 'none.db'}", "--out", str(tmp_path / "r")),
                   "no study store")


def _hand_made(store, name, objective, rows):
    """A study whose trials are ``(val, test, n_params, latency_ms, baseline)``; `settings.objective` set."""
    import optuna

    dist = {"units": optuna.distributions.IntDistribution(8, 512, log=True)}
    st = optuna.create_study(study_name=name, storage=store)
    st.set_user_attr("cnntune", {"space": "improved", "data": {"name": "synthetic"}, "n_val": 300,
                                 "settings": {"engine": "optuna", "trials": len(rows), "objective": objective}})
    for i, (val, test, size, latency, baseline) in enumerate(rows):
        attrs = {"val_accuracy": val, "test_accuracy": test, "n_params": size, "config": {"units": 8 * (i + 1)},
                 "history": {"val_accuracy": [val]}}
        if latency is not None:
            attrs["latency_ms"] = latency
        if baseline:
            attrs["baseline"] = baseline
        st.add_trial(optuna.trial.create_trial(params={"units": 8 * (i + 1)}, distributions=dist, value=val,
                                               user_attrs=attrs))
    return name


# (val, test, n_params, latency_ms, baseline): trials 0, 2, 4 and 5 are on the front by size; 1 is dominated by 0,
# 3 by 2 (same size, less accurate), 6 ties 5 on both and comes later.
PARETO_ROWS = [(0.40, 0.38, 1_000, 3.0, "basenet"), (0.35, 0.30, 5_000, 2.0, None), (0.50, 0.45, 20_000, 1.0, None),
               (0.45, 0.44, 20_000, 9.0, None), (0.60, 0.55, 700_000, 8.0, "final"), (0.70, 0.60, 900_000, 5.0, None),
               (0.70, 0.61, 900_000, 5.0, None)]


def _pareto_table(md: str) -> list[int]:
    section = md[md.index("## Pareto front"):md.index("## State")]
    return [int(m) for m in re.findall(r"^\| (\d+) \|", section, flags=re.M)]


def test_pareto_front_of_a_two_objective_study_lists_the_non_dominated_trials(store, tmp_path):
    _hand_made(store, "size", ["accuracy", "params"], PARETO_ROWS)
    result = tuner.report(study="size", storage=store, out=tmp_path / "size")
    assert "pareto" in result.figures and not result.failed.get("pareto")
    md = result.markdown.read_text()
    assert _pareto_table(md) == [0, 2, 4, 5]
    assert "accuracy vs parameters" in md and "| 700,000 |" in md

    # By latency the front differs: trial 2 (1 ms) first, then 5 (5 ms, the most accurate).
    _hand_made(store, "lat", "accuracy,latency", PARETO_ROWS)
    md = tuner.report(study="lat", storage=store, out=tmp_path / "lat").markdown.read_text()
    assert _pareto_table(md) == [2, 5] and "latency (ms per image)" in md


def test_reevaluation_and_reproduction_runs_add_mean_and_spread(searched, tmp_path):
    tuner.reevaluate(study="imp", storage=searched, top=1, seeds=2, runner=CurvesRunner())
    # `reproduce` writes reproduce-improved beside the study; its baseline runs (seeds 0-2) join the baselines' rows.
    reproduce(["space=improved", *SYN], tuner.SearchOptions(storage=searched), seeds=3, runner=CurvesRunner())
    md = tuner.report(study="imp", storage=searched, out=tmp_path / "r").markdown.read_text()
    head = next(line for line in md.splitlines() if line.startswith("| configuration"))
    cols = [c.strip() for c in head.strip("|").split("|")]
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.strip("|").split("|")]
            for line in md.splitlines() if line.startswith(("| basenet", "| final", "| best"))}
    seeds, spread = cols.index("seeds"), cols.index("test mean ± sd %")
    # basenet ran with seed 0 in the study and seeds 0, 1, 2 in the reproduction: 3 distinct seeds. The best counts
    # only its 2 new seeds (its own run was selected for being high).
    assert rows["basenet"][seeds] == "3" and "±" in rows["basenet"][spread]
    best = next(k for k in rows if k.startswith("best"))
    assert rows[best][seeds] == "2" and "±" in rows[best][spread]
    assert "picked by its mean over 2 new seeds" in md


def test_cli_report_smoke_and_no_keras(searched, tmp_path):
    result = run_cli("report", "--study", "imp", "--storage", searched, "--out", str(tmp_path / "cli"))
    assert result.exit_code == 0, result.output
    assert "report.md" in result.output and "report.html" in result.output
    assert (tmp_path / "cli" / "report.html").is_file()
    # Writing a report is a reading command: it never imports Keras or TensorFlow.
    run_python("import sys, tuner\n"
               f"tuner.report(study='imp', storage={searched!r}, out={str(tmp_path / 'sub')!r})\n"
               "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('keras', 'tensorflow'))\n"
               "assert not heavy, heavy\n")


def test_report_of_the_modern_space_sets_its_recipe_beside_the_study(store, tmp_path):
    tuner.search(["space=modern", *SYN], tuner.SearchOptions(trials=6, storage=store, study="mod"),
                 runner=CurvesRunner(()))
    result = tuner.report(study="mod", storage=store, out=tmp_path / "rep")
    assert not result.failed and {"comparison", "time_to_quality"} <= set(result.figures)
    md = result.markdown.read_text()
    baselines = md[md.index("## Baselines vs best"):]
    for name in ("basenet", "final", "resnet20"):
        assert f"| {name} |" in baselines, name
    assert "| 31.68 |" in baselines and "| 55.6" in baselines
