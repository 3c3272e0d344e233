"""Overhead of a whole cnntune search against plain Keras, plain Optuna and plain Keras Tuner on the same trials.

Every side trains the same pinned configuration (every choice point of the space fixed with ``key=value`` words),
the same model (the space's own builder), on the same data, ``--trials`` times, with trial ``n`` seeded ``n``:

* ``plain``: a loop of ``space.build`` + ``model.fit`` + ``model.evaluate`` (the yardstick);
* ``optuna``: a hand-written ``optuna.create_study(storage=sqlite)`` whose objective is that plain fit;
* ``keras-tuner``: a ``keras_tuner.RandomSearch`` over the same fixed values, ``max_trials=N``, plus a ``seed``
  integer that seeds the trial (an oracle whose every value is fixed stops after one trial, as a duplicate);
* ``cnntune``: ``tuner.search`` of the pinned words, study creation included (SQLite store, no baselines).

Each side runs in its own process (``--side``, started by this script): the process loads the data and trains an
untimed warm-up fit of a few batches (TensorFlow's first-use costs, the same for every side), then times the whole
side, its imports of Optuna or Keras Tuner included. Sides run interleaved, ``--repeats`` rounds in alternating order;
a side's ratio is its best round over plain's best, and the median of its per-round ratios is printed beside it. It
measures BaseNet (short trials) and the final model (``space=improved`` at its hand-chosen defaults, fewer trials
and epochs):

    .venv/bin/python benchmarks/overhead.py --data-dir ../shared/data/cub200_subset --repeats 4 --final-repeats 2

The test split is evaluated with a batch of ``max(batch_size, 256)`` on every side, as cnntune's runner does, so that
every side does the same work.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere: the checkout's packages

SIDES = ("plain", "optuna", "keras-tuner", "cnntune")


def pinned(space_name: str, epochs: int) -> dict:
    """The space's hand-chosen configuration (its defaults, active choice points only) with ``epochs`` trained."""
    from search_spaces import get_space
    from tuner.hp import Defaults, resolve

    return resolve(get_space(space_name), Defaults({"epochs": epochs}))


def words(space_name: str, params: dict, data_dir: str, image_size: int) -> list[str]:
    """``key=value`` words pinning every value of ``params``."""
    return [f"space={space_name}", "data=cub200", f"data_dir={data_dir}", f"image_size={image_size}",
            *(f"{k}={v}" for k, v in params.items())]


def warm_up(space, params: dict, spec, data, batch: int) -> None:
    """An untimed fit of a few batches: TensorFlow's one-time start-up costs, paid by whichever side trains first in
    a process."""
    import keras

    keras.utils.set_random_seed(0)
    few = slice(0, 4 * batch)
    space.build(params, spec).fit(data.x_train[few], data.y_train[few], validation_data=(data.x_val[few],
                                  data.y_val[few]), epochs=1, batch_size=batch, verbose=0)
    keras.backend.clear_session()


