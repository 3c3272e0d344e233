"""Benchmark: how long the reading commands (``cnntune trials``, ``cnntune best``) take on large studies.

Builds a study of N trials shaped like a real cnntune study (the metadata and one trial's user attributes of a real
search of ``improved`` on synthetic data, with a 30-epoch history per trial, values varied per trial) through
Optuna's API (``Study.add_trials``), on SQLite and, with ``--postgres URL``, on PostgreSQL; then times each command
as a whole process (start-up included), ``--runs`` times after one warm-up run, and prints min / median / max
seconds. The studies stay in ``--dir`` (SQLite) or in the database as ``bench-reading-N``, and a rerun reuses them
(adding 5,000 trials takes minutes).

    .venv/bin/python benchmarks/reading.py --trials 3 200 5000 --postgres postgresql://postgres@127.0.0.1:5432/test \
        --dir /tmp/cnntune-reading

Not a test: the figures go into BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EPOCHS = 30


def _template(folder: Path):
    """The study metadata and a completed trial's user attributes of a real (untrained) cnntune search."""
    import optuna

    sys.path.insert(0, str(ROOT / "tests"))
    import tuner
    from conftest import FakeRunner

    url = f"sqlite:///{folder / 'template.db'}"
    tuner.search(["space=improved", "data=synthetic", "epochs=1"],
                 tuner.SearchOptions(trials=2, storage=url, study="t"), runner=FakeRunner())
    study = optuna.load_study(study_name="t", storage=url)
    searched = [t for t in study.trials if "baseline" not in t.user_attrs]
    return study.user_attrs, searched[-1], [t for t in study.trials if "baseline" in t.user_attrs]


def build(url: str, name: str, n: int, template) -> None:
    import optuna

    from tuner.store import open_storage

    storage = open_storage(url)  # the driver cnntune installs (psycopg2), as the commands will open it
    study_attrs, trial, baselines = template
    with contextlib.suppress(KeyError):
        if len(optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)) == n:
            return  # built by an earlier run (adding 5,000 trials takes minutes)
        optuna.delete_study(study_name=name, storage=storage)
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize")
    for key, value in study_attrs.items():
        study.set_user_attr(key, value)
    rng = random.Random(0)
    trials = []
    for i in range(n):
        source = baselines[i] if i < len(baselines) else trial
        acc = rng.uniform(0.02, 0.5)
        attrs = dict(source.user_attrs)
        attrs.update(val_accuracy=acc, test_accuracy=acc * 0.95, seed=i, seconds=rng.uniform(5, 60),
                     history={k: [rng.random() for _ in range(EPOCHS)]
                              for k in ("loss", "accuracy", "val_loss", "val_accuracy")},
                     epochs_run=EPOCHS, best_epoch=rng.randint(1, EPOCHS))
        trials.append(optuna.trial.create_trial(params=source.params, distributions=source.distributions,
                                                value=acc, user_attrs=attrs))
    study.add_trials(trials)


def time_command(args: list[str], runs: int) -> list[float]:
    env = {**os.environ, "COLUMNS": "120"}
    seconds = []
    for _ in range(runs + 1):  # the first run warms the page cache and is not counted
        t0 = time.perf_counter()
        subprocess.run(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        seconds.append(time.perf_counter() - t0)
    return seconds[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, nargs="+", default=[3, 200, 5000])
    parser.add_argument("--postgres", default=os.environ.get("CNNTUNE_TEST_POSTGRES_URL"))
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--dir", default=None, help="folder for the SQLite studies (default: a temporary one)")
    parser.add_argument("--commands", nargs="+", default=["trials", "best"])
    args = parser.parse_args()
    folder = Path(args.dir or tempfile.mkdtemp(prefix="cnntune-reading-"))
    folder.mkdir(parents=True, exist_ok=True)
    template = _template(folder)
    cli = [sys.executable, "-m", "tuner.cli"]
    stores = [("sqlite", lambda n: f"sqlite:///{folder / f'reading-{n}.db'}")]
    if args.postgres:
        stores.append(("postgresql", lambda n: args.postgres))
    print("| storage | trials | command | min s | median s | max s |")
    print("|---|---:|---|---:|---:|---:|")
    for kind, url_of in stores:
        for n in args.trials:
            url, name = url_of(n), f"bench-reading-{n}"
            build(url, name, n, template)
            for command in args.commands:
                secs = time_command([*cli, command, "--study", name, "--storage", url], args.runs)
                print(f"| {kind} | {n} | {command} | {min(secs):.2f} | {statistics.median(secs):.2f} | "
                      f"{max(secs):.2f} |", flush=True)


if __name__ == "__main__":
    main()
