"""--artifacts in object storage (an S3-protocol server on 127.0.0.1): checkpoints and model files go to the bucket,
a retry resumes its predecessor's checkpoint from there, best --export writes to a bucket, and a bucket that cannot
be written is one error line before any data is loaded."""

from __future__ import annotations

import json

import numpy as np
import pytest

import tuner
from conftest import S3_SECRET, SYN, FakeRunner, one_line_error, run_cli, s3_keys
from conftest import sample_checkpoint as checkpoint
from tuner.errors import StorageError
from tuner.store import Location, open_storage, study_names
from tuner.trial import _checkpoint


def test_a_location_in_a_bucket_writes_whole_objects_reads_them_in_ranges_and_removes_a_prefix(s3):
    folder = Location.of(f"{s3}/a/b/")
    assert folder.remote and folder.local is None and folder.where == f"{s3}/a/b"
    (folder / "x.bin").write_bytes(b"first")
    (folder / "x.bin").write_bytes(b"second")  # replaced whole
    (folder / "c" / "y.bin").write_bytes(b"y")
    with (folder / "x.bin").open() as f:
        f.seek(2)
        assert f.read() == b"cond"
    assert (folder / "x.bin").exists() and not (folder / "nothing").exists()
    assert not (folder / "nothing").fetch("unused")
    folder.remove()
    folder.remove()  # nothing left: nothing to do
    assert s3_keys(s3) == []
    folder.check_writable()
    assert s3_keys(s3) == []  # the probe removed what it wrote


def test_a_checkpoint_in_a_bucket_reads_back_and_its_record_needs_no_download_of_the_arrays(s3):
    written = checkpoint(3, best_epoch=2)
    stored = _checkpoint.write(f"{s3}/checkpoints/trial_0000", written)
    assert stored.where == f"{s3}/checkpoints/trial_0000/checkpoint.npz"
    back = _checkpoint.read(f"{s3}/checkpoints/trial_0000")
    assert back.epoch == 3 and back.best_epoch == 2 and back.history == written.history
    for a, b in zip(back.best_weights, written.best_weights):
        np.testing.assert_array_equal(a, b)
    assert _checkpoint.read_meta(f"{s3}/checkpoints/trial_0000")["epoch"] == 3
    assert _checkpoint.read(f"{s3}/checkpoints/trial_0009") is None
    _checkpoint.discard(f"{s3}/checkpoints/trial_0000")
    assert s3_keys(s3) == []


class _InterruptedOnce(FakeRunner):
    """Writes a checkpoint of epoch 2 (or one more than it resumed from) and is interrupted on its first call."""

    def __init__(self):
        super().__init__()
        self.kwargs: list[dict] = []

    def __call__(self, space, params, data, *, seed, model_path, **kwargs):
        self.kwargs.append(kwargs)
        resumed = _checkpoint.read_meta(kwargs["resume_from"]) if kwargs.get("resume_from") else None
        ckpt = checkpoint(2 if resumed is None else resumed["epoch"] + 1)
        ckpt.config = dict(params)
        _checkpoint.write(kwargs["checkpoint_dir"], ckpt)
        if len(self.kwargs) == 1:
            raise KeyboardInterrupt
        return super().__call__(space, params, data, seed=seed, model_path=model_path, **kwargs)


def test_a_retry_resumes_its_predecessors_checkpoint_from_the_bucket(store, s3, tmp_path):
    words = ["space=basenet", "data=synthetic", "epochs=4"]
    options = tuner.SearchOptions(trials=1, storage=store, study="b", baselines=False, artifacts=f"{s3}/runs")
    runner = _InterruptedOnce()
    with pytest.raises(KeyboardInterrupt):
        tuner.search(words, options, runner=runner)
    folder = f"{s3}/runs/b/checkpoints/trial_0000"
    assert runner.kwargs[0]["checkpoint_dir"] == folder
    assert s3_keys(s3) == ["runs/b/checkpoints/trial_0000/checkpoint.npz"]
    # The same search again, without --artifacts: the study keeps its bucket.
    tuner.search(words, tuner.SearchOptions(trials=1, storage=store, study="b", baselines=False), runner=runner)
    assert runner.kwargs[1]["resume_from"] == folder and runner.kwargs[1]["checkpoint_dir"] == folder
    records = tuner.trials(study="b", storage=store).records
    assert [(r.state, r.tags.get("retry_of")) for r in records] == [("fail", None), ("complete", 0)]
    assert s3_keys(s3) == []  # the trial is over: its checkpoint went
    assert not (tmp_path / "cnntune_artifacts" / "b" / "checkpoints").exists()  # nothing of it on this host


