"""Reading a study's trials straight from an RDB storage's tables (SQLite, PostgreSQL, MySQL).

``Study.get_trials`` builds a ``FrozenTrial`` per trial: SQLAlchemy ORM objects, every parameter's distribution and
every user attribute decoded from JSON, the per-epoch history included. On a 5,000-trial study that is most of the
time ``cnntune trials`` takes. cnntune's records need the number, state and objective values of each trial, its user
attributes (its ``config`` holds the parameters) and one system attribute (``failed_trial``); ``rdb_records`` reads
those with four SQL queries over Optuna's own table definitions (the ones the installed Optuna created), and leaves
out the history unless asked. Only trials without a ``config`` attribute (queued, or of a study not made by cnntune)
have their parameters read from Optuna's parameter table and decoded by their distributions. A storage that is not
an RDB storage is read the ordinary way: ``None`` tells the caller to.
"""

from __future__ import annotations

import json
from typing import Any

from tuner.records import TrialRecord

__all__ = ["rdb_records", "rdb_storage"]


def rdb_storage(study):
    """The ``RDBStorage`` behind ``study`` (Optuna wraps it in a caching layer), or ``None``."""
    from optuna.storages import RDBStorage

    storage = getattr(study, "_storage", None)
    storage = getattr(storage, "_backend", storage)
    return storage if isinstance(storage, RDBStorage) else None


def rdb_records(study, *, history: bool = True) -> list[TrialRecord] | None:
    """Every trial of ``study`` as a ``TrialRecord``, in trial-number order, read from the storage's tables;
    ``history=False`` leaves each record's history empty (the largest attribute by far). ``None`` when the study
    cannot be read this way (see the module's docstring)."""
    storage = rdb_storage(study)
    if storage is None:
        return None
    from optuna.storages._rdb import models
    from sqlalchemy import select

    trials_t = models.TrialModel.__table__
    values_t = models.TrialValueModel.__table__
    user_t = models.TrialUserAttributeModel.__table__
    system_t = models.TrialSystemAttributeModel.__table__
    study_id = storage.get_study_id_from_name(study.study_name)
    ids = select(trials_t.c.trial_id).where(trials_t.c.study_id == study_id)
    user_q = select(user_t.c.trial_id, user_t.c.key, user_t.c.value_json).where(user_t.c.trial_id.in_(ids))
    if not history:
        user_q = user_q.where(user_t.c.key != "history")
    with storage.engine.connect() as conn:
        rows = conn.execute(select(trials_t.c.trial_id, trials_t.c.number, trials_t.c.state)
                            .where(trials_t.c.study_id == study_id)).all()
        values: dict[int, dict[int, float | None]] = {}
        for trial_id, objective, value, value_type in conn.execute(
                select(values_t.c.trial_id, values_t.c.objective, values_t.c.value, values_t.c.value_type)
                .where(values_t.c.trial_id.in_(ids))):
            values.setdefault(trial_id, {})[objective] = models.TrialValueModel.stored_repr_to_value(value,
                                                                                                   value_type)
        attrs: dict[int, dict[str, Any]] = {}
        for trial_id, key, value_json in conn.execute(user_q):
            attrs.setdefault(trial_id, {})[key] = json.loads(value_json)
        system: dict[int, dict[str, Any]] = {}
        for trial_id, key, value_json in conn.execute(
                select(system_t.c.trial_id, system_t.c.key, system_t.c.value_json)
                .where(system_t.c.trial_id.in_(ids), system_t.c.key == "failed_trial")):
            system.setdefault(trial_id, {})[key] = json.loads(value_json)
        # Optuna's parameters, for the trials without a config (queued baselines, a study not made by cnntune).
        params: dict[int, dict[str, Any]] = {}
        bare = [trial_id for trial_id, _, _ in rows if "config" not in attrs.get(trial_id, {})]
        if bare:
            from optuna.distributions import json_to_distribution

            params_t = models.TrialParamModel.__table__
            for trial_id, name, value, dist_json in conn.execute(
                    select(params_t.c.trial_id, params_t.c.param_name, params_t.c.param_value,
                           params_t.c.distribution_json).where(params_t.c.trial_id.in_(bare))):
                params.setdefault(trial_id, {})[name] = json_to_distribution(dist_json).to_external_repr(value)
    records = []
    for trial_id, number, state in sorted(rows, key=lambda row: row[1]):
        objective = values.get(trial_id, {})
        records.append(TrialRecord.from_parts(number, state, [objective[k] for k in sorted(objective)] or None,
                                              attrs.get(trial_id, {}), system.get(trial_id, {}),
                                              params.get(trial_id, {})))
    return records
