"""The study store: Optuna storage URLs opened and checked, a study's records read (fast, straight from an RDB
storage's tables), the metadata cnntune stores on a study, and the rules over its records (the budget, replays,
the best trial).

Nothing here imports Keras; Optuna is imported where a storage is opened.
"""

from __future__ import annotations

from tuner.store._best import (REEVAL_SEED_STRIDE, ReevalRow, SIZE_ATTRS, SeedStats, best_record, best_trial,
                               candidates, config_key, diff_se, is_done, mean_std, pareto_front, pct, rank_configs,
                               reeval_seeds, seed_stats, time_to_quality, top_configs)
from tuner.store._budget import Budget
from tuner.store._location import Location, is_url, one_line, redact
from tuner.store._rdb import KNOWN_SCHEMA, SchemaWarning, read_tables
from tuner.store._storage import (Artifacts, CHECKPOINT_OF, DEFAULT_STORAGE, EPOCH_REACHED, GRACE_PERIOD,
                                  HEARTBEAT_INTERVAL, MAX_RETRY, META_KEY, RESUMED_FROM, artifacts_root,
                                  create_or_load_study, engine_kwargs, heartbeat_timing, load_study, open_storage,
                                  pick_study, retry_dead_trial, sqlite_file, study_meta, study_names, with_driver)
from tuner.store._study import (KERAS_BACKENDS, StudyRecords, check_backends, check_same_experiment, current_backend,
                                done_baselines, is_replay, jsonable, new_meta, open_study, read_records, read_study,
                                start_trial, that_ran, write_meta)

__all__ = [
    "Artifacts",
    "Budget",
    "CHECKPOINT_OF",
    "DEFAULT_STORAGE",
    "EPOCH_REACHED",
    "GRACE_PERIOD",
    "HEARTBEAT_INTERVAL",
    "KERAS_BACKENDS",
    "KNOWN_SCHEMA",
    "Location",
    "MAX_RETRY",
    "META_KEY",
    "REEVAL_SEED_STRIDE",
    "RESUMED_FROM",
    "ReevalRow",
    "SIZE_ATTRS",
    "SchemaWarning",
    "SeedStats",
    "StudyRecords",
    "artifacts_root",
    "best_record",
    "best_trial",
    "candidates",
    "check_backends",
    "check_same_experiment",
    "config_key",
    "create_or_load_study",
    "current_backend",
    "diff_se",
    "done_baselines",
    "engine_kwargs",
    "heartbeat_timing",
    "is_done",
    "is_replay",
    "is_url",
    "jsonable",
    "load_study",
    "mean_std",
    "new_meta",
    "one_line",
    "open_storage",
    "open_study",
    "pareto_front",
    "pct",
    "pick_study",
    "rank_configs",
    "read_records",
    "read_study",
    "read_tables",
    "redact",
    "retry_dead_trial",
    "reeval_seeds",
    "seed_stats",
    "sqlite_file",
    "start_trial",
    "study_meta",
    "study_names",
    "that_ran",
    "time_to_quality",
    "top_configs",
    "with_driver",
    "write_meta",
]
