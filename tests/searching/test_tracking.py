"""search --track: every trial in a real MLflow tracking server (``mlflow server`` on 127.0.0.1, SQLite backend),
read back through ``MlflowClient``; a server that is down costs a warning, never a trial."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

import tuner
from conftest import EpochRunner, one_line_error, run_cli
from servers import kill, start_mlflow, stop

WORDS = ["space=basenet", "data=synthetic", "epochs=3"]


def test_every_trial_is_a_nested_run_with_its_curves_and_the_baselines_tagged(store, mlflow_server):
    from mlflow.tracking import MlflowClient

    options = tuner.SearchOptions(trials=3, storage=store, study="tracked", track=mlflow_server, warm_start=0)
    result = tuner.search(WORDS, options, runner=EpochRunner(fail_on=3))
    records = tuner.trials(study="tracked", storage=store).records
    assert len(records) >= 4 and any(r.baseline for r in records) and any(r.state == "fail" for r in records)

    client = MlflowClient(tracking_uri=mlflow_server)
    experiment = client.get_experiment_by_name("tracked")
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = {int(r.data.tags["cnntune.trial"]): r for r in runs if "mlflow.parentRunId" in r.data.tags}
    assert len(parents) == 1 and parents[0].data.tags["cnntune.role"] == "search"
    assert parents[0].info.status == "FINISHED"
    assert sorted(children) == [r.number for r in records]  # one run per trial, none twice
    for rec in records:
        run = children[rec.number]
        assert run.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        assert run.data.tags["cnntune.state"] == rec.state
        assert run.data.params == {k: str(v) for k, v in rec.params.items()}
        if rec.baseline:
            assert run.data.tags["cnntune.baseline"] == rec.baseline and run.data.tags["cnntune.kind"] == "baseline"
            assert run.info.run_name == rec.baseline
        if rec.state == "complete":
            assert run.info.status == "FINISHED"
            assert run.data.metrics["final_val_accuracy"] == pytest.approx(rec.val_accuracy)
            history = client.get_metric_history(run.info.run_id, "val_accuracy")
            assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == [
                (i + 1, pytest.approx(v)) for i, v in enumerate(rec.history["val_accuracy"])]
        else:
            assert run.info.status == "FAILED" and run.data.tags["cnntune.fail_kind"] == "error"
            assert "boom" in run.data.tags["cnntune.reason"]
    searched = [children[r.number] for r in records if not r.baseline]
    assert all(run.data.tags["cnntune.differs"] for run in searched)
    assert result.best is not None


def test_a_tracking_server_that_is_down_costs_one_warning_and_no_trial(store):
    result = run_cli("search", *WORDS, "--trials", "2", "--no-baselines", "--study", "down", "--storage", store,
                     "--track", "http://127.0.0.1:9")  # nothing listens on the discard port
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if "warning: MLflow at http://127.0.0.1:9" in line]
    assert len(warnings) == 1, result.output
    assert "Traceback" not in result.output
    records = tuner.trials(study="down", storage=store).records
    assert [r.state for r in records] == ["complete", "complete"]


def _events(folder: Path) -> list:
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    return [e for f in sorted(folder.glob("events.out.tfevents.*")) for e in EventFileLoader(str(f)).Load()]


def test_tensorboard_holds_one_hparams_session_per_trial_with_its_values_and_metrics(store, tmp_path):
    from tensorboard.plugins.hparams import api_pb2, metadata
    from tensorboard.util import tensor_util

    options = tuner.SearchOptions(trials=3, storage=store, study="tb", tensorboard=str(tmp_path / "tb"),
                                  warm_start=0)
    tuner.search(WORDS, options, runner=EpochRunner(fail_on=3))
    records = tuner.trials(study="tb", storage=store).records
    root = tmp_path / "tb" / "tb"
    configs = [metadata.parse_experiment_plugin_data(v.metadata.plugin_data.content)
               for e in _events(root) for v in e.summary.value if v.tag == metadata.EXPERIMENT_TAG]
    assert configs and {m.name.tag for m in configs[0].metric_infos} >= {"final_val_accuracy", "val_accuracy"}
    assert {h.name for h in configs[0].hparam_infos} == set(records[0].params)
    assert sorted(p.name for p in root.glob("trial_*")) == [f"trial_{r.number:04d}" for r in records]
    for rec in records:
        starts, ends, scalars = [], [], {}
        for event in _events(root / f"trial_{rec.number:04d}"):
            for v in event.summary.value:
                if v.tag == metadata.SESSION_START_INFO_TAG:
                    starts.append(metadata.parse_session_start_info_plugin_data(v.metadata.plugin_data.content))
                elif v.tag == metadata.SESSION_END_INFO_TAG:
                    ends.append(metadata.parse_session_end_info_plugin_data(v.metadata.plugin_data.content))
                elif v.metadata.plugin_data.plugin_name == "scalars":  # the loader reads simple values as tensors
                    scalars.setdefault(v.tag, []).append((event.step, float(tensor_util.make_ndarray(v.tensor))))
        assert len(starts) == 1 and len(ends) == 1  # one session per trial
        values = starts[0].hparams
        assert set(values) == set(rec.params)
        assert values["epochs"].number_value == 3 and values["optimizer"].string_value == rec.params["optimizer"]
        if rec.state == "complete":
            assert ends[0].status == api_pb2.STATUS_SUCCESS
            assert [s for s, _ in scalars["val_accuracy"]] == [1, 2, 3]
            assert scalars["final_val_accuracy"] == [(3, pytest.approx(rec.val_accuracy))]
        else:
            assert ends[0].status == api_pb2.STATUS_FAILURE


def test_tracking_a_uri_that_needs_mlflows_client_without_its_package_is_one_error_line(store, monkeypatch, tmp_path):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    one_line_error(run_cli("search", *WORDS, "--trials", "1", "--study", "x", "--storage", store, "--track",
                           f"sqlite:///{tmp_path}/mlflow.db"), "--track needs the mlflow package", "cnntune[mlflow]")


def test_an_http_server_is_tracked_without_importing_mlflow(mlflow_server):
    from mlflow.tracking import MlflowClient

    code = f"""if True:
        import sys
        from tuner.records import Display, TrialRecord
        from tuner.tracking import Tracked
        tracker = Tracked(Display(), {mlflow_server!r}, "light", "search", defaults={{"epochs": 1}})
        tracker.trial_begin(number=0, params={{"epochs": 2}}, baseline=None, epochs=2, seed=7)
        for epoch in (1, 2):
            tracker.epoch_end(number=0, epoch=epoch, epochs=2, logs={{"val_accuracy": epoch / 10}})
        tracker.trial_end(TrialRecord(0, "complete", {{"epochs": 2}}, val_accuracy=0.2, seed=7))
        tracker.search_end()
        print(sorted(tracker.unlogged), "mlflow" in sys.modules)
    """
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["[]", "False"], done.stdout + done.stderr  # all logged, MLflow never imported
    client = MlflowClient(tracking_uri=mlflow_server)
    (run,) = client.search_runs([client.get_experiment_by_name("light").experiment_id],
                                filter_string="tags.`cnntune.trial` = '0'")
    assert run.info.status == "FINISHED" and run.data.params == {"epochs": "2"}
    assert run.data.tags["cnntune.differs"] == "epochs=2" and run.data.tags["cnntune.seed"] == "7"
    history = client.get_metric_history(run.info.run_id, "val_accuracy")
    assert sorted((m.step, m.value) for m in history) == [(1, 0.1), (2, 0.2)]


def test_track_backfills_a_study_searched_without_it_and_twice_logs_nothing_twice(store, mlflow_server):
    from mlflow.tracking import MlflowClient

    tuner.search(WORDS, tuner.SearchOptions(trials=2, storage=store, study="later", warm_start=0),
                 runner=EpochRunner())
    records = tuner.trials(study="later", storage=store).records
    # Never searched with --track: no URI to log to.
    one_line_error(run_cli("track", "--study", "later", "--storage", store), "pass --track URI")
    first = run_cli("track", "--study", "later", "--storage", store, "--track", mlflow_server)
    assert first.exit_code == 0, first.output
    assert f"logged {len(records)} trials of study later" in first.output and "(0 were there)" in first.output
    again = run_cli("track", "--study", "later", "--storage", store, "--track", mlflow_server)
    assert again.exit_code == 0 and "logged 0 trials" in again.output and f"({len(records)} were there)" in again.output
    client = MlflowClient(tracking_uri=mlflow_server)
    runs = client.search_runs([client.get_experiment_by_name("later").experiment_id], max_results=100)
    trials = sorted(int(r.data.tags["cnntune.trial"]) for r in runs if "cnntune.trial" in r.data.tags)
    assert trials == [r.number for r in records]  # one run each, none twice
    done = next(r for r in runs if r.data.tags.get("cnntune.trial") == str(records[-1].number))
    history = client.get_metric_history(done.info.run_id, "val_accuracy")
    assert [m.step for m in sorted(history, key=lambda m: m.step)] == [1, 2, 3]  # the curves, from the record


class _KillsTheServer(EpochRunner):
    """Kills the tracking server as its ``kill_on``-th trial starts, once the server holds the result of a trial
    (the tracker logs in the background: the first trials may end before it has logged anything)."""

    def __init__(self, server: subprocess.Popen, uri: str, study: str, kill_on: int):
        super().__init__()
        self.server, self.uri, self.study, self.kill_on = server, uri, study, kill_on

    def __call__(self, *args, **kwargs):
        if len(self.calls) + 1 == self.kill_on:
            from mlflow.tracking import MlflowClient

            client, deadline = MlflowClient(tracking_uri=self.uri), time.monotonic() + 60
            while time.monotonic() < deadline:
                found = client.get_experiment_by_name(self.study)
                if found and any("cnntune.state" in r.data.tags for r in client.search_runs([found.experiment_id])):
                    break
                time.sleep(0.2)
            kill(self.server)
        return super().__call__(*args, **kwargs)


def test_a_server_killed_mid_search_costs_no_trial_and_track_logs_the_rest(store, tmp_path):
    from mlflow.tracking import MlflowClient

    folder = tmp_path / "mlflow"
    folder.mkdir()
    server, uri = start_mlflow(folder)
    port = int(uri.rsplit(":", 1)[1])
    try:
        tuner.search(WORDS, tuner.SearchOptions(trials=4, storage=store, study="cut", track=uri, warm_start=0),
                     runner=_KillsTheServer(server, uri, "cut", kill_on=2))
    finally:
        stop(server)
    records = tuner.trials(study="cut", storage=store).records
    assert [r.state for r in records if not r.baseline] == ["complete"] * 4  # every trial, server or not
    server, _ = start_mlflow(folder, port)  # back, on its port, with what it had logged
    try:
        client = MlflowClient(tracking_uri=uri)
        experiment = client.get_experiment_by_name("cut").experiment_id
        before = {r.data.tags["cnntune.trial"] for r in client.search_runs([experiment], max_results=100)
                  if "cnntune.state" in r.data.tags}
        assert len(before) < len(records), before  # the trials after the kill were not logged in full
        back = run_cli("track", "--study", "cut", "--storage", store)  # the study's own URI
        assert back.exit_code == 0, back.output
        runs = client.search_runs([experiment], max_results=100)
        trials = sorted(int(r.data.tags["cnntune.trial"]) for r in runs if "cnntune.trial" in r.data.tags)
        assert trials == [r.number for r in records], back.output  # each once: a run started before the kill
        assert all(r.data.tags.get("cnntune.state") == "complete" for r in runs if "cnntune.trial" in r.data.tags)
    finally:
        stop(server)


@pytest.mark.slow
def test_best_registers_the_exported_model_and_mlflow_runs_it_on_raw_images(store, mlflow_server, tmp_path):
    import mlflow
    import numpy as np
    from mlflow.tracking import MlflowClient

    result = run_cli("search", "space=basenet", "data=synthetic", "epochs=1", "--trials", "1", "--study", "reg",
                     "--storage", store, "--track", mlflow_server, "-q")
    assert result.exit_code == 0, result.output
    target = tmp_path / "model.keras"
    # Refused before any work: --register needs --export, --track needs --register.
    one_line_error(run_cli("best", "--study", "reg", "--storage", store, "--register", "cnntune-reg"), "add --export")
    one_line_error(run_cli("best", "--study", "reg", "--storage", store, "--export", str(target), "--track",
                           mlflow_server), "--track names the server for --register")
    assert not target.exists()
    result = run_cli("best", "--study", "reg", "--storage", store, "--export", str(target), "--register",
                     "cnntune-reg")  # the study's own --track
    assert result.exit_code == 0, result.output
    assert "registered as cnntune-reg version 1 (models:/cnntune-reg/1)" in result.output
    info = tuner.read_export_metadata(target)
    images = np.random.default_rng(0).integers(0, 256, (3, *info["input_shape"]), dtype="uint8")
    before = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(mlflow_server)
    try:
        probabilities = mlflow.pyfunc.load_model("models:/cnntune-reg/1").predict(images)
        direct = mlflow.keras.load_model("models:/cnntune-reg/1").predict(images, verbose=0)
    finally:
        mlflow.set_tracking_uri(before)
    assert np.asarray(probabilities).shape == (3, len(info["class_names"]))
    np.testing.assert_allclose(np.asarray(probabilities).sum(axis=1), 1, rtol=1e-4)
    np.testing.assert_allclose(direct, probabilities, rtol=1e-5, atol=1e-6)
    client = MlflowClient(tracking_uri=mlflow_server)
    run = client.get_run(client.get_model_version("cnntune-reg", "1").run_id)
    assert run.data.tags["cnntune.trial"] == str(info["trial"])
    assert run.data.metrics["test_accuracy"] == pytest.approx(info["test_accuracy"])
    assert any(key.startswith("test_vs_") and key.endswith("_pp") for key in run.data.metrics)  # vs each baseline
    assert run.data.params == {k: str(v) for k, v in info["params"].items()}
