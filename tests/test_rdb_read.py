"""Trials read straight from an RDB storage's tables (``tuner.store._rdb``) equal Optuna's own reading of them, on
SQLite, PostgreSQL and MySQL, for every state, objective value and attribute cnntune records."""

from __future__ import annotations

import math
import uuid

import pytest

from conftest import storage_url
from tuner.records import TrialRecord
from tuner.store import rdb_records
from tuner.store import open_storage



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


@pytest.mark.parametrize("kind", ["sqlite", "postgresql", "mysql"])
@pytest.mark.parametrize("directions", [["maximize"], ["maximize", "minimize"]])
def test_table_reads_equal_optunas_reads(kind, directions, tmp_path):
    st = _study(storage_url(kind, tmp_path), directions)
    slow = [TrialRecord.from_trial(t) for t in st.get_trials(deepcopy=False)]
    fast = rdb_records(st)
    assert fast is not None  # the fast path was taken (a silent fallback after an Optuna upgrade fails here)
    assert [r.state for r in fast] == ["complete", "complete", "pruned", "fail", "running", "waiting"]
    assert fast == slow
    assert fast[1].val_accuracy == math.inf and fast[3].tags["retry_of"] == 2 and fast[0].tags["precision"]
    lean = rdb_records(st, history=False)
    assert all(r.history == {} for r in lean)
    assert [{**vars(r), "history": {}} for r in lean] == [{**vars(r), "history": {}} for r in slow]


def test_foreign_studies_are_read_too_and_journals_are_left_to_optuna(tmp_path):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    foreign = optuna.create_study(storage=open_storage(f"sqlite:///{tmp_path / 'f.db'}"), study_name="foreign")
    foreign.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    # Parameters without cnntune's config attribute: decoded by their distributions, as Optuna does.
    assert rdb_records(foreign) == [TrialRecord.from_trial(t) for t in foreign.trials]
    assert [r.params for r in rdb_records(foreign)] == [t.params for t in foreign.trials]
    journal = optuna.create_study(storage=open_storage(f"journal:{tmp_path / 'j.journal'}"), study_name="j")
    assert rdb_records(journal) is None
    from tuner.store import read_records

    assert [r.params for r in read_records(foreign)] == [t.params for t in foreign.trials]
