"""--track across processes and commands, against a real MLflow server: a retried trial continues its run (in the
search and in a backfill), ``reproduce`` groups its seeds under one parent run per baseline, a bare ``--track`` takes
MLFLOW_TRACKING_URI, a database URI goes through MLflow's own client."""

from __future__ import annotations

import pytest

import tuner
from conftest import EpochRunner, run_cli

WORDS = ["space=basenet", "data=synthetic", "epochs=3"]


def _runs(uri: str, study: str) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    return client.search_runs([client.get_experiment_by_name(study).experiment_id], max_results=500)


def _history(uri: str, run, key: str = "val_accuracy") -> list[tuple[int, float]]:
    from mlflow.tracking import MlflowClient

    return sorted((m.step, round(m.value, 6)) for m in MlflowClient(tracking_uri=uri).get_metric_history(
        run.info.run_id, key))


def _interrupted_then_resumed(store: str, study: str, track: str | None) -> list:
    """A search interrupted (Ctrl-C) after epoch 2 of its 2nd trial, then run again: the study's records."""
    options = tuner.SearchOptions(trials=2, storage=store, study=study, track=track, warm_start=0, baselines=False)
    with pytest.raises(KeyboardInterrupt):
        tuner.search(WORDS, options, runner=EpochRunner(interrupt_at=(2, 2)))
    tuner.search(WORDS, options, runner=EpochRunner())
    records = tuner.trials(study=study, storage=store).records
    assert [r.state for r in records] == ["complete", "fail", "complete"]
    assert records[2].tags["retry_of"] == 1 and records[1].reason == "interrupted"
    return records


def test_a_retried_trial_continues_its_run_in_the_search_and_in_a_backfill(store, mlflow_server):
    records = _interrupted_then_resumed(store, "chained", mlflow_server)
    runs = [r for r in _runs(mlflow_server, "chained") if "cnntune.trial" in r.data.tags]
    assert len(runs) == 2, [r.data.tags for r in runs]  # the retry went on in its predecessor's run
    chained = next(r for r in runs if r.data.tags["cnntune.chain"] == "1")
    assert chained.data.tags["cnntune.trials"] == "1 2" and chained.data.tags["cnntune.trial"] == "2"
    assert chained.data.tags["cnntune.state"] == "complete" and chained.info.status == "FINISHED"
    assert chained.data.tags["cnntune.retry_of"] == "1"
    # Its curve holds both runs' epochs: the interrupted one's first two, then the retry's three.
    steps = [step for step, _ in _history(mlflow_server, chained)]
    assert sorted(steps) == [1, 1, 2, 2, 3]
    assert chained.data.metrics["final_val_accuracy"] == pytest.approx(records[2].val_accuracy)
    # Nothing is missing, so a backfill logs nothing.
    again = run_cli("track", "--study", "chained", "--storage", store)
    assert again.exit_code == 0 and "logged 0 trials" in again.output and "(3 were there)" in again.output

    # The same study searched without --track and backfilled: one run for the chain, with the retry's result.
    _interrupted_then_resumed(store, "chained-later", None)
    back = run_cli("track", "--study", "chained-later", "--storage", store, "--track", mlflow_server)
    assert back.exit_code == 0 and "logged 3 trials" in back.output, back.output
    runs = [r for r in _runs(mlflow_server, "chained-later") if "cnntune.trial" in r.data.tags]
    assert sorted(r.data.tags["cnntune.trials"] for r in runs) == ["0", "1 2"]
    chained = next(r for r in runs if r.data.tags["cnntune.trials"] == "1 2")
    assert chained.data.tags["cnntune.state"] == "complete" and chained.info.status == "FINISHED"
    # The study records no curve for an interrupted trial: the retry's is the one backfilled.
    assert sorted(step for step, _ in _history(mlflow_server, chained)) == [1, 2, 3]


def _assert_parent_per_baseline(uri: str, study: str, records: list) -> None:
    runs = _runs(uri, study)
    baselines = sorted({r.baseline for r in records})
    parents = {r.info.run_id: r for r in runs if "mlflow.parentRunId" not in r.data.tags}
    assert sorted(p.data.tags["cnntune.group"] for p in parents.values()) == baselines  # one per baseline
    assert {p.info.run_name for p in parents.values()} == set(baselines)
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(children) == len(records)
    for run in children:
        parent = parents[run.data.tags["mlflow.parentRunId"]]
        assert run.data.tags["cnntune.baseline"] == parent.data.tags["cnntune.group"]
        assert run.info.run_name == f"{run.data.tags['cnntune.baseline']} seed {run.data.tags['cnntune.seed']}"
        assert run.data.tags["cnntune.reproduce"] == "True"


