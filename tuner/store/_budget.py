"""The budget of ``search --trials N``: the one authority both engines, every worker and every command ask.

A study of ``--trials N`` holds N *places* for searched trials (baselines and replays are extra). The rule:

* a searched trial holds a place once it is queued, running or finished, unless it was interrupted (Ctrl-C,
  SIGTERM: not a result; the study retries it) or ran nothing because the budget was full;
* a retried trial gives its place to its retry: the place belongs to the *chain* (a trial, its retry, the retry's
  retry...), whether the retry was queued by a search (an interrupted trial, ``retry_of``) or by Optuna's heartbeat
  check (a dead worker's trial, ``failed_trial``). So a study whose workers were killed ``k`` times still ends with N
  searched trials that finished for reasons of their own, never N - k;
* places are in trial-number order by the first trial of each chain (the storage numbers trials one at a time), so
  processes that started a trial at the same moment agree, each by itself, on which of them run: a trial whose
  place is ``>= N`` runs nothing.

Nothing here imports Optuna or Keras.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from tuner.records import FINISHED, FailureKind, TrialRecord
from tuner.store._study import is_replay

__all__ = ["Budget"]


@dataclass(frozen=True)
class Budget:
    """``trials`` places for searched trials.

    Attributes:
        trials: the study's ``--trials``.
    """

    trials: int

    @staticmethod
    def holds_place(rec: TrialRecord) -> bool:
        """Whether a trial, as such, holds a place (before retries are taken into account)."""
        if rec.baseline is not None or is_replay(rec):
            return False
        if rec.kind in (FailureKind.INTERRUPTED, FailureKind.BUDGET_FULL):
            return False
        return rec.state in (*FINISHED, "running", "waiting")

    def places(self, records: Sequence[TrialRecord]) -> list[TrialRecord]:
        """The trials holding a place, in place order (the latest trial of each chain)."""
        by_number = {r.number: r for r in records}
        retried = {r.tags["retry_of"] for r in records if "retry_of" in r.tags}

        def chain_start(rec: TrialRecord) -> int:
            root, seen = rec, set()
            while "retry_of" in root.tags and root.tags["retry_of"] in by_number and root.number not in seen:
                seen.add(root.number)
                root = by_number[root.tags["retry_of"]]
            return root.number

        holders = [r for r in records if self.holds_place(r) and r.number not in retried]
        return sorted(holders, key=lambda r: (chain_start(r), r.number))

    def used(self, records: Sequence[TrialRecord]) -> int:
        """Places whose trial finished."""
        return sum(1 for r in self.places(records) if r.state in FINISHED)

    def left(self, records: Sequence[TrialRecord]) -> int:
        """Places whose trial has not finished yet, or that no trial holds: how many searched trials may still
        finish."""
        return max(self.trials - self.used(records), 0)

    def place(self, records: Sequence[TrialRecord], number: int) -> int:
        """The place of trial ``number`` (``>= trials``: it has none and runs nothing); a trial that holds no place
        comes after every holder."""
        order = [r.number for r in self.places(records)]
        return order.index(number) if number in order else len(order)

    def free(self, records: Sequence[TrialRecord]) -> int:
        """Places that no finished or running trial holds: how many new trials a process may start (a queued
        trial holds its place only once it runs)."""
        return max(self.trials - sum(1 for r in self.places(records) if r.state != "waiting"), 0)

    def full(self, records: Sequence[TrialRecord], elsewhere: int = 0) -> bool:
        """Every place is held by a finished or running trial (``elsewhere``: running trials the study does not
        show yet, e.g. Keras Tuner's) and nothing is queued: start no further trial."""
        return not any(r.state == "waiting" for r in records) and self.free(records) <= elsewhere
