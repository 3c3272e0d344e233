"""Known configurations retrained with given seeds as tagged trials of a study: ``reevaluate`` (the top
configurations with new seeds, ranked by the mean) and ``reproduce`` (the study's baselines over seeds, its claims
checked).
"""

from __future__ import annotations

from tuner.replays._reeval import ReevalReport, reevaluate
from tuner.replays._replay import ReplayRun, run_replays
from tuner.replays._reproduce import (ALL, ClaimResult, ReproRow, Reproduction, SpaceReproduction, check_claims,
                                      check_out_dir, reproduce, summarize, write_reproduction)

__all__ = [
    "ALL",
    "ClaimResult",
    "ReevalReport",
    "ReplayRun",
    "ReproRow",
    "Reproduction",
    "SpaceReproduction",
    "check_claims",
    "check_out_dir",
    "reevaluate",
    "reproduce",
    "run_replays",
    "summarize",
    "write_reproduction",
]