def run_side(side: str, space_name: str, trials: int, epochs: int, data_dir: str, image_size: int) -> dict:
    """Runs one side in this process; returns its timed seconds."""
    import keras

    from search_spaces import get_space
    from tuner.data import load_dataset
    from tuner.trial import model_spec

    space = get_space(space_name)
    params = pinned(space_name, epochs)
    data = load_dataset("cub200", data_dir=data_dir, image_size=image_size)  # cached: the search reuses it
    spec = model_spec(data)
    batch, eval_batch = int(params["batch_size"]), max(int(params["batch_size"]), 256)
    fit_kw = dict(validation_data=(data.x_val, data.y_val), epochs=epochs, batch_size=batch, shuffle=True, verbose=0)

    def fit(seed: int) -> float:
        keras.utils.set_random_seed(seed)
        model = space.build(params, spec)
        history = model.fit(data.x_train, data.y_train, **fit_kw)
        model.evaluate(data.x_test, data.y_test, batch_size=eval_batch, verbose=0)
        return max(history.history["val_accuracy"])

    warm_up(space, params, spec, data, batch)

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        if side == "plain":
            for n in range(trials):
                fit(n)
        elif side == "optuna":
            import optuna

            optuna.logging.set_verbosity(optuna.logging.ERROR)
            study = optuna.create_study(storage=f"sqlite:///{tmp}/optuna.db", study_name="overhead",
                                        direction="maximize")
            study.optimize(lambda trial: fit(trial.number), n_trials=trials)
        elif side == "keras-tuner":
            import keras_tuner as kt

            class Pinned(kt.HyperModel):
                def build(self, hp):
                    for key, value in params.items():
                        hp.Fixed(key, value)
                    keras.utils.set_random_seed(hp.Int("seed", 0, 2**30))
                    return space.build(params, spec)

                def fit(self, hp, model, *args, **kwargs):
                    history = model.fit(*args, **kwargs)
                    model.evaluate(data.x_test, data.y_test, batch_size=eval_batch, verbose=0)
                    return history

            search = kt.RandomSearch(Pinned(), objective="val_accuracy", max_trials=trials, seed=0, directory=tmp,
                                     project_name="overhead")
            search.search(data.x_train, data.y_train, **fit_kw)
        elif side == "cnntune":
            import tuner

            result = tuner.search(words(space_name, params, data_dir, image_size),
                                  tuner.SearchOptions(trials=trials, storage=f"sqlite:///{tmp}/cnntune.db",
                                                      study="overhead", baselines=False, seed=0, artifacts=tmp))
            assert len(result.ran) == trials, result.ran
        else:
            raise SystemExit(f"unknown side {side!r}; valid: {', '.join(SIDES)}")
        seconds = time.perf_counter() - start
    return {"side": side, "space": space_name, "trials": trials, "epochs": epochs, "seconds": seconds,
            "backend": keras.backend.backend(), "train_images": int(len(data.x_train))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data/cub200_subset")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--trials", type=int, default=6, help="BaseNet trials per side")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of each BaseNet trial")
    parser.add_argument("--final-trials", type=int, default=2, help="final-model trials per side (0: skip)")
    parser.add_argument("--final-epochs", type=int, default=2, help="epochs of each final-model trial")
    parser.add_argument("--repeats", type=int, default=2, help="rounds; each side's best is kept")
    parser.add_argument("--final-repeats", type=int, default=None, help="final-model rounds (default: --repeats)")
    parser.add_argument("--sides", default=",".join(SIDES), help="comma-separated, from: " + ", ".join(SIDES))
    parser.add_argument("--out", default=None, help="write the rows as JSON here")
    parser.add_argument("--side", default=None, help=argparse.SUPPRESS)  # internal: run one side, print JSON
    parser.add_argument("--space", default="basenet", help=argparse.SUPPRESS)
    args = parser.parse_args()
    data_dir = str(Path(args.data_dir).resolve())

    if args.side:
        trials, epochs = (args.final_trials, args.final_epochs) if args.space == "improved" else (
            args.trials, args.epochs)
        print(json.dumps(run_side(args.side, args.space, trials, epochs, data_dir, args.image_size)))
        return

    sides = [s for s in args.sides.split(",") if s]
    if "plain" not in sides:
        sides.insert(0, "plain")
    runs = [("basenet", args.trials, args.epochs, args.repeats)] + (
        [("improved", args.final_trials, args.final_epochs, args.final_repeats or args.repeats)]
        if args.final_trials else [])
    rows = []
    print(f"load average at start: {os.getloadavg()[0]:.2f}", flush=True)
    for space_name, trials, epochs, repeats in runs:
        best: dict[str, float] = {}
        seen: dict[str, list[float]] = {s: [] for s in sides}
        for round_ in range(repeats):
            order = sides if round_ % 2 == 0 else sides[::-1]  # interleaved, alternating order
            for side in order:
                cmd = [sys.executable, __file__, "--side", side, "--space", space_name, "--data-dir", data_dir,
                       "--image-size", str(args.image_size), "--trials", str(args.trials), "--epochs",
                       str(args.epochs), "--final-trials", str(args.final_trials), "--final-epochs",
                       str(args.final_epochs)]
                out = subprocess.run(cmd, capture_output=True, text=True)
                if out.returncode:
                    raise SystemExit(f"side {side} failed (exit {out.returncode}):\n{out.stderr[-3000:]}")
                row = json.loads(out.stdout.strip().splitlines()[-1])
                seen[side].append(row["seconds"])
                print(f"  {space_name} {side:<12} {row['seconds']:7.2f} s", flush=True)
        for side in sides:
            best[side] = min(seen[side])
        print(f"{space_name}: {trials} pinned trials x {epochs} epochs, cub200 {args.image_size}px, "
              f"{row['train_images']} train images, backend {row['backend']}, best of {repeats}; the ratio of the "
              f"bests, and the median of the rounds' ratios (each round runs every side once)")
        for side in sides:
            ratio = best[side] / best["plain"]
            rounds = statistics.median(x / p for x, p in zip(seen[side], seen["plain"]))
            print(f"  {side:<12} {best[side]:7.2f} s  {ratio:5.2f}x  (rounds {rounds:4.2f}x; "
                  f"{(best[side] - best['plain']) / trials:+.2f} s per trial; "
                  f"runs: {', '.join(f'{x:.2f}' for x in seen[side])})")
            rows.append({"space": space_name, "trials": trials, "epochs": epochs, "side": side,
                         "seconds": best[side], "runs": seen[side], "ratio_vs_plain": ratio,
                         "median_round_ratio": rounds})
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
