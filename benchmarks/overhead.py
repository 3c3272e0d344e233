"""Overhead of a cnntune trial against a plain Keras ``model.fit`` of the same configuration.

Runs, in one process, on the same loaded data: (a) build + ``model.fit`` + ``evaluate`` by hand, and (b) one trial
through ``tuner._search`` (study store, callbacks, best-epoch weights, model file). Prints seconds and the ratio.

    .venv/bin/python benchmarks/overhead.py --data-dir ../shared/data/cub200_subset --epochs 5 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data/cub200_subset")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--space", default="basenet")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import keras

    import tuner
    from tuner.data import load_dataset
    from search_spaces import get_space
    from tuner.hp import Defaults, resolve
    from tuner.runner import model_spec

    data = load_dataset("cub200", data_dir=args.data_dir, image_size=args.image_size)
    space = get_space(args.space)
    params = resolve(space, Defaults({"epochs": args.epochs}))
    words = ["space=" + args.space, "data=cub200", f"data_dir={args.data_dir}", f"image_size={args.image_size}",
             f"epochs={args.epochs}"]

    def plain() -> float:
        keras.backend.clear_session()
        keras.utils.set_random_seed(0)
        start = time.perf_counter()
        model = space.build(params, model_spec(data))
        model.fit(data.x_train, data.y_train, validation_data=(data.x_val, data.y_val), epochs=args.epochs,
                  batch_size=params["batch_size"], verbose=0)
        model.evaluate(data.x_test, data.y_test, verbose=0)
        return time.perf_counter() - start

    def cnntune(i: int) -> float:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            tuner.search(words, trials=1, storage=f"sqlite:///{tmp}/b.db", study=f"b{i}", baselines=False,
                         sampler="random", seed=i, artifacts=tmp)
            return time.perf_counter() - start

    plain()  # warm-up: first graph compilation
    a = [plain() for _ in range(args.repeats)]
    b = [cnntune(i) for i in range(args.repeats)]
    ma, mb = statistics.median(a), statistics.median(b)
    print(f"backend {keras.backend.backend()}, {args.space} on cub200 {args.image_size}px, {args.epochs} epochs, "
          f"{len(data.x_train)} train images, median of {args.repeats}")
    print(f"plain model.fit + evaluate: {ma:.2f} s  (runs: {', '.join(f'{x:.2f}' for x in a)})")
    print(f"cnntune trial (search):     {mb:.2f} s  (runs: {', '.join(f'{x:.2f}' for x in b)})")
    print(f"ratio: {mb / ma:.2f}x")


if __name__ == "__main__":
    main()
