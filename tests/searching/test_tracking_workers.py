"""``search --workers 2 --track``, end to end: real ``cnntune search`` and ``cnntune worker`` processes, a real MLflow
server, everything read back through ``MlflowClient``. Training is scripted (a runner installed in every process by
a ``sitecustomize`` module) so that the study holds, whatever the timing, a baseline, a failed trial, a pruned trial
and the search's re-evaluation of its top configurations."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

import tuner

# Trial n trains with seed n (--seed 0): the scripted runner fails trial 2 and prunes trial 5. Trial 5 first waits
# for three completed searched trials, so that the median pruner has epochs to compare it with.
SCRIPTED = textwrap.dedent('''
    import os
    import time


    def _completed_searched():
        import optuna
        from tuner.store import open_storage

        study = optuna.load_study(study_name=os.environ["SCRIPTED_STUDY"],
                                  storage=open_storage(os.environ["SCRIPTED_STORAGE"]))
        return sum(1 for t in study.get_trials(deepcopy=False)
                   if t.state.name == "COMPLETE" and not t.user_attrs.get("baseline") and t.intermediate_values)


    def run(space, params, data, *, seed, model_path, on_epoch=None, should_stop=None, **kwargs):
        from tuner.trial import TrialOutcome

        if seed == 2:
            raise RuntimeError("scripted failure")
        deadline = time.monotonic() + 120
        while seed == 5 and _completed_searched() < 3 and time.monotonic() < deadline:
            time.sleep(0.2)
        history = {"loss": [], "val_accuracy": []}
        for epoch in range(1, int(params["epochs"]) + 1):
            time.sleep(0.05)
            logs = {"loss": 1.0 / epoch, "val_accuracy": 0.0 if seed == 5 else 0.1 * epoch + 0.001 * (seed % 997)}
            for key, value in logs.items():
                history[key].append(value)
            on_epoch(epoch, logs)
            if should_stop is not None and should_stop(epoch, logs):
                break
        best = max(history["val_accuracy"])
        return TrialOutcome(val_accuracy=best, test_accuracy=best - 0.05, n_params=10, history=history,
                            best_epoch=len(history["loss"]), epochs_run=len(history["loss"]), seconds=0.2,
                            model_path=None, backend="fake")
''')

SITECUSTOMIZE = textwrap.dedent('''
    import os

    if os.environ.get("SCRIPTED_STUDY"):
        import scripted_runner
        import tuner.trial._objective

        tuner.trial._objective.run_trial = scripted_runner.run
''')


@pytest.mark.e2e
def test_workers_log_every_kind_of_trial_and_the_reevaluation_under_their_own_runs(tmp_path, mlflow_server):
    from mlflow.tracking import MlflowClient

    (tmp_path / "scripted_runner.py").write_text(SCRIPTED)
    (tmp_path / "sitecustomize.py").write_text(SITECUSTOMIZE)
    store, study = f"journal:{tmp_path}/studies.journal", "workers-tracked"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
           "SCRIPTED_STUDY": study, "SCRIPTED_STORAGE": store, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("MLFLOW_TRACKING_URI", None)
    done = subprocess.run(
        [sys.executable, "-m", "tuner.cli", "search", "space=basenet", "data=synthetic", "epochs=3", "--trials", "5",
         "--workers", "2", "--pruner", "median", "--timeout", "300", "--seed", "0", "--study", study, "--storage",
         store, "--track", mlflow_server], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "warning" not in done.stdout + done.stderr, done.stdout + done.stderr
    records = tuner.trials(study=study, storage=store).records
    by_state = {r.state for r in records}
    assert {"complete", "fail", "pruned"} <= by_state, [(r.number, r.state) for r in records]
    reevals = [r for r in records if r.tags.get("reeval_of") is not None]
    assert reevals and any(r.baseline for r in records)

    client = MlflowClient(tracking_uri=mlflow_server)
    runs = client.search_runs([client.get_experiment_by_name(study).experiment_id], max_results=500)
    parents = {r.info.run_id: r for r in runs if "mlflow.parentRunId" not in r.data.tags}
    roles = sorted(p.data.tags["cnntune.role"] for p in parents.values())
    assert roles == ["search", "worker", "worker"], roles  # one per process that ran trials
    assert all(p.info.status == "FINISHED" for p in parents.values())
    children = {int(r.data.tags["cnntune.trial"]): r for r in runs if "mlflow.parentRunId" in r.data.tags}
    assert sorted(children) == [r.number for r in records]  # one run per trial, none twice
    for rec in records:
        run = children[rec.number]
        parent = parents[run.data.tags["mlflow.parentRunId"]]
        # The search process ran the re-evaluation; its workers ran the search's trials.
        assert parent.data.tags["cnntune.role"] == ("search" if rec in reevals else "worker")
        assert run.data.tags["cnntune.state"] == rec.state and run.data.tags["cnntune.seed"] == str(rec.seed)
        assert run.data.params == {k: str(v) for k, v in rec.params.items()}
        history = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, "val_accuracy"))
        if rec.state == "complete":
            assert run.info.status == "FINISHED"
            assert history == [(i + 1, v) for i, v in enumerate(rec.history["val_accuracy"])]
            assert run.data.metrics["final_val_accuracy"] == rec.val_accuracy
        elif rec.state == "pruned":
            assert run.info.status == "FINISHED" and run.data.tags["cnntune.fail_kind"] == "pruned"
            assert run.data.tags["cnntune.pruned_at_epoch"] == str(rec.epochs_run) == "2"
            assert [step for step, _ in history] == [1, 2]
        else:
            assert run.info.status == "FAILED" and run.data.tags["cnntune.fail_kind"] == "error"
            assert "scripted failure" in run.data.tags["cnntune.reason"]
        if rec.baseline:
            assert run.data.tags["cnntune.baseline"] == rec.baseline and run.data.tags["cnntune.kind"] == "baseline"
        if rec in reevals:
            assert run.data.tags["cnntune.reeval_of"] == str(rec.tags["reeval_of"])
            assert int(run.data.tags["cnntune.reeval_of"]) in children
