"""Benchmark: ASHA pruning against no pruning on the same space, data, trial budget and seeds.

For each seed, two studies run the same search (same TPE seed, so the same first configurations): one with
``--pruner none``, one with ``--pruner asha``. Reported per run: the best validation (and its test) accuracy over
completed trials, the total epochs trained (pruned trials count the epochs they ran) and the wall time.

    .venv/bin/python benchmarks/pruning.py --data-dir ../shared/data/cub200_subset --seeds 0 1 2

Not a test: it trains real models for a few minutes. The figures go into BENCHMARKS.md.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

import tuner
from _search_args import birds_words, search_parser


def run(words: list[str], pruner: str, seed: int, trials: int, storage: str) -> dict:
    name = f"{pruner}-seed{seed}"
    start = time.perf_counter()
    tuner.search(words,
                 tuner.SearchOptions(trials=trials, storage=storage, study=name, seed=seed, pruner=pruner,
                                     baselines=False))
    seconds = time.perf_counter() - start
    records = tuner.trials(study=name, storage=storage).records
    done = [r for r in records if r.state == "complete"]
    best = max(done, key=lambda r: r.val_accuracy)
    return {
        "pruner": pruner,
        "seed": seed,
        "best_val": best.val_accuracy,
        "best_test": best.test_accuracy,
        "epochs": sum(r.epochs_run or 0 for r in records),
        "complete": len(done),
        "pruned": sum(r.state == "pruned" for r in records),
        "seconds": round(seconds, 1),
    }


def main() -> None:
    parser = search_parser(__doc__, epochs=6)
    parser.add_argument("--asha-min-epochs", type=int, default=None,
                        help="first epoch at which ASHA may stop a trial (default: cnntune's, 2)")
    parser.add_argument("--reduction-factor", type=int, default=None,
                        help="ASHA keeps the top 1/N at each rung (default: tuner's, 3)")
    parser.add_argument("--pruners", nargs="+", default=["none", "asha"], choices=["none", "asha"])
    args = parser.parse_args()
    from tuner.searching.engines import _pruning

    if args.asha_min_epochs is not None:
        _pruning.MIN_EPOCHS = args.asha_min_epochs
    if args.reduction_factor is not None:
        _pruning.REDUCTION_FACTOR = args.reduction_factor
    words = birds_words(args)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        storage = f"sqlite:///{Path(tmp) / 'bench.db'}"
        for seed in args.seeds:
            for pruner in args.pruners:
                rows.append(run(words, pruner, seed, args.trials, storage))
                print(json.dumps(rows[-1]), flush=True)
    print(f"\n{args.space} on cub200 {args.image_size}px, {args.trials} trials x {args.epochs} epochs, TPE, "
          f"ASHA from epoch {_pruning.MIN_EPOCHS}, reduction factor {_pruning.REDUCTION_FACTOR}\n")
    print("| pruner | seed | best val % | its test % | epochs trained | complete / pruned | seconds |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['pruner']} | {r['seed']} | {100 * r['best_val']:.1f} | {100 * r['best_test']:.1f} | "
              f"{r['epochs']} | {r['complete']} / {r['pruned']} | {r['seconds']} |")
    for pruner in args.pruners:
        mine = [r for r in rows if r["pruner"] == pruner]
        print(f"| {pruner} | mean | {100 * statistics.mean(r['best_val'] for r in mine):.1f} | "
              f"{100 * statistics.mean(r['best_test'] for r in mine):.1f} | "
              f"{statistics.mean(r['epochs'] for r in mine):.1f} | | "
              f"{statistics.mean(r['seconds'] for r in mine):.1f} |")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
