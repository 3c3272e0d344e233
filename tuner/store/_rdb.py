"""Reading a study straight from an RDB storage's tables (SQLite, PostgreSQL, MySQL), without Optuna.

``Study.get_trials`` builds a ``FrozenTrial`` per trial (ORM objects, every distribution and attribute decoded from
JSON, the per-epoch history included), and opening an ``RDBStorage`` imports Optuna, SQLAlchemy and alembic and
checks the schema: on a 5,000-trial study that was most of ``cnntune trials``, on a small one most of its start-up.
cnntune's records need each trial's number, state and objective values, its user attributes (``config`` holds the
parameters) and two system attributes (``failed_trial`` and ``retry_history``, Optuna's retry of a dead worker's
trial): ``read_tables`` reads those with a few SQL queries, SQLite through Python's own ``sqlite3`` (read-only), the
servers through SQLAlchemy Core; only trials without a ``config`` (queued, or of a study not made by cnntune) have
their parameters decoded from Optuna's parameter table.

Those tables are Optuna's, not a public interface. Optuna records their schema in the database (the alembic revision
and ``version_info.schema_version``): the reader reads only the schema it was tested on (``KNOWN_SCHEMA``, Optuna 3.2
to the release ``pyproject.toml`` allows) and answers ``None`` for any other, after one warning, so the caller reads
through Optuna's public API instead. A storage that is not an RDB storage (a journal file) is ``None`` too.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
import warnings
from typing import Any

from tuner.errors import StorageError
from tuner.records import TrialRecord
from tuner.store._storage import META_KEY, engine_kwargs, pick_study, redact, sqlite_file, with_driver

__all__ = ["KNOWN_SCHEMA", "SchemaWarning", "read_tables"]

# (alembic revision, version_info.schema_version) of the tables the reader knows: Optuna 3.2 to 5.1.
KNOWN_SCHEMA = ("v3.2.0.a", 12)

_VALUES = {"FINITE": None, "INF_POS": math.inf, "INF_NEG": -math.inf}
_INT_DISTRIBUTIONS = ("IntDistribution", "IntUniformDistribution", "IntLogUniformDistribution")
_FLOAT_DISTRIBUTIONS = ("FloatDistribution", "UniformDistribution", "LogUniformDistribution",
                        "DiscreteUniformDistribution")
_engines: dict[str, Any] = {}  # SQLAlchemy engines of server storages, one per URL in a process
_warned: set[tuple] = set()
_lock = threading.Lock()


class SchemaWarning(UserWarning):
    """A study store whose Optuna schema the fast reader does not know; it is read through Optuna instead."""


class _Unreadable(Exception):
    """Something in the tables the reader does not understand: the caller reads through Optuna."""


def _query(url: str):
    """``(run, close)``: ``run(sql, **params)`` returns a query's rows; ``None`` for a storage that is not an RDB."""
    file = sqlite_file(url)
    if file is not None:
        conn = sqlite3.connect(f"file:{file.expanduser()}?mode=ro", uri=True, timeout=30)
        return (lambda sql, **params: conn.execute(sql, params).fetchall()), conn.close
    if not url.startswith(("postgresql", "mysql")):
        return None
    from sqlalchemy import create_engine, text

    with _lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _engines[url] = create_engine(with_driver(url), **engine_kwargs(url))
    conn = engine.connect()
    return (lambda sql, **params: list(conn.execute(text(sql), params))), conn.close


def read_tables(url: str, study: str | None, *, history: bool = True
                ) -> tuple[str, dict[str, Any], list[TrialRecord]] | None:
    """Study ``study`` (without a name: the only study) of the storage at ``url``: ``(name, cnntune metadata,
    records)``, the records in trial-number order; ``history=False`` leaves each record's per-epoch history out (the
    largest attribute by far). ``None`` when the storage is not read this way (see the module's docstring).

    Raises:
        StorageError: no such study, or several and no name given.
    """
    try:
        opened = _query(url)
        if opened is None:
            return None
        run, close = opened
    except Exception:  # noqa: BLE001 - a store that cannot be opened: Optuna's opening says why, in one line
        return None
    try:
        try:
            schema = _schema(run)
        except Exception:  # noqa: BLE001 - not Optuna's tables, or a server that does not answer: as above
            return None
        if schema != KNOWN_SCHEMA:
            _warn(url, schema)
            return None
        try:
            ids = dict(run("SELECT s.study_name, s.study_id FROM studies s"))
            name = pick_study(sorted(ids), study, url)
            meta = {}
            for key, value in run("SELECT a.key, a.value_json FROM study_user_attributes a WHERE a.study_id = :s",
                                  s=ids[name]):
                if key == META_KEY:
                    meta = dict(json.loads(value) or {})
            return name, meta, _records(run, ids[name], history)
        except StorageError:
            raise
        except Exception as exc:  # noqa: BLE001 - tables of the known schema it cannot read: never silently
            _warn(url, None, exc)
            return None
    finally:
        close()


