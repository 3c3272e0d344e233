"""Searches end to end through the Python API: records, baselines, resume, pins, export."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import tuner
from conftest import SYN



def test_two_trial_search_on_synthetic_records_everything(store):
    result = tuner.search(["space=basenet", *SYN], tuner.SearchOptions(trials=2, storage=store, study="s1"))
    view = tuner.trials(study="s1", storage=store)
    assert [r.state for r in view.records] == ["complete"] * 3
    first = view.records[0]
    assert first.baseline == "basenet" and first.reported == pytest.approx(31.68)
    for rec in view.records:
        assert 0.0 <= rec.val_accuracy <= 1.0 and 0.0 <= rec.test_accuracy <= 1.0
        assert rec.n_params > 0 and rec.seconds > 0
        assert rec.seed == rec.number  # --seed 0: trial n trains with seed n
        assert rec.backend == "tensorflow"
        assert set(rec.history) >= {"loss", "accuracy", "val_loss", "val_accuracy"}
        assert len(rec.history["loss"]) == 1
        assert Path(rec.model_path).is_file()
        assert rec.params["epochs"] == 1
    assert {r.number for r in result.ran} == {0, 1, 2}
    assert view.meta["space"] == "basenet" and view.meta["data"]["name"] == "synthetic"
    # The model files live next to the study's SQLite file.
    assert Path(view.records[0].model_path).parent == Path(store[len("sqlite:///"):]).parent / "cnntune_artifacts" / "s1"


def test_search_on_the_real_bird_photos(store, birds_dir):
    words = ["space=basenet", "data=cub200", f"data_dir={birds_dir}", "image_size=32", "epochs=1"]
    tuner.search(words, tuner.SearchOptions(trials=2, storage=store, study="birds", seed=3))
    view = tuner.trials(study="birds", storage=store)
    assert len(view.records) == 3 and all(r.state == "complete" for r in view.records)
    assert view.meta["num_classes"] == 50 and view.meta["n_val"] == 300 and view.meta["n_test"] == 1449
    assert view.meta["class_names"][0] == "Black_footed_Albatross"
    # BaseNet on 32x32x3 with 50 classes: 24,197 - 25*51 + 50*51.
    assert view.records[0].n_params == 24197 + 25 * 51
    assert [r.seed for r in view.records] == [3, 4, 5]


def test_resume_adds_trials_and_never_reruns_baselines(store):
    tuner.search(["space=basenet", *SYN], tuner.SearchOptions(trials=1, storage=store, study="r"))
    again = tuner.search(["space=basenet", *SYN], tuner.SearchOptions(trials=1, storage=store, study="r"))
    assert again.ran == [] and "already holds 1" in again.message
    more = tuner.search(["space=basenet", *SYN], tuner.SearchOptions(trials=2, storage=store, study="r"))
    assert [r.number for r in more.ran] == [2]
    records = tuner.trials(study="r", storage=store).records
    assert [r.baseline for r in records] == ["basenet", None, None]


def test_resume_from_the_study_alone(store):
    tuner.search(["space=basenet", *SYN], tuner.SearchOptions(trials=1, storage=store, study="r2", baselines=False))
    # No words at all: the study remembers its space, data and pins.
    tuner.search([], tuner.SearchOptions(trials=2, storage=store, study="r2", baselines=False))
    records = tuner.trials(study="r2", storage=store).records
    assert len(records) == 2 and all(r.params["epochs"] == 1 for r in records)


def test_baselines_are_the_first_trials_and_export_the_study_architecture(store, tmp_path):
    tuner.search(["space=improved", *SYN], tuner.SearchOptions(trials=1, storage=store, study="imp"))
    records = tuner.trials(study="imp", storage=store).records
    assert [r.baseline for r in records] == ["basenet", "final", None]
    final = records[1]
    assert final.params["conv3_filters"] == 106 and final.params["bn_conv"] == "after"
    # The final model on 3 synthetic classes: 689,715 minus the 25-class head plus a 3-class head.
    delta_head = (50 * 25 + 25 + 4 * 25) - (50 * 3 + 3 + 4 * 3)
    assert final.n_params == 689715 - delta_head
    path = tuner.export(tmp_path / "final.keras", study="imp", storage=store, trial=final.number)
    import keras

    model = keras.saving.load_model(path)
    names = [type(layer).__name__ for layer in model.layers]
    assert names.count("Conv2D") == 3 and names.count("BatchNormalization") == 5
    assert names.count("MaxPooling2D") == 1
    assert model.count_params() == final.n_params


def test_pins_are_used_and_never_sampled(store):
    tuner.search(["space=basenet", *SYN, "learning_rate=0.01", "batch_size=16"],
                 tuner.SearchOptions(trials=2, storage=store, study="p", baselines=False))
    import optuna

    study = optuna.load_study(study_name="p", storage=store)
    for t in study.trials:
        assert t.user_attrs["config"]["learning_rate"] == 0.01 and t.user_attrs["config"]["batch_size"] == 16
        assert "learning_rate" not in t.params and "batch_size" not in t.params


def test_grid_sampler_and_timeout(store):
    tuner.search(["space=basenet", *SYN, "learning_rate=0.01"],
                 tuner.SearchOptions(trials=50, storage=store, study="g", sampler="grid", baselines=False,
                                     timeout=0.001))
    records = tuner.trials(study="g", storage=store).records
    # The timeout lets the first trial finish and starts no other.
    assert len(records) == 1 and records[0].state == "complete"


def test_best_reports_improvement_over_each_baseline(store):
    tuner.search(["space=basenet", *SYN], tuner.SearchOptions(trials=2, storage=store, study="b"))
    report = tuner.best(study="b", storage=store)
    records = tuner.trials(study="b", storage=store).records
    assert report.best.val_accuracy == max(r.val_accuracy for r in records)
    (comp,) = report.comparisons
    assert comp.baseline.baseline == "basenet"
    assert comp.d_val_pp == pytest.approx(100 * (report.best.val_accuracy - comp.baseline.val_accuracy))
    assert report.noise_pp is not None and report.noise_pp > 0


def test_export_round_trips_raw_uint8_images(store, tmp_path):
    tuner.search(["space=basenet", *SYN], tuner.SearchOptions(trials=1, storage=store, study="e"))
    path = tuner.export(tmp_path / "model.keras", study="e", storage=store)
    meta = json.loads((tmp_path / "model.json").read_text())
    assert meta == tuner.read_export_metadata(path)
    assert meta["space"] == "basenet" and meta["class_names"] == ["class_0", "class_1", "class_2"]
    assert meta["input_dtype"] == "uint8" and meta["seed"] is not None and meta["epoch"] == 1
    import keras

    model = keras.saving.load_model(path)
    images = np.random.default_rng(0).integers(0, 256, size=(5, 32, 32, 3), dtype=np.uint8)
    probs = np.asarray(model.predict(images, verbose=0))
    assert probs.shape == (5, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    best = tuner.best(study="e", storage=store).best
    original = keras.saving.load_model(best.model_path)
    np.testing.assert_allclose(np.asarray(original.predict(images, verbose=0)), probs, rtol=1e-6)