@pytest.mark.slow
def test_models_go_to_the_bucket_and_best_exports_from_it_to_a_bucket_or_a_file(store, s3, tmp_path):
    import keras

    result = run_cli("search", "space=basenet", *SYN, "--trials", "1", "--no-baselines", "--study", "m",
                     "--storage", store, "--artifacts", f"{s3}/runs", "-q")
    assert result.exit_code == 0, result.output
    (rec,) = tuner.trials(study="m", storage=store).records
    assert rec.state == "complete" and rec.model_path == f"{s3}/runs/m/trial_0000.keras"
    assert s3_keys(s3) == ["runs/m/trial_0000.keras"]
    assert not list((tmp_path / "cnntune_artifacts").rglob("*.keras"))  # staged here, uploaded, removed

    result = run_cli("best", "--study", "m", "--storage", store, "--export", f"{s3}/out/model.keras")
    assert result.exit_code == 0, result.output
    assert f"exported to {s3}/out/model.keras" in result.output and "model.json" in result.output
    assert s3_keys(s3) == ["out/model.json", "out/model.keras", "runs/m/trial_0000.keras"]
    with Location.of(f"{s3}/out/model.keras").fetched() as path:
        model = keras.saving.load_model(path)
    with Location.of(f"{s3}/out/model.json").open() as f:
        info = json.load(f)
    images = np.zeros((2, *info["input_shape"]), dtype="uint8")
    assert model.predict(images, verbose=0).shape == (2, len(info["class_names"]))
    result = run_cli("best", "--study", "m", "--storage", store, "--export", str(tmp_path / "local.keras"))
    assert result.exit_code == 0, result.output
    assert tuner.read_export_metadata(tmp_path / "local.keras")["trial"] == 0


def test_a_bucket_that_cannot_be_written_is_one_error_line_and_no_secret(store, s3, tmp_path, monkeypatch):
    missing = s3.replace("cnntune-", "cnntune-missing-")
    result = run_cli("search", "space=basenet", *SYN, "--trials", "1", "--study", "x", "--storage", store,
                     "--artifacts", f"{missing}/runs")
    line = one_line_error(result, f"cannot write artifacts to {missing}/runs/x")
    assert S3_SECRET not in line
    assert "x" not in study_names(open_storage(store))  # refused before the study was made
    one_line_error(run_cli("search", "space=basenet", *SYN, "--trials", "1", "--study", "y", "--storage", store,
                           "--artifacts", "nosuch://bucket/runs"), "cannot use nosuch://bucket/runs/y")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-" + S3_SECRET)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens on the discard port
    with pytest.raises(StorageError, match=r"cannot write artifacts to s3://") as raised:
        Location.of(f"{s3}/elsewhere").check_writable()
    assert S3_SECRET not in str(raised.value)


def test_an_export_to_a_bucket_that_cannot_be_written_is_refused_before_any_work(store, s3):
    tuner.search(["space=basenet", *SYN], tuner.SearchOptions(trials=1, storage=store, study="e", baselines=False),
                 runner=FakeRunner())
    missing = s3.replace("cnntune-", "cnntune-missing-")
    one_line_error(run_cli("best", "--study", "e", "--storage", store, "--export", f"{missing}/model.keras"),
                   f"cannot write artifacts to {missing}")
    one_line_error(run_cli("best", "--study", "e", "--storage", store, "--export", f"{s3}/model.h5"),
                   "--export needs a file name ending in .keras")


def test_workers_checking_one_bucket_at_once_do_not_trip_over_each_other(s3):
    from concurrent.futures import ThreadPoolExecutor

    folder = Location.of(f"{s3}/runs")
    with ThreadPoolExecutor(4) as pool:  # workers of one study start together and check the same prefix
        list(pool.map(lambda _: folder.check_writable(), range(16)))
    assert s3_keys(s3) == []
