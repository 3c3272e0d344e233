"""Data on the accelerator (``tuner.trial._device_data``): batches gathered on the device, shuffled per epoch from
``(seed, epoch)``, so that a resumed trial trains exactly like the uninterrupted one on every backend.

Marked ``backends``: ``make test-backends`` runs them on JAX and PyTorch too (there, on a CPU, ``auto`` is off, so
the tests ask for ``on``)."""

from __future__ import annotations

import numpy as np
import pytest

import tuner
from conftest import SYN, one_line_error, run_cli
from test_checkpoint import _sigterm_at
from tuner.errors import CnntuneError
from tuner.signals import interruptible
from tuner.trial import check_device_data, device_batches, wanted


def _rows(batches) -> list[int]:
    """The row numbers of one epoch (the test images' first pixel is its row number here)."""
    batches.on_epoch_begin()
    out: list[int] = []
    for i in range(len(batches)):
        x, y = batches[i]
        x, y = np.asarray(x), np.asarray(y)
        assert (x[:, 0, 0, 0] == y).all()  # images and labels stay paired
        out += [int(v) for v in y]
    batches.on_epoch_end()
    return out


@pytest.mark.backends
def test_epochs_are_permutations_drawn_from_the_seed_and_the_epoch():
    n = 50
    x = np.zeros((n, 4, 4, 3), dtype=np.uint8)
    x[:, 0, 0, 0] = np.arange(n)
    y = np.arange(n)
    a = device_batches(x, y, 8, shuffle=True, seed=7)
    first, second = _rows(a), _rows(a)
    assert sorted(first) == list(range(n)) and sorted(second) == list(range(n))  # every row once per epoch
    assert first != second and first != list(range(n))  # reshuffled each epoch
    assert len(a) == 7  # the last batch is partial
    # Starting at epoch 1 (a resumed trial) gives epoch 1's order; another seed, another order.
    assert _rows(device_batches(x, y, 8, shuffle=True, seed=7, initial_epoch=1)) == second
    assert _rows(device_batches(x, y, 8, shuffle=True, seed=8)) != first
    assert _rows(device_batches(x, y, 8, shuffle=False)) == list(range(n))


def test_the_mode_is_checked_and_auto_is_off_without_a_gpu():
    assert check_device_data(None) == "auto"
    with pytest.raises(CnntuneError, match="--device-data must be"):
        check_device_data("gpu")
    assert wanted("on") and not wanted("off")
    assert not wanted("auto")  # no GPU on the test machines


def test_a_bad_device_data_value_is_one_line(store):
    one_line_error(run_cli("search", "space=basenet", *SYN, "--storage", store, "--device-data", "yes"),
                   "--device-data must be")


@pytest.mark.backends
@pytest.mark.slow
def test_a_trial_fed_from_the_device_resumes_exactly(tmp_path):
    import search_spaces
    from tuner.data import load_dataset
    from tuner.hp import Defaults, resolve
    from tuner.trial import run_trial

    space = search_spaces.basenet
    data = load_dataset("synthetic")
    params = {**resolve(space, Defaults()), "epochs": 3}
    folder = tmp_path / "checkpoint"
    seen: list[int] = []
    with pytest.raises(KeyboardInterrupt):
        with interruptible():
            run_trial(space, params, data, seed=5, model_path=None, checkpoint_dir=folder, device_data="on",
                      on_epoch=_sigterm_at(1, seen))
    assert seen == [1]
    resumed = run_trial(space, params, data, seed=5, model_path=None, checkpoint_dir=folder, resume_from=folder,
                        device_data="on")
    whole = run_trial(space, params, data, seed=5, model_path=None, device_data="on")
    assert resumed.extra["device_data"] is True and whole.epochs_run == 3
    for key, values in whole.history.items():
        np.testing.assert_allclose(resumed.history[key], values, rtol=1e-5, atol=1e-6)
    assert resumed.test_accuracy == pytest.approx(whole.test_accuracy)


@pytest.mark.backends
def test_a_search_stores_device_data_for_its_trials(store):
    tuner.search(["space=basenet", *SYN],
                 tuner.SearchOptions(trials=1, storage=store, study="dd", baselines=False, device_data="on"))
    (record,) = tuner.trials(study="dd", storage=store).records
    assert record.state == "complete" and record.tags.get("device_data") is True
