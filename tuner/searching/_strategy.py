"""The search strategy: the trials a search proposes itself, around the sampler's, decided from the study's records.

Both engines ask it; neither holds a rule of its own (``_warm_start`` has the pure moves):

* **warm starts** (``--warm-start N``): the first searched trials are the study continued one step, then crossovers
  of its hand-chosen configurations, perturbed; seeded, so a seeded search starts from the same configurations;
* **upgrade** (``--upgrade``): in a space that names an ``UPGRADE``, the trial growth starts from is tried with it
  first;
* **growth** (``--grow``): while the best trial so far costs less to train than the costliest baseline, the next
  trial is it made bigger (widths and epochs doubled), or the newest grown one while it scores within one standard
  error of the best (``Strategy.grower``); a trial's cost is its model's multiply-accumulates and
  activations per image, times the epochs it trained (``Strategy.cost``), all recorded with it;
* **climbing** (``--climb F``): once the study continued has run, a share F of the searched trials step from the
  best trial so far;
* **the re-evaluation share** (``--reeval-share``): after the search phase, how many top configurations are
  retrained with how many new seeds (``reeval_round``).

Everything but the re-evaluation share is decided from what the study records (configurations, best trial,
parameters, epochs), so a seeded, ``--trials``-bounded sequential search proposes the same configurations in the
same order every time. The re-evaluation share and ``--timeout`` are budgets of time: they depend on the clock.

The Optuna engine queues the strategy's trials in its study (``first`` before any trial runs, then ``next`` after
each); the Keras Tuner engine serves the warm starts as its oracle's first trials, and refuses growth and climbing
(``check``): its oracle numbers and proposes its own trials, and a worker cannot be handed a trial's strategy tags.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

from tuner.errors import CnntuneError
from tuner.experiment import Experiment
from tuner.options import MAX_REEVAL_SEEDS, SearchOptions
from tuner.records import TrialRecord, val_noise_pp
from tuner.searching._plan import BaselineRun, search_pins
from tuner.searching._warm_start import climb, grow, perturbations, study_trend, upgrade
from tuner.store import Budget, best_trial, is_replay, top_configs

__all__ = ["ACTIVATION_COST", "REEVAL_SEEDS", "Proposal", "Strategy", "reeval_round"]

# What writing one activation value costs, in multiply-accumulates: with it, the costs of the improved space's study
# continued and its first two growths stand to the final model's as their measured training times do, within 0.11, on
# the shared birds at 32 px on 2 CPU cores (BENCHMARKS.md, "Growth from recorded facts").
ACTIVATION_COST = 600

# New seeds per configuration in the re-evaluation phase when the budget is trials, not time; when it is time, as
# many as the time left allows, up to MAX_REEVAL_SEEDS.
REEVAL_SEEDS = 2


@dataclass(frozen=True)
class Proposal:
    """A trial the strategy proposes: its full configuration and the tags that say why (``warm_start: i``,
    ``grown_from: n`` or ``climb_of: n``)."""

    config: dict[str, Any]
    attrs: dict[str, Any]


class Strategy:
    """The warm starts, growth and climbing of one search process.

    Args:
        experiment: the space, its pins and options.
        options: the search's resolved options (``warm_start``, ``grow``, ``climb``, ``seed``, ``trials``).
        baselines: the space's baselines with their configurations (the study's hand-chosen configurations: the warm
            starts cross them even when they do not run).
        seeded: whether this process seeds its draws (a worker does not, so that workers do not all climb alike).
        n_val: the validation images every trial is measured on (how far apart two trials' accuracies must be to
            differ: ``grower``).
    """

    def __init__(self, experiment: Experiment, options: SearchOptions, baselines: Sequence[BaselineRun],
                 seeded: bool = True, n_val: int | None = None):
        self.space = experiment.space
        self.n_val = n_val
        self.options = options
        self.pins = search_pins(experiment, options)
        self.seed = options.seed if seeded else None
        mix = [b.config for b in baselines]
        self.warm_starts = perturbations(self.space, self.pins, min(options.warm_start, options.trials),
                                         options.seed, mix=mix)
        # How many warm starts are the study continued (``study_trend``): a climb starts once they have run.
        self.lead = min(len(study_trend(self.space, self.pins, mix)), len(self.warm_starts))

    @staticmethod
    def check(options: SearchOptions, engine_queues: bool) -> None:
        """Refuses what an engine cannot do: growth and climbing queue one trial at a time in the study, which only
        an engine that takes queued trials (``QUEUES_TRIALS``) can run.

        Raises:
            CnntuneError: ``--grow`` or ``--climb`` under the Keras Tuner engine.
        """
        if not engine_queues and (options.climb or options.grow or options.upgrade):
            flag = "--climb" if options.climb else "--grow" if options.grow else "--upgrade"
            raise CnntuneError(f"{flag} queues trials in the Optuna engine's study; with --engine keras-tuner use "
                               "--warm-start")

    @property
    def takes_turns(self) -> bool:
        """Whether trials are proposed one at a time after each finished trial (growth or climbing)."""
        return bool(self.options.grow or self.options.climb or self.options.upgrade)

    def warm(self, index: int) -> Proposal:
        return Proposal(self.warm_starts[index], {"warm_start": index})

    def warm_left(self, records: Sequence[TrialRecord]) -> list[int]:
        """The indexes of the warm starts the study has not run, is not running and has not queued."""
        started = {r.tags["warm_start"] for r in records if "warm_start" in r.tags}
        return [i for i in range(len(self.warm_starts)) if i not in started]

    def first(self, records: Sequence[TrialRecord]) -> list[Proposal]:
        """What to queue before any trial runs: every warm start not yet run, unless the strategy takes turns: with
        growth only the first (the study continued on its cheapest body, which may grow at once), with a climb the
        lead (the study continued on each body)."""
        upfront = 1 if self.options.grow else (self.lead if self.options.climb else len(self.warm_starts))
        return [self.warm(i) for i in self.warm_left(records) if i < upfront]

    def next(self, records: Sequence[TrialRecord]) -> Proposal | None:
        """The next trial once one has finished: the trial growth starts from (``grower``) upgraded, where the space
        names an upgrade and it was not tried on it; else that trial grown, while it costs less than the
        costliest baseline; else, once the lead warm starts have run, a step from the best trial (the step that led
        to it once more, when it was a climb's, else a perturbation) while the climbing trials hold less than their
        share of the searched trials after the lead; else the next warm start not yet run; else ``None`` (the
        sampler proposes)."""
        best, _ = best_trial(records)
        tried = [r.params for r in records]
        left = self.warm_left(records)
        head = None if best is None else self.grower(best, records)
        if self.options.upgrade and head is not None:
            config = upgrade(self.space, self.pins, head.params, tried)
            if config is not None:
                return Proposal(config, {"upgraded_from": head.number})
        if self.options.grow and head is not None and self.cheaper_than_the_baselines(head, records):
            config = grow(self.space, self.pins, head.params, tried)
            if config is not None:
                return Proposal(config, {"grown_from": head.number})
        if best is not None and self.options.climb and not any(i < self.lead for i in left):
            after = [r for r in records if Budget.holds_place(r) and "retry_of" not in r.tags
                     and r.tags.get("warm_start", self.lead) >= self.lead]
            if sum(1 for r in after if "climb_of" in r.tags) < self.options.climb * (len(after) + 1):
                # Seeded by the study's size, so that a seeded search climbs the same way.
                seed = None if self.seed is None else self.seed * 1_000_003 + len(records)
                parent = next((r.params for r in records if r.number == best.tags.get("climb_of")), None)
                config = climb(self.space, self.pins, best.params, tried, seed, parent=parent)
                if config is not None:
                    return Proposal(config, {"climb_of": best.number})
        return self.warm(left[0]) if left else None

    def grower(self, best: TrialRecord, records: Sequence[TrialRecord]) -> TrialRecord:
        """The trial that growth and the upgrade start from: the newest trial they proposed whose validation accuracy
        is within one standard error of the best's (``val_noise_pp`` on ``n_val`` images), else the best.

        A model made bigger and trained longer that scores a point below the best on 300 validation images is no
        worse than it (one standard error there is about 3 points); stopping the growth there left the weakest
        searches on their first growth (BENCHMARKS.md, "The modern space"). An upgrade or growth that scores clearly
        lower is left behind, and the chain goes on from the best.
        """
        noise = (val_noise_pp(best.val_accuracy, self.n_val) or 0.0) / 100.0
        chain = [r for r in records if r.state == "complete" and not is_replay(r) and r.val_accuracy is not None
                 and ("grown_from" in r.tags or "upgraded_from" in r.tags)
                 and r.val_accuracy >= (best.val_accuracy or 0.0) - noise]
        return max(chain, key=lambda r: r.number, default=best)

    @staticmethod
    def cost(rec: TrialRecord) -> float | None:
        """What training ``rec`` cost per training image, from what it recorded (``tuner.trial``'s counts): its
        model's multiply-accumulates plus ``ACTIVATION_COST`` per activation value, times the epochs it trained;
        ``None`` for a trial recorded without them (another runner's). Every trial of a study trains on the same
        images, so their count changes no order. Never seconds: they vary with the machine and its load, and a
        seeded search would not repeat itself."""
        if rec.macs is None or rec.activations is None or rec.epochs_run is None:
            return None
        return (rec.macs + ACTIVATION_COST * rec.activations) * float(rec.epochs_run)

    def cheaper_than_the_baselines(self, best: TrialRecord, records: Sequence[TrialRecord]) -> bool:
        """Whether ``best`` cost less to train than the costliest baseline (the hand-chosen model's budget)."""
        spent = [c for r in records if r.baseline and r.state == "complete" and not is_replay(r)
                 and (c := self.cost(r))]
        cost = self.cost(best)
        return bool(spent) and cost is not None and cost < max(spent)


def reeval_round(records: Sequence[TrialRecord], top: int, left: float | None) -> tuple[list[TrialRecord], int, str]:
    """The re-evaluation phase's round: the top configurations to retrain and how many new seeds each, as many as
    the time ``left`` allows (each run estimated by its original's seconds), up to ``MAX_REEVAL_SEEDS``;
    ``REEVAL_SEEDS`` without a time limit. When one round of the top ``top`` does not fit, the top 2 or more that
    do are retrained.

    Returns:
        ``(configurations, seeds, why)``: no configuration, and why, when there was no time for a round of the top 2.
    """
    best = top_configs(records, top)
    if len(best) < 2:
        return [], 0, ""
    if left is None:
        return best, REEVAL_SEEDS, ""
    rounds = {k: sum(r.seconds or 0.0 for r in best[:k]) or 1.0 for k in range(2, len(best) + 1)}
    fits = [k for k, seconds in rounds.items() if seconds <= left]
    if not fits:
        return [], 0, (f"no time left to re-evaluate the top {len(best)} configurations ({left:.0f} s left, a round "
                       f"of the top 2 takes about {rounds[2]:.0f} s); `cnntune best --reeval {len(best)}` does it")
    best = best[:max(fits)]
    return best, min(MAX_REEVAL_SEEDS, math.floor(left / rounds[len(best)])), ""
