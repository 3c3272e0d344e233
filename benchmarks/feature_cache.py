"""Benchmark: a frozen-ResNet50 trial of the ``transfer`` space with and without the feature cache.

Times three runs of the same configuration (study 3.1's frozen head, ``weights=none``) through the trial runner:

1. the first cached trial (computes the backbone's features of every split and stores them: cache build),
2. a later trial with another seed (reads the features: cache hit),
3. the same trial with the cache off (the backbone runs over the training and validation images every epoch, as a
   plain ``model.fit`` of the end-to-end frozen model does).

Run from the repository root::

    .venv/bin/python benchmarks/feature_cache.py --image-size 224 --classes 10 --epochs 5

Data loading is timed separately and excluded from the trial times. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BIRDS = ROOT.parents[0] / "shared" / "data" / "cub200_subset"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(BIRDS), help="the shared birds (flat CUB layout)")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--classes", type=int, default=10, help="first N classes (50 = all of the shared birds)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--skip-uncached", action="store_true",
                        help="time only the cache build and hit (the uncached trial takes epochs x a backbone pass)")
    args = parser.parse_args()

    from search_spaces import transfer
    from tuner import hp as H
    from tuner.data import load_dataset
    from tuner.trial import run_trial

    start = time.perf_counter()
    data = load_dataset("cub200", data_dir=args.data_dir, image_size=args.image_size, classes=args.classes)
    load_s = time.perf_counter() - start
    frozen = next(b for b in transfer.BASELINES if b.name == "frozen")
    params = {**H.resolve(transfer, H.Defaults(frozen.params)), "epochs": args.epochs}
    options = {"weights": "none"}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "feature_cache"
        runs = [("first frozen trial (cache build)", 1, cache), ("later frozen trial (cache hit)", 2, cache)]
        if not args.skip_uncached:
            runs.append(("same trial, cache off (end to end, backbone frozen)", 3, False))
        for label, seed, feature_cache in runs:
            t0 = time.perf_counter()
            out = run_trial(transfer, params, data, seed=seed, model_path=Path(tmp) / f"trial{seed}.keras",
                            spec_options=options, feature_cache=feature_cache)
            seconds = time.perf_counter() - t0
            rows.append((label, seconds, out.extra.get("feature_cache"), out.extra.get("feature_seconds"),
                         out.val_accuracy))
            print(f"{label}: {seconds:.1f} s ({out.extra})", file=sys.stderr, flush=True)

    import keras
    import tensorflow as tf

    hit = rows[1][1]
    print(f"\ncub200 (shared birds), classes={args.classes}: {len(data.x_train)} train / {len(data.x_val)} val / "
          f"{len(data.x_test)} test images at {args.image_size}x{args.image_size}; {args.epochs} epochs; "
          f"weights=none; Keras {keras.__version__}, TensorFlow {tf.__version__}, {os.cpu_count()} CPUs "
          f"({platform.machine()}, load average {os.getloadavg()[0]:.1f} at the end); data loading {load_s:.1f} s "
          f"(excluded)\n")
    print("| run | seconds | feature_cache | feature seconds | vs cache hit |")
    print("|---|---|---|---|---|")
    for label, seconds, status, feat_s, _ in rows:
        print(f"| {label} | {seconds:.1f} | {status} | {'-' if feat_s is None else f'{feat_s:.1f}'} | "
              f"{seconds / hit:.1f}x |")


if __name__ == "__main__":
    main()
