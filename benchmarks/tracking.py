"""What ``--track`` costs a search: BaseNet, 6 trials x 3 epochs, with and without an MLflow server on 127.0.0.1.

Three sides: no tracking, ``--track`` over MLflow's REST API (the default for an http server) and ``--track``
through MLflow's own client (``CNNTUNE_MLFLOW_CLIENT=1``, the way before the REST path). Each side is one
``cnntune search`` process (a new SQLite store and study each time), so start-up, data and every
trial count; the sides run interleaved, ``--repeats`` rounds in alternating order, and the table gives each round's
wall seconds (and the CPU seconds of the search process, the server's not counted) and the median overhead of
``--track`` over the plain search. The server (``mlflow server``, SQLite
backend, the dev extra) runs on the same 2 cores as the search:

    .venv/bin/python benchmarks/tracking.py --data-dir ../shared/data/cub200_subset
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # the tests' servers
from servers import start_mlflow, stop  # noqa: E402


def search(work: Path, name: str, data_dir: str, track: str | None, client: bool = False) -> tuple[float, float]:
    """One search; ``(wall seconds, CPU seconds of the search process)``."""
    args = [sys.executable, "-m", "tuner.cli", "search", "space=basenet", "data=cub200", f"data_dir={data_dir}",
            "image_size=32", "epochs=3", "--trials", "6", "--no-baselines", "--study", name,
            "--storage", f"sqlite:///{work / (name + '.db')}", "-q", *(["--track", track] if track else [])]
    env = {k: v for k, v in os.environ.items() if k != "CNNTUNE_MLFLOW_CLIENT"}
    env.update({"TF_CPP_MIN_LOG_LEVEL": "3", **({"CNNTUNE_MLFLOW_CLIENT": "1"} if client else {})})
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, env=env, cwd=work)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


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
            sides = {"plain search": (None, False), "--track (REST)": (url, False),
                     "--track (MLflow's client)": (url, True)}
            times: dict[str, list[float]] = {name: [] for name in sides}
            cpu: dict[str, list[float]] = {name: [] for name in sides}
            print("| round | " + " | ".join(sides) + " | REST overhead | client overhead |")
            print("|---" * (len(sides) + 3) + "|")
            for r in range(args.repeats):
                order = list(sides) if r % 2 == 0 else list(sides)[::-1]
                for name in order:
                    track, client = sides[name]
                    wall, used = search(work, f"{name.split()[0].strip('-')}-{r}{'-c' if client else ''}", data_dir,
                                        track, client)
                    times[name].append(wall)
                    cpu[name].append(used)
                row = [times[name][-1] for name in sides]
                print(f"| {r + 1} | " + " | ".join(f"{t:.1f} s ({cpu[n][-1]:.1f} s CPU)" for t, n in zip(row, sides)) +
                      f" | {100 * (row[1] / row[0] - 1):+.1f}% | {100 * (row[2] / row[0] - 1):+.1f}% |", flush=True)
            plain, plain_cpu = times["plain search"], cpu["plain search"]
            for name in list(sides)[1:]:
                ratios = [t / p - 1 for t, p in zip(times[name], plain)]
                extra = [c - p for c, p in zip(cpu[name], plain_cpu)]
                print(f"{name}: median wall overhead {100 * statistics.median(ratios):+.1f}% (plain median "
                      f"{statistics.median(plain):.1f} s); median extra CPU of the search process "
                      f"{statistics.median(extra):+.2f} s (plain median {statistics.median(plain_cpu):.1f} s)")
        finally:
            stop(server)


if __name__ == "__main__":
    main()
