"""Running a search: ``search`` and ``worker`` decide a plan once (budget, timeout, baselines, warm starts), an
engine (``engines``: Optuna or Keras Tuner) proposes the configurations, ``--workers``/``--gpus`` start worker
processes.
"""

from __future__ import annotations

from tuner.searching._plan import BaselineRun, FailureStreak, SearchPlan, baseline_runs, search_pins, with_fidelity
from tuner.searching._search import SearchResult, search, worker
from tuner.searching._strategy import ACTIVATION_COST, Proposal, REEVAL_SEEDS, Strategy, reeval_round
from tuner.searching._warm_start import GROWTH, MIX, RATE, climb, grow, perturbations, study_trend, upgrade
from tuner.searching._workers import WorkerPool, parse_gpus, worker_pool

__all__ = [
    "ACTIVATION_COST",
    "BaselineRun",
    "FailureStreak",
    "GROWTH",
    "MIX",
    "Proposal",
    "RATE",
    "REEVAL_SEEDS",
    "SearchPlan",
    "SearchResult",
    "Strategy",
    "WorkerPool",
    "baseline_runs",
    "climb",
    "grow",
    "parse_gpus",
    "perturbations",
    "reeval_round",
    "search",
    "search_pins",
    "study_trend",
    "upgrade",
    "with_fidelity",
    "worker",
    "worker_pool",
]
