"""Training-time label tricks: one-hot labels, MixUp / CutMix batches, and a trial that trains with them."""

from __future__ import annotations

import numpy as np
import pytest

import search_spaces
from tuner import hp as H
from tuner.trial import fit_options, run_trial
from tuner.trial._mixing import mix_batch, mixed_batches, one_hot


def _batch(n: int = 8, size: int = 16, classes: int = 8):
    # Image i is the constant i * 10, so every pixel tells which image it came from.
    x = (np.arange(n, dtype=np.uint8) * 10)[:, None, None, None] * np.ones((1, size, size, 3), dtype=np.uint8)
    return x, one_hot(np.arange(n) % classes, classes)


def test_one_hot():
    out = one_hot(np.array([2, 0, 1]), 4)
    assert out.dtype == np.float32 and out.tolist() == [[0, 0, 1, 0], [1, 0, 0, 0], [0, 1, 0, 0]]


def test_mixup_blends_images_and_labels_in_one_proportion():
    x, y = _batch()  # 8 images of 8 classes: image i is class i
    images, labels = mix_batch(x, y, "mixup", 0.4, np.random.default_rng(3))
    assert images.dtype == np.uint8 and images.shape == x.shape and labels.dtype == np.float32
    np.testing.assert_allclose(labels.sum(axis=1), 1.0, rtol=1e-6)
    shares = {round(float(labels[i, i]), 6) for i in range(8) if labels[i, i] < 1}
    assert len(shares) == 1 and 0 < shares.pop() < 1  # one lam for the batch
    for i in range(8):
        others = [c for c in np.nonzero(labels[i])[0] if c != i]
        partner = int(others[0]) if others else i
        lam = float(labels[i, i])
        assert int(images[i, 0, 0, 0]) == pytest.approx(lam * 10 * i + (1 - lam) * 10 * partner, abs=0.5)
        assert np.all(images[i] == images[i, 0, 0, 0])


def test_cutmix_pastes_a_box_whose_area_is_the_partners_label_share():
    x, y = _batch()
    for seed in range(5):
        images, labels = mix_batch(x, y, "cutmix", 1.0, np.random.default_rng(seed))
        np.testing.assert_allclose(labels.sum(axis=1), 1.0, rtol=1e-6)
        for i in range(len(x)):
            pasted = float(np.mean(images[i, :, :, 0] != x[i, 0, 0, 0]))  # the partner's pixels
            own = labels[i, np.nonzero(y[i])[0][0]]
            # A box pasted from the image itself changes nothing and leaves its label whole.
            assert pasted == pytest.approx(1.0 - own, abs=1e-6) or own == pytest.approx(1.0)


def test_mix_none_and_reproducible_draws():
    x, y = _batch()
    same = mix_batch(x, y, "none", 0.2, np.random.default_rng(0))
    assert same[0] is x and same[1] is y
    a = mix_batch(x, y, "cutmix", 0.5, np.random.default_rng(7))
    b = mix_batch(x, y, "cutmix", 0.5, np.random.default_rng(7))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    with pytest.raises(ValueError, match="mix must be"):
        mix_batch(x, y, "blend", 0.2, np.random.default_rng(0))


def test_mixed_batches_shuffle_per_epoch_and_resume_where_they_were():
    x, y = _batch(n=10)
    run = mixed_batches(x, y, 4, mix="mixup", alpha=0.3, seed=5)
    assert len(run) == 3
    epochs = []
    for _ in range(3):
        run.on_epoch_begin()
        epochs.append([run[i] for i in range(len(run))])
    assert [len(b[0]) for b in epochs[0]] == [4, 4, 2]
    assert not np.array_equal(epochs[0][0][0], epochs[1][0][0])  # another order, another mix
    resumed = mixed_batches(x, y, 4, mix="mixup", alpha=0.3, seed=5, initial_epoch=2)
    resumed.on_epoch_begin()
    for (xa, ya), (xb, yb) in zip(epochs[2], [resumed[i] for i in range(len(resumed))]):
        assert np.array_equal(xa, xb) and np.array_equal(ya, yb)


def test_fit_options_read_the_training_step():
    opts = fit_options({"epochs": 3, "mix": "cutmix", "mix_alpha": 1.0})
    assert (opts.mix, opts.mix_alpha, opts.soft_targets) == ("cutmix", 1.0, True)
    assert fit_options({"epochs": 3, "label_smoothing": 0.1}).soft_targets
    assert not fit_options({"epochs": 3, "label_smoothing": 0.0, "mix": "none"}).soft_targets


def test_a_trial_with_cutmix_and_label_smoothing_reports_true_accuracies(tmp_path):
    keras = pytest.importorskip("keras")
    from tuner.data import load_dataset

    data = load_dataset("synthetic", image_size=32)
    space = search_spaces.modern
    params = H.resolve(space, H.Defaults({
        "body": "resnet", "res_width": 8, "res_blocks": 1, "head": "gap", "epochs": 2, "mix": "cutmix",
        "mix_alpha": 1.0, "label_smoothing": 0.1, "optimizer": "adamw", "learning_rate": 3e-3,
        "lr_schedule": "one_cycle", "augment_policy": "trivialaugment", "zoom_range": 0.0}))
    out = run_trial(space, params, data, seed=0, model_path=tmp_path / "m.keras")
    assert out.epochs_run == 2 and len(out.history["val_accuracy"]) == 2
    keras.backend.clear_session()
    model = keras.saving.load_model(tmp_path / "m.keras")
    probs = np.asarray(model.predict(data.x_test, verbose=0))  # raw uint8 images in, probabilities out
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    # The recorded figures are accuracies on class numbers, whatever labels the loss trained on.
    assert out.test_accuracy == pytest.approx(float(np.mean(probs.argmax(axis=1) == data.y_test)), abs=1e-6)
    val = np.mean(np.asarray(model.predict(data.x_val, verbose=0)).argmax(axis=1) == data.y_val)
    assert out.val_accuracy == pytest.approx(float(val), abs=1e-6)
