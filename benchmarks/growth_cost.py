"""Benchmark: does a trial's recorded cost (``tuner.searching.Strategy.cost``) order models as their training time does?

Growth (``--grow``) grows the best trial while it costs less to train than the costliest baseline. The cost is
computed from what every trial records (its model's multiply-accumulates and activations per image, the epochs it
trained), so that a seeded search repeats itself; the rule it replaced compared seconds. This script trains, on the
shared birds, the ``improved`` space's baselines, its study continued on BaseNet's body (the first warm start) and
that configuration grown three times, times two epochs of each (after a warm-up fit that compiles), and prints per
model: the counts, the measured time of all its epochs, and both as a ratio to the final model's (the costliest
baseline). It also fits ``seconds per epoch = a + b * macs + c * activations`` by least squares: ``c / b`` is the
weight of an activation in multiply-accumulates (``ACTIVATION_COST``).

    .venv/bin/python benchmarks/growth_cost.py --data-dir ../shared/data/cub200_subset --image-size 32

Not a test: the figures go into BENCHMARKS.md ("Growth from recorded facts").
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data/cub200_subset")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per model")
    args = parser.parse_args()

    import keras
    import numpy as np

    import search_spaces
    from tuner.data import load_dataset
    from tuner.experiment import trial_config
    from tuner.records import TrialRecord
    from tuner.searching import ACTIVATION_COST, Strategy, grow, perturbations
    from tuner.trial import activations, model_spec, multiply_adds

    data = load_dataset("cub200", data_dir=args.data_dir, image_size=args.image_size)
    space = search_spaces.get_space("improved")
    spec = model_spec(data)
    baselines = {b.name: trial_config(space, {}, b.params) for b in space.BASELINES}
    continued = perturbations(space, {}, 1, 0, mix=list(baselines.values()))[0]
    configs = {**baselines, "study continued": continued}
    grown = continued
    for i in range(3):
        grown = grow(space, {}, grown, [])
        configs[f"grown x{i + 1}"] = grown
    rows = []
    for name, config in configs.items():
        keras.utils.set_random_seed(0)
        model = space.build(config, spec)
        batch = int(config.get("batch_size", 32))
        model.fit(data.x_train[:256], data.y_train[:256], epochs=1, batch_size=batch, verbose=0)  # compiles
        start = time.perf_counter()
        model.fit(data.x_train, data.y_train, epochs=args.epochs, batch_size=batch, verbose=0)
        per_epoch = (time.perf_counter() - start) / args.epochs
        rec = TrialRecord(number=0, state="complete", params=config, macs=multiply_adds(model),
                          activations=activations(model), epochs_run=int(config["epochs"]))
        rows.append((name, rec, per_epoch))
        keras.backend.clear_session()
    final = next((rec, s) for name, rec, s in rows if name == "final")
    final_cost, final_seconds = Strategy.cost(final[0]), final[1] * final[0].epochs_run
    print(f"{len(data.x_train)} training images, {args.image_size} px; cost: ACTIVATION_COST = {ACTIVATION_COST}")
    print("| model | multiply-accumulates | activations | epochs | s per epoch | s in all | time / final's | "
          "cost / final's |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, rec, per_epoch in rows:
        print(f"| {name} | {rec.macs:,} | {rec.activations:,} | {rec.epochs_run} | {per_epoch:.2f} | "
              f"{per_epoch * rec.epochs_run:.0f} | {per_epoch * rec.epochs_run / final_seconds:.2f} | "
              f"{Strategy.cost(rec) / final_cost:.2f} |")
    x = np.array([[1.0, rec.macs, rec.activations] for _, rec, _ in rows])
    y = np.array([s for _, _, s in rows])
    (a, b, c), *_ = np.linalg.lstsq(x, y, rcond=None)
    print(f"fit: s per epoch = {a:.3f} + {b * 1e6:.4f} per million multiply-accumulates + {c * 1e3:.4f} per "
          f"thousand activations: an activation weighs {c / b:.0f} multiply-accumulates")


if __name__ == "__main__":
    main()
