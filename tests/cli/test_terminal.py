"""A clean terminal: no library noise unless --verbose, a trials table that fits 80 columns, records for scripts."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys

import pytest

import tuner
from conftest import ROOT, SYN, FakeRunner, one_line_error, run_cli, run_python


@pytest.mark.e2e
@pytest.mark.slow
def test_a_search_prints_only_its_own_lines(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "CNNTUNE_VERBOSE")}
    env["COLUMNS"] = "80"
    # improved: its augmentation layers and several models per process are what made TensorFlow warn.
    cmd = [sys.executable, "-m", "tuner.cli", "search", "space=improved", *SYN, "--trials", "2",
           "--storage", f"sqlite:///{tmp_path / 's.db'}"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    ours = ("study ", "trial ", "ran ", "best so far")
    assert lines and all(line.startswith(ours) for line in lines), "\n".join(lines)
    # --verbose lets the libraries speak: the same search prints TensorFlow's retracing warnings.
    cmd[cmd.index("--storage") + 1] = f"sqlite:///{tmp_path / 'verbose.db'}"
    verbose = subprocess.run([*cmd, "--verbose"], cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=300)
    assert verbose.returncode == 0, verbose.stdout + verbose.stderr
    noisy = [line for line in verbose.stderr.splitlines() if line.strip() and not line.startswith(ours)]
    assert noisy, verbose.stderr


def test_each_command_prints_at_the_width_of_its_own_terminal():
    # COLUMNS as it was when the command line was imported must not stay the width of every later command.
    code = ("import os; os.environ['COLUMNS'] = '40'\n"
            "from typer.testing import CliRunner\nfrom tuner.cli import app\n"
            "for columns in ('200', '40'):\n"
            "    result = CliRunner().invoke(app, ['spaces'], env={'COLUMNS': columns})\n"
            "    print(max(len(line) for line in result.output.splitlines()))")
    wide, narrow = map(int, run_python(code).split())
    assert narrow <= 40 < wide <= 200


def _study(store):
    # Trials with many changed values and a long failure reason: the cases that overflowed the table.
    def accuracy(params, seed):
        return (0.5 + seed / 100, 0.4)

    tuner.search(["space=improved", *SYN], tuner.SearchOptions(trials=3, storage=store, study="t"),
                 runner=FakeRunner(accuracy))
    return tuner.trials(study="t", storage=store)


def test_the_trials_table_fits_80_columns_and_shows_what_each_trial_changed(store, monkeypatch):
    view = _study(store)
    monkeypatch.setenv("COLUMNS", "80")
    result = run_cli("trials", "--study", "t", "--storage", store)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= 80
    # Readable: every changed value is shown whole on one line (none folded character by character).
    from tuner.display import fmt_params

    for r in view.records:
        changed = {k: v for k, v in r.params.items() if view.defaults.get(k) != v and k != "epochs"}
        for item in fmt_params(changed).split():
            assert any(item in line for line in lines), (item, result.output)
    assert "(hand-chosen)" in result.output  # the final baseline is the hand-chosen configuration itself
    assert "body=basenet" in result.output  # the basenet baseline differs from it there
    wide = run_cli("trials", "--study", "t", "--storage", store, "--wide")
    assert wide.exit_code == 0 and "optimizer=adam" in wide.output and "(hand-chosen)" not in wide.output
    assert len(view.records) == 5


def test_trials_as_json_and_csv_hold_the_full_records(store):
    view = _study(store)
    result = run_cli("trials", "--study", "t", "--storage", store, "--format", "json")
    rows = json.loads(result.output)
    assert [r["number"] for r in rows] == [r.number for r in view.records]
    assert rows[1]["baseline"] == "final" and rows[1]["params"] == view.records[1].params
    assert rows[0]["history"] == {"val_accuracy": [rows[0]["val_accuracy"]]}
    assert sum(r["best"] for r in rows) == 1
    table = list(csv.DictReader(io.StringIO(run_cli("trials", "--study", "t", "--storage", store, "--format",
                                                     "csv").output)))
    assert len(table) == 5 and table[0]["baseline"] == "basenet" and table[0]["param.body"] == "basenet"
    assert float(table[2]["val_accuracy"]) == pytest.approx(view.records[2].val_accuracy)
    one_line_error(run_cli("trials", "--study", "t", "--storage", store, "--format", "xml"), "--format")
    assert ROOT.is_dir()


def test_a_large_study_shows_the_baselines_the_best_and_the_latest_unless_all(store):
    def accuracy(params, seed):
        return (0.9 if seed == 7 else 0.3 + seed / 1000, 0.4)  # trial 7 is the best

    tuner.search(["space=basenet", *SYN], tuner.SearchOptions(trials=60, storage=store, study="big"),
                 runner=FakeRunner(accuracy))

    def rows(output: str) -> list[int]:
        return [int(w[0]) for w in (line.split() for line in output.splitlines()) if len(w) > 1 and w[0].isdigit()
                and w[1] == "complete"]

    result = run_cli("trials", "--study", "big", "--storage", store)
    numbers = rows(result.output)
    assert len(numbers) == 50 and "50 of 61 trials" in result.output
    assert numbers[:2] == [0, 7] and numbers[2:] == list(range(13, 61))  # baseline, best, then the latest 48
    assert rows(run_cli("trials", "--study", "big", "--storage", store, "--all").output) == list(range(61))


def test_tensorflow_cpp_lines_are_hidden_by_level_and_everything_else_is_kept():
    from tuner.quiet import below_level

    info = "I0000 00:00:1796096185.270556   31165 port.cc:153] oneDNN custom operations are on."
    warning = "W0000 00:00:1758131045.228 3722035 computation_placer.cc:177] computation placer already registered"
    error = "E0000 00:00:1758131045.203198 3722035 cuda_dnn.cc:8579] Unable to register cuDNN factory"
    old = "2025-09-17 14:44:05.157831: I external/local_xla/xla/tsl/cuda/cudart_stub.cc:32] Could not find cuda"
    banner = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
    assert [below_level(line, 2) for line in (info, warning, error, old, banner)] == [True, True, False, True, True]
    assert [below_level(line, 0) for line in (info, warning, error, old, banner)] == [False] * 5
    assert below_level(error, 3)
    assert not below_level("Traceback (most recent call last):", 3)
    assert not below_level("error: study 'x' not found", 3)
