"""Benchmark: the search process's memory over many trials, with and without ``--isolate`` (``tuner.trial._isolate``).

Runs the same trials (BaseNet, its hand-chosen configuration, seeds 0..N-1) through the trial runner twice, each time
in a fresh Python process: in-process (``tuner.trial.run_trial``) and isolated (``tuner.trial.isolated()``: each
trial in a child process). Reports the parent's peak RSS (``ru_maxrss``), its RSS (``VmRSS``) after each trial, the
largest child's peak RSS, and the time per trial; the isolated run also reports the part of each trial spent on
starting the child, importing Keras/TensorFlow and opening the data (``isolate_seconds``).

Run from the repository root::

    .venv/bin/python benchmarks/isolate_memory.py --trials 20 --epochs 2 --image-size 32

Data loading is done once per process, before the trials, and excluded from the trial times. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BIRDS = ROOT.parents[0] / "shared" / "data" / "cub200_subset"
MODES = ("in-process", "isolated")


def _vm_rss_mb() -> float:
    """This process's resident memory now (``VmRSS``), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _measure(args: argparse.Namespace) -> dict:
    """One mode's run, in this (fresh) process: the trials, RSS after each, peaks."""
    from search_spaces import basenet
    from tuner.data import load_dataset
    from tuner.hp import Defaults, resolve
    from tuner.trial import isolated
    from tuner.trial import run_trial

    data = load_dataset("cub200", data_dir=args.data_dir, image_size=args.image_size)
    params = resolve(basenet, Defaults({"epochs": args.epochs}))
    if args.mode == "in-process":
        import keras

        keras.backend.backend()  # imported before the first trial, outside its time (each isolated child imports it)
        runner = run_trial
    else:
        runner = isolated(run_trial)
    rss_before = _vm_rss_mb()
    trials = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.trials):
            start = time.perf_counter()
            out = runner(basenet, params, data, seed=seed, model_path=Path(tmp) / f"trial_{seed:04d}.keras")
            trials.append({"seconds": time.perf_counter() - start, "rss_mb": _vm_rss_mb(),
                           "runner_seconds": out.seconds, "isolate_seconds": out.extra.get("isolate_seconds"),
                           "val_accuracy": out.val_accuracy})
            print(f"{args.mode} trial {seed}: {trials[-1]}", file=sys.stderr, flush=True)
    return {
        "mode": args.mode, "trials": trials, "rss_before_mb": rss_before,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "child_peak_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        "train_images": len(data.x_train), "keras_imported": "keras" in sys.modules,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(BIRDS), help="the shared birds (flat CUB layout)")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--mode", choices=MODES, help="measure one mode in this process (used by the driver)")
    args = parser.parse_args()
    if args.mode:
        print(json.dumps(_measure(args)))
        return

    runs = {}
    for mode in MODES:  # each in a fresh process: peak RSS is a per-process high-water mark
        cmd = [sys.executable, __file__, "--mode", mode, "--data-dir", args.data_dir, "--image-size",
               str(args.image_size), "--epochs", str(args.epochs), "--trials", str(args.trials)]
        proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, check=True, text=True)
        runs[mode] = json.loads(proc.stdout.strip().splitlines()[-1])

    import numpy as np

    first = runs[MODES[0]]
    print(f"\nbasenet (hand-chosen configuration) on cub200 (shared birds, {first['train_images']} train images) at "
          f"{args.image_size}x{args.image_size}, {args.epochs} epochs, {args.trials} trials "
          f"(seeds 0..{args.trials - 1}); "
          f"{os.cpu_count()} CPUs ({platform.machine()}, load average {os.getloadavg()[0]:.1f} at the end)\n")
    print("| | in-process | isolated |")
    print("|---|---|---|")

    def row(label: str, fn) -> None:
        print(f"| {label} | {' | '.join(fn(runs[m]) for m in MODES)} |")

    def rss(run: dict, i: int) -> str:
        return f"{run['trials'][i]['rss_mb']:.0f} MiB"

    row("parent RSS before the first trial", lambda r: f"{r['rss_before_mb']:.0f} MiB")
    for i in sorted({0, 1, 4, 9, args.trials - 1} & set(range(args.trials))):
        row(f"parent RSS after trial {i + 1}", lambda r, i=i: rss(r, i))
    row("parent RSS growth, trial 2 to last (per trial)", lambda r: (
        f"{(r['trials'][-1]['rss_mb'] - r['trials'][1]['rss_mb']) / max(args.trials - 2, 1):+.1f} MiB"
        if args.trials > 2 else "-"))
    row("parent peak RSS (`ru_maxrss`)", lambda r: f"{r['peak_mb']:.0f} MiB")
    # In-process, the only child is a helper TensorFlow forks at import (counted at the parent's size): not shown.
    row("largest trial process's peak RSS", lambda r: f"{r['child_peak_mb']:.0f} MiB" if r["mode"] == "isolated"
        else "-")
    row("parent imported Keras", lambda r: "yes" if r["keras_imported"] else "no")
    row("seconds per trial, median (first trial)", lambda r: (
        f"{statistics.median(t['seconds'] for t in r['trials']):.2f} ({r['trials'][0]['seconds']:.2f})"))
    row("of which the runner's own `seconds`, median", lambda r: (
        f"{statistics.median(t['runner_seconds'] for t in r['trials']):.2f}"))
    iso = [t["isolate_seconds"] for t in runs["isolated"]["trials"]]
    row("`isolate_seconds` per trial, median (min-max)", lambda r: (
        "-" if r["mode"] != "isolated" else f"{statistics.median(iso):.2f} ({min(iso):.2f}-{max(iso):.2f})"))
    same = all(a["val_accuracy"] == b["val_accuracy"] for a, b in zip(*(runs[m]["trials"] for m in MODES)))
    print(f"\nsame validation accuracy in every trial: {same}; mean "
          f"{np.mean([t['val_accuracy'] for t in first['trials']]):.3f}")


if __name__ == "__main__":
    main()
