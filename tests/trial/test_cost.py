"""What a trial costs, recorded as facts (``tuner.trial``: multiply-accumulates and activations per image), and the
strategy's cost from them (``Strategy.cost``): what growth is decided on, so that a seeded search repeats itself."""

from __future__ import annotations

import keras

import tuner
from conftest import SYN
from tuner.records import TrialRecord
from tuner.searching import ACTIVATION_COST, Strategy
from tuner.trial import activations, multiply_adds


def test_counts_of_a_small_cnn_by_hand():
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(6, 5)(inputs)  # 28 x 28 x 6 outputs, 5 * 5 * 3 * 6 each
    x = keras.layers.MaxPooling2D()(x)  # 14 x 14 x 6
    x = keras.layers.Conv2D(16, 5)(x)  # 10 x 10 x 16 outputs, 5 * 5 * 6 * 16 each
    x = keras.layers.Flatten()(x)  # 1,600
    outputs = keras.layers.Dense(10)(x)  # 1,600 * 10
    model = keras.Model(inputs, outputs)
    assert multiply_adds(model) == 28 * 28 * 5 * 5 * 3 * 6 + 10 * 10 * 5 * 5 * 6 * 16 + 1600 * 10
    assert activations(model) == 32 * 32 * 3 + 28 * 28 * 6 + 14 * 14 * 6 + 10 * 10 * 16 + 1600 + 10
    # A model inside a model counts its layers once.
    outer = keras.Model(inputs, model(inputs))
    assert multiply_adds(outer) == multiply_adds(model)


def test_every_trial_records_its_cost_and_the_strategy_reads_it(store):
    tuner.search(["space=basenet", *SYN], tuner.SearchOptions(trials=1, storage=store, study="c", baselines=False))
    (rec,) = tuner.trials(study="c", storage=store).records
    assert rec.macs > 0 and rec.activations > 0 and rec.epochs_run == 1
    assert Strategy.cost(rec) == rec.macs + ACTIVATION_COST * rec.activations
    # A trial of a runner that records no counts has no cost: growth never decides on it.
    assert Strategy.cost(TrialRecord(number=0, state="complete", params={}, epochs_run=3, seconds=5.0)) is None
