"""What ``--track`` costs a search: BaseNet, 6 trials x 3 epochs, with and without an MLflow server on 127.0.0.1.

Each side is one ``cnntune search`` process (a new SQLite store and study each time), so start-up, data and every
trial count; the sides run interleaved, ``--repeats`` rounds in alternating order, and the table gives each round's
wall seconds and the median overhead of ``--track`` over the plain search. The server (``mlflow server``, SQLite
backend, the dev extra) runs on the same 2 cores as the search:

    .venv/bin/python benchmarks/tracking.py --data-dir ../shared/data/cub200_subset
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # the tests' servers
from servers import start_mlflow, stop  # noqa: E402


def search(work: Path, name: str, data_dir: str, track: str | None) -> float:
    args = [sys.executable, "-m", "tuner.cli", "search", "space=basenet", "data=cub200", f"data_dir={data_dir}",
            "image_size=32", "epochs=3", "--trials", "6", "--no-baselines", "--study", name,
            "--storage", f"sqlite:///{work / (name + '.db')}", "-q", *(["--track", track] if track else [])]
    started = time.perf_counter()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
                   cwd=work)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data/cub200_subset")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    data_dir = str(Path(args.data_dir).resolve())
    with tempfile.TemporaryDirectory(prefix="cnntune-track-bench-") as folder:
        work = Path(folder)
        (work / "mlflow").mkdir()
        server, url = start_mlflow(work / "mlflow")
        try:
            plain, tracked = [], []
            print("| round | plain search | with --track | overhead |\n|---|---|---|---|")
            for r in range(args.repeats):
                sides = [(None, plain), (url, tracked)]
                for track, times in (sides if r % 2 == 0 else sides[::-1]):
                    times.append(search(work, f"{'tracked' if track else 'plain'}-{r}", data_dir, track))
                print(f"| {r + 1} | {plain[-1]:.1f} s | {tracked[-1]:.1f} s | "
                      f"{100 * (tracked[-1] / plain[-1] - 1):+.1f}% |", flush=True)
            ratios = [t / p - 1 for t, p in zip(tracked, plain)]
            print(f"\nmedian overhead of --track: {100 * statistics.median(ratios):+.1f}% "
                  f"(plain median {statistics.median(plain):.1f} s)")
        finally:
            stop(server)


if __name__ == "__main__":
    main()