def test_reproduce_logs_each_baselines_seeds_under_one_parent_run(store, mlflow_server):
    words = ["space=normalization", "data=synthetic", "epochs=2"]
    options = tuner.SearchOptions(storage=store, study="repro", track=mlflow_server)
    tuner.reproduce(words, options, seeds=1, runner=EpochRunner())
    tuner.reproduce(words, options, seeds=2, runner=EpochRunner())  # resumed: one more seed each, same parents
    records = tuner.trials(study="repro", storage=store).records
    assert len({r.baseline for r in records}) == 2 and len(records) == 4
    _assert_parent_per_baseline(mlflow_server, "repro", records)
    # A reproduction without --track, backfilled, has the same shape.
    tuner.reproduce(words, tuner.SearchOptions(storage=store, study="repro-later"), seeds=2, runner=EpochRunner())
    back = run_cli("track", "--study", "repro-later", "--storage", store, "--track", mlflow_server)
    assert back.exit_code == 0 and "logged 4 trials" in back.output, back.output
    _assert_parent_per_baseline(mlflow_server, "repro-later", tuner.trials(study="repro-later", storage=store).records)


def test_a_bare_track_takes_mlflow_tracking_uri_and_a_database_uri_uses_mlflows_client(store, tmp_path, monkeypatch,
                                                                                        capsys):
    from tuner.cli import main

    def cnntune(*args: str) -> int:
        with pytest.raises(SystemExit) as done:
            main(list(args))
        return done.value.code

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    # Without the variable: one line, before any work.
    words = ["space=basenet", "data=synthetic", "epochs=1"]
    assert cnntune("search", *words, "--trials", "1", "--study", "bare", "--storage", store, "--track") == 1
    assert capsys.readouterr().err.strip() == ("error: --track without a URI takes MLFLOW_TRACKING_URI, which is not "
                                               "set; give --track URI")
    uri = f"sqlite:///{tmp_path}/mlflow.db"  # a database store: MLflow's own client logs there
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    # Bare before a key=value word and last: both take the variable.
    assert cnntune("search", "--track", *words, "--trials", "1", "--study", "bare", "--storage", store, "-q") == 0
    meta_track = tuner.trials(study="bare", storage=store).meta["search"]["track"]
    assert meta_track == uri  # stored with the study, so its workers log there too
    runs = _runs(uri, "bare")
    assert sorted(r.data.tags.get("cnntune.trial") for r in runs if "cnntune.trial" in r.data.tags) == ["0", "1"]
    # The variable alone turns nothing on.
    assert cnntune("search", *words, "--trials", "1", "--study", "plain", "--storage", store, "-q") == 0
    assert tuner.trials(study="plain", storage=store).meta["search"].get("track") is None


def test_the_rest_client_sends_mlflows_credentials_and_reads_its_errors(monkeypatch):
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from tuner.tracking._server import Rest, TrackerError, needs_client

    seen: list[tuple[str, str | None]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append((self.path, self.headers.get("Authorization")))
            body = json.dumps({"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no such experiment"}).encode()
            self.send_response(404)
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            seen.append((self.path, self.headers.get("Authorization")))
            self.send_response(403)
            self.end_headers()
            self.wfile.write(json.dumps({"error_code": "PERMISSION_DENIED", "message": "read only"}).encode())

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    try:
        for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN",
                    "CNNTUNE_MLFLOW_CLIENT", "MLFLOW_TRACKING_AUTH"):
            monkeypatch.delenv(key, raising=False)
        assert Rest(f"http://ann:s%40cret@127.0.0.1:{port}/").find_experiment("x") is None  # 404: not there
        monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "tok")
        with pytest.raises(TrackerError, match="PERMISSION_DENIED: read only"):
            Rest(f"http://127.0.0.1:{port}").create_run("1", "r", {})
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "bob")
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "pw")
        Rest(f"http://127.0.0.1:{port}").find_experiment("x")
    finally:
        server.shutdown()
    assert seen[0] == ("/api/2.0/mlflow/experiments/get-by-name?experiment_name=x", "Basic YW5uOnNAY3JldA==")
    assert seen[1] == ("/api/2.0/mlflow/runs/create", "Bearer tok")
    assert seen[2][1] == "Basic Ym9iOnB3"  # the variables win over the token
    assert not needs_client("https://mlflow.example") and needs_client("sqlite:///m.db")
    monkeypatch.setenv("CNNTUNE_MLFLOW_CLIENT", "1")
    assert needs_client("https://mlflow.example")
