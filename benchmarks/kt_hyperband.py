"""Benchmark: epochs a Keras Tuner ``hyperband`` search trains, and what it finds, for one fixed 12-trial search.

Keras Tuner's Hyperband promotes the best trials of a round to the next round with more epochs
(``tuner/initial_epoch`` -> ``tuner/epochs``). A promoted trial can start from the weights its previous round ended
with (Keras Tuner's own ``Tuner`` does) or retrain from scratch. This script runs the same seeded search and reports
the epochs every trial trained (the length of its recorded history), the wall time and the best trial.

    .venv/bin/python benchmarks/kt_hyperband.py --data-dir ../shared/data/cub200_subset --epochs 9 --seeds 0 1

Not a test: it trains real models for a few minutes. The figures go into BENCHMARKS.md.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import tuner
from _search_args import birds_words, search_parser


def run(words: list[str], seed: int, trials: int, storage: str) -> dict:
    name = f"hyperband-seed{seed}"
    start = time.perf_counter()
    tuner.search(words,
                 tuner.SearchOptions(trials=trials, storage=storage, study=name, seed=seed, engine="keras-tuner",
                                     tuner="hyperband", baselines=False))
    seconds = time.perf_counter() - start
    records = tuner.trials(study=name, storage=storage).records
    done = [r for r in records if r.state == "complete"]
    best = max(done, key=lambda r: r.val_accuracy)
    trained = [len(r.history.get("loss", [])) for r in records]
    import optuna

    rounds = [t.user_attrs.get("kt_round", {}) for t in optuna.load_study(study_name=name, storage=storage).trials]
    return {
        "seed": seed,
        "trials": len(records),
        "complete": len(done),
        "epochs_trained": sum(trained),
        "per_trial": trained,
        # (bracket, round, epochs reached, epochs trained, best validation accuracy %) of every trial
        "trials_detail": [(k.get("bracket"), k.get("round"), k.get("epochs"), n, round(100 * (r.val_accuracy or 0), 1))
                          for k, n, r in zip(rounds, trained, records)],
        "best_val": round(100 * best.val_accuracy, 2),
        "best_test": round(100 * best.test_accuracy, 2),
        "best_epochs": best.epochs_run,
        "seconds": round(seconds, 1),
    }


def main() -> None:
    parser = search_parser(__doc__, epochs=None, epochs_help="pin epochs (Hyperband's max_epochs); default: the "
                           "space's own (15 for basenet)")
    args = parser.parse_args()
    words = birds_words(args)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        storage = f"sqlite:///{Path(tmp) / 'bench.db'}"
        for seed in args.seeds:
            row = run(words, seed, args.trials, storage)
            print(json.dumps(row), flush=True)
            rows.append(row)
    print("| seed | trials | epochs trained | best val % | its test % | seconds |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['seed']} | {row['trials']} | {row['epochs_trained']} | {row['best_val']} | {row['best_test']} "
              f"| {row['seconds']} |")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
