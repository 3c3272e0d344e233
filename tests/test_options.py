"""One options type (``tuner.options.SearchOptions``): the command line is generated from it, the API takes it, the
study stores it as one versioned record, and workers, re-evaluation and ``reproduce`` read it back whole."""

from __future__ import annotations

import inspect
from dataclasses import fields

import pytest
import typer

import tuner
from conftest import SYN, FakeRunner, run_cli
from tuner.errors import CnntuneError
from tuner.options import STORED_VERSION, SearchOptions, option_fields


def _cli_params(command: str) -> dict[str, typer.models.OptionInfo]:
    from tuner.cli import app

    callback = next(c.callback for c in app.registered_commands if c.name == command)
    return {name: p.default for name, p in inspect.signature(callback).parameters.items()}


@pytest.mark.parametrize("command", ["search", "worker", "reproduce"])
def test_each_commands_options_are_the_fields_flag_default_and_help(command):
    params = _cli_params(command)
    for f, mode in option_fields(command):
        info = params[f.name]
        flag = "--" + f.name.replace("_", "-")
        assert any(decl.split("/")[0] == flag for decl in info.param_decls), (f.name, info.param_decls)
        assert info.help == f.metadata["helps"].get(command, f.metadata["help"])
        if mode == "option":
            assert info.default == f.default, f.name
        else:
            assert info.default in (None, ...), f.name
    # Nothing else but the words and the command's own display flags.
    own = {"search": {"words", "quiet", "verbose"}, "worker": {"worker_id", "quiet", "verbose"},
           "reproduce": {"words", "seeds", "out_dir", "quiet", "verbose"}}[command]
    assert set(params) == {f.name for f, _ in option_fields(command)} | own


def test_the_api_takes_the_options_object():
    assert len(inspect.signature(tuner.search).parameters) <= 6
    assert list(inspect.signature(tuner.search).parameters)[:2] == ["words", "options"]
    with pytest.raises(TypeError):
        tuner.search(["space=basenet"], trials=2)  # no keyword catch-all


def test_options_are_checked_when_made_and_combined_when_resolved():
    with pytest.raises(CnntuneError, match="--trials must be at least 1. Received: 0"):
        SearchOptions(trials=0)
    with pytest.raises(CnntuneError, match="--reeval-share must be at least 0 and below 1"):
        SearchOptions(reeval_share=1.0)
    assert SearchOptions(mixed_precision="bf16").mixed_precision == "bfloat16"
    assert SearchOptions(objective="accuracy,params").objective == ("accuracy", "params")
    with pytest.raises(CnntuneError, match="--sampler is an Optuna engine option"):
        SearchOptions(engine="keras-tuner", sampler="random").resolved()
    with pytest.raises(CnntuneError, match="--chief is a Keras Tuner engine option"):
        SearchOptions(chief="127.0.0.1:8000").resolved()
    # The default strategy: under TPE with one objective; the share of --timeout only with a --timeout.
    plain = SearchOptions().resolved()
    assert (plain.warm_start, plain.grow, plain.reeval_share, plain.sampler, plain.pruner) == (8, True, 0.0, "tpe",
                                                                                             "none")
    assert SearchOptions(timeout=600).resolved().reeval_share == 0.25
    kt = SearchOptions(engine="keras-tuner").resolved()
    assert (kt.tuner, kt.sampler, kt.warm_start, kt.grow) == ("random", None, 0, False)
    assert SearchOptions().resolved().resolved() == SearchOptions().resolved()
    with pytest.raises(CnntuneError, match="unknown option 'trails'"):
        SearchOptions().replace(trails=3)


def test_the_stored_record_is_versioned_and_reads_back_whole():
    options = SearchOptions(trials=7, seed=3, timeout=60, isolate=True, jit=False, objective="accuracy,latency",
                            study="x", storage="sqlite:///x.db").resolved()
    record = options.stored()
    assert record["version"] == STORED_VERSION and record["objective"] == ["accuracy", "latency"]
    stored = {f.name for f in fields(SearchOptions) if f.metadata["stored"]}
    assert set(record) == stored | {"version"}
    # Run options (where, how long, how many processes) are not the study's.
    assert "timeout" not in record and "storage" not in record and "workers" not in record
    back = SearchOptions.from_meta({"search": record}, "x", timeout=60, study="x", storage="sqlite:///x.db")
    assert back == options
    with pytest.raises(CnntuneError, match="newer cnntune"):
        SearchOptions.from_meta({"search": {**record, "version": STORED_VERSION + 1}}, "x")
    with pytest.raises(CnntuneError, match="no stored search settings"):
        SearchOptions.from_meta({}, "x")


