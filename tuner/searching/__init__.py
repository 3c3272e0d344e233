"""Running a search: ``search`` and ``worker`` decide a plan once (budget, timeout, baselines, warm starts), an
engine (``engines``: Optuna or Keras Tuner) proposes the configurations, ``--workers``/``--gpus`` start worker
processes.
"""

from __future__ import annotations

from tuner.searching._options import (
    OBJECTIVES,
    DEFAULT_CLIMB,
    DEFAULT_GROW,
    DEFAULT_PRUNER,
    DEFAULT_REEVAL_SHARE,
    DEFAULT_REEVAL_TOP,
    DEFAULT_WARM_START,
    check_engine_options,
    check_settings,
    parse_objective,
    with_fidelity,
)
from tuner.searching._plan import (
    BaselineRun,
    FailureStreak,
    SearchPlan,
    search_pins,
)
from tuner.searching._search import (
    SearchResult,
    baseline_runs,
    search,
    worker,
)
from tuner.searching._warm_start import (
    GROWTH,
    MIX,
    RATE,
    climb,
    grow,
    perturbations,
    study_trend,
)
from tuner.searching._workers import (
    WorkerPool,
    parse_gpus,
    worker_pool,
)

__all__ = [
    "BaselineRun",
    "DEFAULT_CLIMB",
    "DEFAULT_GROW",
    "DEFAULT_PRUNER",
    "DEFAULT_REEVAL_SHARE",
    "DEFAULT_REEVAL_TOP",
    "DEFAULT_WARM_START",
    "FailureStreak",
    "GROWTH",
    "MIX",
    "OBJECTIVES",
    "RATE",
    "SearchPlan",
    "SearchResult",
    "WorkerPool",
    "baseline_runs",
    "check_engine_options",
    "check_settings",
    "climb",
    "grow",
    "parse_gpus",
    "parse_objective",
    "perturbations",
    "search",
    "search_pins",
    "study_trend",
    "with_fidelity",
    "worker",
    "worker_pool",
]
