"""The hyperparameter vocabulary and its Optuna adapter."""

from __future__ import annotations

import types

import optuna
import pytest

from tuner.errors import SpaceError
from tuner.hp import Boolean, Choice, Defaults, Fixed, Float, Int, coerce_value, describe, resolve
from tuner.searching.engines import OptunaHP, make_sampler


def _toy_space():
    def declare(hp):
        hp.Choice("body", ["small", "big"], default="small")
        with hp.conditional_scope("body", ["big"]):
            hp.Int("extra_filters", 4, 64, step=4, default=16)
        hp.Float("learning_rate", 1e-4, 1e-1, sampling="log", default=1e-3)
        hp.Boolean("flip", default=True)
        hp.Fixed("epochs", 3)

    return types.SimpleNamespace(declare=declare, BASELINES=[])


def test_defaults_are_the_declared_defaults_and_conditionals_are_inactive():
    space = _toy_space()
    assert resolve(space, Defaults()) == {"body": "small", "learning_rate": 1e-3, "flip": True, "epochs": 3}
    big = resolve(space, Defaults({"body": "big"}))
    assert big["extra_filters"] == 16


def test_describe_finds_conditional_choice_points():
    params = describe(_toy_space())
    assert list(params) == ["body", "extra_filters", "learning_rate", "flip", "epochs"]
    assert params["extra_filters"].conditions[0].name == "body"
    assert not params["epochs"].is_tunable


@pytest.mark.parametrize(
    "param, raw, expected",
    [
        (Int("n", 3, min_value=1, max_value=10), "7", 7),
        (Float("lr", 0.1, min_value=0.0, max_value=1.0), "0.5", 0.5),
        (Boolean("flip", False), "true", True),
        (Boolean("flip", False), "off", False),
        (Choice("opt", "adam", values=("adam", "sgd")), "sgd", "sgd"),
        (Choice("zoom", 0.0, values=(0.0, 0.2, 1.2)), "0.2", 0.2),
        (Fixed("epochs", 15), "2", 2),
    ],
)
def test_coerce_types_command_line_values(param, raw, expected):
    assert coerce_value(param, raw) == expected


@pytest.mark.parametrize(
    "param, raw",
    [
        (Fixed("epochs", 15), "abc"),
        # A fixed positive number (epochs, batch size, learning rate) stays positive and finite when pinned.
        (Fixed("epochs", 15), "0"),
        (Fixed("epochs", 15), "-1"),
        (Fixed("learning_rate", 1e-3), "0"),
        (Fixed("learning_rate", 1e-3), "inf"),
        (Int("n", 3, min_value=1, max_value=10), "11"),
        (Int("n", 4, min_value=4, max_value=64, step=4), "6"),
        (Boolean("flip", False), "maybe"),
        (Choice("opt", "adam", values=("adam", "sgd")), "lbfgs"),
        (Float("lr", 0.1, min_value=0.0, max_value=1.0), "nan"),
    ],
)
def test_coerce_rejects_wrong_values(param, raw):
    with pytest.raises(SpaceError, match=param.name):
        coerce_value(param, raw)


def test_optuna_adapter_suggests_only_active_unpinned_choices():
    space = _toy_space()
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    seen = []
    for _ in range(12):
        trial = study.ask()
        values = resolve(space, OptunaHP(trial, pins={"learning_rate": 0.01}))
        seen.append((dict(trial.params), values))
        study.tell(trial, 0.5)
    for params, values in seen:
        assert "learning_rate" not in params and values["learning_rate"] == 0.01
        assert "epochs" not in params and values["epochs"] == 3
        assert ("extra_filters" in params) == (values["body"] == "big")
    assert {v["body"] for _, v in seen} == {"small", "big"}


def test_grid_sampler_needs_a_finite_space():
    space = _toy_space()
    with pytest.raises(SpaceError, match="learning_rate is continuous"):
        make_sampler("grid", space, {}, seed=0)
    sampler = make_sampler("grid", space, {"learning_rate": 0.01}, seed=0)
    assert isinstance(sampler, optuna.samplers.GridSampler)
