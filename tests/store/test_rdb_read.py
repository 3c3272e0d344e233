"""Trials read straight from an RDB storage's tables (``tuner.store.read_tables``, without Optuna) equal Optuna's own
reading of them, on SQLite, PostgreSQL and MySQL, for every state, objective value and attribute cnntune records;
a store whose Optuna schema the reader does not know is read through Optuna, after one warning."""

from __future__ import annotations

import math
import uuid
import warnings

import pytest

from conftest import storage_url
from tuner.records import TrialRecord
from tuner.store import SchemaWarning, open_storage, read_tables



def _attrs(n: int, **more) -> dict:
    return {"config": {"filters": 8 * n, "optimizer": "adam"}, "seed": n, "val_accuracy": 0.1 * n,
            "test_accuracy": 0.05 * n, "history": {"val_accuracy": [0.01 * n, 0.1 * n]}, "backend": "tensorflow",
            **more}


def _study(url: str, directions: list[str]):
    import optuna
    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState, create_trial

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    st = optuna.create_study(storage=open_storage(url), study_name=f"rdb-{uuid.uuid4().hex[:8]}",
                             directions=directions)
    dist = {"lr": FloatDistribution(1e-4, 1e-1, log=True)}
    k = len(directions)
    st.add_trial(create_trial(state=TrialState.COMPLETE, values=[0.4] * k, params={"lr": 0.01}, distributions=dist,
                              user_attrs=_attrs(1, baseline="final", reported=42.0, precision="bfloat16")))
    st.add_trial(create_trial(state=TrialState.COMPLETE, values=[math.inf] + [1.0] * (k - 1),
                              user_attrs=_attrs(2, reeval_of=0)))
    st.add_trial(create_trial(state=TrialState.PRUNED, values=[0.2] * k if k == 1 else None,
                              user_attrs=_attrs(3, fail_reason="pruned at epoch 2"),
                              intermediate_values={1: 0.1, 2: 0.2} if k == 1 else None))
    st.add_trial(create_trial(state=TrialState.FAIL, user_attrs=_attrs(4, fail_reason="out of memory at batch size 64"),
                              system_attrs={"failed_trial": 2}))
    running = st.ask()
    for key, value in _attrs(5, over_budget=False).items():
        running.set_user_attr(key, value)
    st.enqueue_trial({"lr": 0.02}, user_attrs={"baseline": "basenet", "seed": 6})  # a queued baseline: no config
    return st


def _read(url: str, st, **kwargs):
    read = read_tables(url, st.study_name, **kwargs)
    assert read is not None  # the fast path was taken (a silent fallback after an Optuna upgrade fails here)
    name, meta, records = read
    assert name == st.study_name
    return records


@pytest.mark.parametrize("kind", ["sqlite", "postgresql", "mysql"])
@pytest.mark.parametrize("directions", [["maximize"], ["maximize", "minimize"]])
def test_table_reads_equal_optunas_reads(kind, directions, tmp_path):
    url = storage_url(kind, tmp_path)
    st = _study(url, directions)
    slow = [TrialRecord.from_trial(t) for t in st.get_trials(deepcopy=False)]
    fast = _read(url, st)
    assert [r.state for r in fast] == ["complete", "complete", "pruned", "fail", "running", "waiting"]
    assert fast == slow  # times included: as each database returns them, read to the same seconds
    assert fast[0].started is not None and fast[0].finished >= fast[0].started and fast[4].finished is None
    assert fast[1].val_accuracy == math.inf and fast[3].tags["retry_of"] == 2 and fast[0].tags["precision"]
    lean = _read(url, st, history=False)
    assert all(r.history == {} for r in lean)
    assert [{**vars(r), "history": {}} for r in lean] == [{**vars(r), "history": {}} for r in slow]


def test_foreign_studies_are_read_too_and_journals_are_left_to_optuna(tmp_path):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    url = f"sqlite:///{tmp_path / 'f.db'}"
    foreign = optuna.create_study(storage=open_storage(url), study_name="foreign")
    foreign.optimize(lambda t: t.suggest_float("x", 0, 1) + t.suggest_int("n", 1, 3)
                     + len(t.suggest_categorical("c", ["a", "bb"])), n_trials=3)
    # Parameters without cnntune's config attribute: decoded by their distributions, as Optuna does.
    assert _read(url, foreign) == [TrialRecord.from_trial(t) for t in foreign.trials]
    assert [r.params for r in _read(url, foreign)] == [t.params for t in foreign.trials]
    journal = f"journal:{tmp_path / 'j.journal'}"
    optuna.create_study(storage=open_storage(journal), study_name="j")
    assert read_tables(journal, "j") is None
    from tuner.store import read_records

    assert [r.params for r in read_records(foreign)] == [t.params for t in foreign.trials]


def test_an_unknown_schema_is_read_through_optuna_after_one_warning(tmp_path):
    """A store written by an Optuna whose tables the reader was not tested on (simulated: the schema version it
    records is changed) is read through Optuna's public API, with one warning, and reads the same."""
    import sqlite3

    import tuner

    url = f"sqlite:///{tmp_path / 's.db'}"
    st = _study(url, ["maximize"])
    fast = tuner.trials(study=st.study_name, storage=url)
    with sqlite3.connect(tmp_path / "s.db") as conn:
        conn.execute("UPDATE version_info SET schema_version = 99")
    with pytest.warns(SchemaWarning, match="reads Optuna's tables v3.2.0.a .schema 12.*schema 99.*through Optuna"):
        assert read_tables(url, st.study_name) is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one warning per store: not again
        slow = tuner.trials(study=st.study_name, storage=url)
    assert slow.records == fast.records and slow.best == fast.best and slow.meta == fast.meta
