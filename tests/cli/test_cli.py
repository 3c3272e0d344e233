"""The command line: smoke tests with CliRunner, and one clear line with exit code 1 for each bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import tuner

from conftest import SYN, FakeRunner, one_line_error, run_cli, run_python


def test_cli_search_trials_best_export(store, tmp_path):
    result = run_cli("search", "space=basenet", *SYN, "--trials", "1", "--study", "c", "--storage", store, "--quiet")
    assert result.exit_code == 0, result.output
    result = run_cli("trials", "--study", "c", "--storage", store)
    assert result.exit_code == 0 and "basenet" in result.output and "complete" in result.output
    result = run_cli("best", "--study", "c", "--storage", store, "--export", str(tmp_path / "m.keras"))
    assert result.exit_code == 0, result.output
    assert "best trial" in result.output and (tmp_path / "m.keras").is_file()
    assert json.loads((tmp_path / "m.json").read_text())["study"] == "c"


def test_cli_search_shows_progress_and_results(store):
    result = run_cli("search", "space=basenet", *SYN, "--trials", "1", "--storage", store, "--no-baselines")
    assert result.exit_code == 0, result.output
    assert "trial 0" in result.output and "val" in result.output and "best so far" in result.output


def test_cli_spaces_lists_every_space():
    result = run_cli("spaces")
    assert result.exit_code == 0
    from search_spaces import SPACES

    for name in SPACES:
        assert name in result.output
    detail = run_cli("spaces", "improved")
    assert detail.exit_code == 0 and "final" in detail.output
    modern = run_cli("spaces", "modern")
    assert modern.exit_code == 0
    for needle in ("basenet", "final", "resnet20", "augment_policy", "stochastic_depth", "mix_alpha", "lr_schedule"):
        assert needle in modern.output, needle


@pytest.mark.parametrize(
    "args, needles",
    [
        (["search", "space=nope"], ["unknown space 'nope'", "basenet"]),
        (["search", "space=basenet", "frobnicate=3"], ["unknown key 'frobnicate'", "learning_rate"]),
        (["search", "space=basenet", "epochs=abc"], ["epochs", "abc"]),
        (["search", "space=basenet", "--trials", "0"], ["--trials"]),
        (["search", "space=basenet", "notakeyvalue"], ["key=value"]),
        (["search", "space=basenet", "data=nope"], ["unknown data"]),
        (["search", "space=basenet", "data=cub200", "data_dir=/does/not/exist"], ["/does/not/exist"]),
        (["search", "space=basenet", "--sampler", "grid"], ["continuous"]),
        (["search", "space=basenet", "--engine", "keras-tuner", "--tuner", "grid"], ["--tuner grid", "continuous"]),
        # An option of the other engine is an error, never silently ignored.
        (["search", "space=basenet", "--engine", "keras-tuner", "--sampler", "random"], ["--sampler", "--tuner"]),
        (["search", "space=basenet", "--engine", "keras-tuner", "--pruner", "asha"], ["--pruner", "hyperband"]),
        (["search", "space=basenet", "--tuner", "bayesian"], ["--tuner", "--engine keras-tuner"]),
        (["search", "space=basenet", "--chief", "127.0.0.1:8000"], ["--chief", "--storage"]),
        (["search", "space=basenet", "--engine", "nope"], ["--engine must be one of optuna, keras-tuner", "'nope'"]),
        (["search", "space=basenet", "--engine", "keras-tuner", "--tuner", "nope"], ["--tuner must be one of", "'nope'"]),
        (["search", "space=basenet", "--pruner", "nope"], ["--pruner must be one of", "'nope'"]),
        (["search", "space=basenet", "--timeout", "0"], ["--timeout"]),
        # Values that cannot mean anything: refused before a trial records having trained nothing.
        (["search", "space=basenet", "epochs=0"], ["epochs='0'", "above 0"]),
        (["search", "space=basenet", "epochs=-3"], ["epochs='-3'", "above 0"]),
        (["search", "space=basenet", "learning_rate=nan"], ["learning_rate='nan'", "not a number"]),
        (["search", "space=basenet", "--seed", "-1"], ["--seed must be from 0 to 2147483647"]),
        (["search", "space=basenet", "--seed", "4294967296"], ["--seed must be from 0"]),
        (["search", "space=basenet", "--heartbeat-grace", "nan"], ["--heartbeat-grace takes a number"]),
        (["search", "space=basenet", "--reeval-share", "inf"], ["--reeval-share takes a number"]),
        (["reproduce", "space=basenet", "--seed", "-2"], ["--seed must be from 0"]),
        (["best", "--trial", "3"], ["--trial 3 names the trial to export", "--export"]),
        (["best", "--max-params", "0"], ["--max-params must be at least 1"]),
        (["best", "--max-latency-ms", "nan"], ["--max-latency-ms takes a number"]),
        (["best", "--max-latency-ms", "0"], ["--max-latency-ms must be above 0"]),
    ],
)
def test_bad_search_input_gets_one_line(store, args, needles):
    one_line_error(run_cli(*args, "--storage", store), *needles)


def test_bad_storage_url(tmp_path):
    one_line_error(run_cli("search", "space=basenet", "--storage", "nonsense"), "cannot open storage")
    one_line_error(run_cli("search", "space=basenet", "--storage", f"sqlite:///{tmp_path}/no/such/dir/x.db"),
                    "does not exist")
    line = one_line_error(run_cli("trials", "--storage", "postgresql://alice:s3cret@127.0.0.1:1/nodb"),
                           "cannot open storage")
    assert "s3cret" not in line and "***" in line


def test_data_dir_without_images(store, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    one_line_error(run_cli("search", "space=basenet", "data=folder", f"data_dir={empty}", "--storage", store),
                    str(empty))


def test_unreadable_image_is_named(store, tmp_path):
    from PIL import Image

    root = tmp_path / "imgs"
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(4):
            Image.new("RGB", (16, 16), (i * 40, 10, 10)).save(root / cls / f"{i}.jpg")
    (root / "b" / "broken.jpg").write_bytes(b"not a jpeg at all")
    one_line_error(run_cli("search", "space=basenet", "data=folder", f"data_dir={root}", "--storage", store),
                    "broken.jpg")


def test_cifar_without_network_or_copy_says_how_to_get_it(store, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / ".keras"))
    monkeypatch.delenv("CNNTUNE_CIFAR100_DIR", raising=False)
    import tuner.data as data
    import tuner.data._cifar as cifar

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz: None -- "
                        "[Errno -2] Name or service not known")

    monkeypatch.setattr(cifar, "_keras_load_data", offline)
    data.clear_cache()
    one_line_error(run_cli("search", "space=basenet", "data=cifar100_25", "--storage", store), "data_dir")


def test_best_on_empty_or_unknown_study(store, tmp_path):
    one_line_error(run_cli("best", "--storage", store), "no study store")
    assert not (tmp_path / "studies.db").exists()  # reading never creates a store
    one_line_error(run_cli("best"), "no study store")
    import optuna

    optuna.create_study(storage=store, study_name="empty")
    one_line_error(run_cli("best", "--storage", store), "no completed trial")
    run_cli("search", "space=basenet", *SYN, "--trials", "1", "--study", "x", "--storage", store, "--quiet")
    one_line_error(run_cli("best", "--study", "nope", "--storage", store), "no study named 'nope'", "x")
    one_line_error(run_cli("trials", "--study", "nope", "--storage", store), "no study named 'nope'")


@pytest.mark.parametrize("columns", [200, 80, 50])
def test_best_prints_every_figure_whole_in_any_terminal_width(store, columns):
    scores = iter([(0.20, 0.10), (0.95, 0.90)])  # the baseline, then the searched trial: +800% test
    tuner.search(["space=basenet", *SYN], tuner.SearchOptions(trials=1, storage=store, study="w"),
                 runner=FakeRunner(accuracy=lambda params, seed: next(scores)))
    (comp,) = tuner.best(study="w", storage=store).comparisons
    from typer.testing import CliRunner

    from tuner.cli import app

    result = CliRunner().invoke(app, ["best", "--study", "w", "--storage", store], env={"COLUMNS": str(columns)})
    assert result.exit_code == 0, result.output
    assert max(len(line) for line in result.output.splitlines()) <= columns
    for figure in ("+800.00%", "+75.00", "+80.00", "20.00", "10.00"):
        assert figure in result.output, result.output
    assert comp.d_test_pct == pytest.approx(800.0)


def test_export_to_missing_folder_and_bad_input_lose_nothing(store, tmp_path):
    run_cli("search", "space=basenet", *SYN, "--trials", "1", "--study", "k", "--storage", store, "--quiet")
    before = [(r.number, r.state, r.val_accuracy) for r in tuner.trials(study="k", storage=store).records]
    one_line_error(run_cli("best", "--study", "k", "--storage", store, "--export", str(tmp_path / "no" / "m.keras")),
                    "does not exist")
    one_line_error(run_cli("search", "space=basenet", "epochs=abc", "--study", "k", "--storage", store), "epochs")
    one_line_error(run_cli("search", "space=improved", *SYN, "--study", "k", "--storage", store), "searches space")
    after = [(r.number, r.state, r.val_accuracy) for r in tuner.trials(study="k", storage=store).records]
    assert after == before


def test_entry_point_turns_usage_errors_into_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "tuner.cli", "search", "--trials", "abc"], capture_output=True,
                          text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith("error:") and len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("args", [["--help"], ["spaces"], ["trials"], ["best"]])
def test_commands_that_do_not_train_do_not_import_tensorflow(args, store):
    run_cli("search", "space=basenet", *SYN, "--trials", "1", "--study", "t", "--storage", store, "--quiet")
    code = (
        "import sys\n"
        "from tuner.cli import main\n"
        f"sys.argv = ['cnntune', *{args!r}, *({['--storage', store] if args[0] in ('trials', 'best') else []!r})]\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
        "heavy = [m for m in ('tensorflow', 'keras', 'keras_tuner', 'torch', 'jax') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    run_python(code)