def test_a_study_written_before_the_options_type_still_opens(store):
    """A version-1 study (its ``settings`` dict, as cnntune wrote it before this type) is resumed by a search,
    joined by a worker and re-evaluated with its own stored options; the next search replaces its record."""
    import optuna

    tuner.search(["space=basenet", *SYN], SearchOptions(trials=1, storage=store, study="old", seed=2),
                 runner=FakeRunner())
    study = optuna.load_study(study_name="old", storage=store)
    meta = dict(study.user_attrs["cnntune"])
    del meta["search"]
    meta["settings"] = {"engine": "optuna", "trials": 2, "seed": 2, "baselines": True, "max_failures": 5,
                        "sampler": "tpe", "pruner": "none", "tuner": None, "warm_start": 0, "reeval_share": 0.0,
                        "reeval_top": 3, "heartbeat_grace": None, "isolate": False, "objective": ["accuracy"],
                        "precision": "float32", "jit": None, "device_data": "auto"}  # no grow, climb: older still
    study.set_user_attr("cnntune", meta)
    stored = SearchOptions.from_meta(meta, "old")
    assert (stored.trials, stored.seed, stored.grow, stored.climb, stored.mixed_precision) == (2, 2, False, 0.0,
                                                                                               "float32")
    result = tuner.worker("old", store, runner=FakeRunner())
    assert len(result.ran) == 1  # the stored budget of 2: one more searched trial
    report = tuner.reevaluate(study="old", storage=store, top=2, seeds=1, runner=FakeRunner())
    assert len(report.ran) == 2
    tuner.search([], SearchOptions(trials=3, storage=store, study="old"), runner=FakeRunner())
    meta = optuna.load_study(study_name="old", storage=store).user_attrs["cnntune"]
    assert "settings" not in meta and meta["search"]["version"] == STORED_VERSION and meta["search"]["trials"] == 3


def test_a_worker_sets_only_its_own_options(store):
    tuner.search(["space=basenet", *SYN], SearchOptions(trials=1, storage=store, study="w", workers=0))
    with pytest.raises(CnntuneError, match="it sets only .*Received: seed"):
        tuner.worker("w", store, {"seed": 3})
    with pytest.raises(CnntuneError, match="searched by the optuna engine"):
        tuner.worker("w", store, {"engine": "keras-tuner"})
    result = run_cli("worker", "--study", "w", "--storage", store, "--max-failures", "x")
    assert result.exit_code != 0 and "Traceback" not in result.output


def test_reevaluation_and_reproduce_train_as_the_study_stored(store):
    class Recording(FakeRunner):
        def __init__(self):
            super().__init__()
            self.kwargs = []

        def __call__(self, space, params, data, *, seed, model_path, on_epoch=None, **kwargs):
            self.kwargs.append(kwargs)
            return super().__call__(space, params, data, seed=seed, model_path=model_path)

    tuner.search(["space=basenet", *SYN], SearchOptions(trials=2, storage=store, study="s", jit=False,
                                                        device_data="off"), runner=FakeRunner())
    again = Recording()
    tuner.reevaluate(study="s", storage=store, top=2, seeds=1, runner=again)
    assert again.kwargs and all(k.get("jit") is False and k.get("device_data") == "off" for k in again.kwargs)
    repro = Recording()
    tuner.reproduce(["space=normalization", *SYN], SearchOptions(storage=store, jit=False), seeds=1, runner=repro)
    assert repro.kwargs and all(k.get("jit") is False for k in repro.kwargs)
    meta = tuner.trials(study="reproduce-normalization", storage=store).meta
    assert SearchOptions.from_meta(meta, "reproduce-normalization").jit is False