def _schema(run) -> tuple[str | None, int | None]:
    revision = run("SELECT a.version_num FROM alembic_version a")
    version = run("SELECT v.schema_version FROM version_info v")
    return (revision[0][0] if revision else None), (int(version[0][0]) if version else None)


def _warn(url: str, schema: tuple | None, exc: Exception | None = None) -> None:
    key = (url, schema, type(exc).__name__ if exc else None)
    with _lock:
        if key in _warned:
            return
        _warned.add(key)
    why = (f"reads Optuna's tables {KNOWN_SCHEMA[0]} (schema {KNOWN_SCHEMA[1]}), this store's are {schema[0]} "
           f"(schema {schema[1]})" if schema is not None else f"cannot read this store's tables ({exc})")
    warnings.warn(f"{redact(url)}: cnntune's fast reader {why}; reading through Optuna instead (slower)",
                  SchemaWarning, stacklevel=3)


def _records(run, study_id: int, history: bool) -> list[TrialRecord]:
    trials = run("SELECT t.trial_id, t.number, t.state, t.datetime_start, t.datetime_complete FROM trials t "
                 "WHERE t.study_id = :s", s=study_id)
    # Columns are named by their table's alias: MySQL takes a reserved word (``key``) only after a period.
    of_study = "a.trial_id IN (SELECT t.trial_id FROM trials t WHERE t.study_id = :s)"
    values: dict[int, dict[int, float | None]] = {}
    for trial_id, objective, value, value_type in run(
            f"SELECT a.trial_id, a.objective, a.value, a.value_type FROM trial_values a WHERE {of_study}", s=study_id):
        if value_type not in _VALUES:
            raise _Unreadable(f"value type {value_type!r}")
        values.setdefault(trial_id, {})[objective] = value if value_type == "FINITE" else _VALUES[value_type]
    attrs: dict[int, dict[str, Any]] = {}
    lean = "" if history else " AND a.key <> 'history'"
    for trial_id, key, value in run(f"SELECT a.trial_id, a.key, a.value_json FROM trial_user_attributes a WHERE "
                                    f"{of_study}{lean}", s=study_id):
        attrs.setdefault(trial_id, {})[key] = json.loads(value)
    system: dict[int, dict[str, Any]] = {}
    for trial_id, key, value in run(f"SELECT a.trial_id, a.key, a.value_json FROM trial_system_attributes a WHERE "
                                    f"{of_study} AND a.key IN ('failed_trial', 'retry_history')", s=study_id):
        system.setdefault(trial_id, {})[key] = json.loads(value)
    params: dict[int, dict[str, Any]] = {}
    if any("config" not in attrs.get(row[0], {}) for row in trials):
        for trial_id, name, value, dist in run(f"SELECT a.trial_id, a.param_name, a.param_value, "
                                               f"a.distribution_json FROM trial_params a WHERE {of_study}",
                                               s=study_id):
            if "config" not in attrs.get(trial_id, {}):
                params.setdefault(trial_id, {})[name] = _external(value, dist)
    out = []
    for trial_id, number, state, started, finished in sorted(trials, key=lambda row: row[1]):
        objective = values.get(trial_id, {})
        out.append(TrialRecord.from_parts(int(number), str(state), [objective[k] for k in sorted(objective)] or None,
                                          attrs.get(trial_id, {}), system.get(trial_id, {}), params.get(trial_id, {}),
                                          times=(started, finished)))
    return out


def _external(value: float, distribution_json: str) -> Any:
    """A parameter as Optuna gives it: a choice by its index, an integer, a float."""
    dist = json.loads(distribution_json)
    name = dist.get("name")
    if name == "CategoricalDistribution":
        return dist["attributes"]["choices"][int(value)]
    if name in _INT_DISTRIBUTIONS:
        return int(value)
    if name in _FLOAT_DISTRIBUTIONS:
        return float(value)
    raise _Unreadable(f"distribution {name!r}")
