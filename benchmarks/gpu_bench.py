"""The GPU benchmark's measurements (run by ``benchmarks/gpu.sh``, which installs the wheels and picks the backend).

Part 1, training throughput: images per second of ``model.fit`` for BaseNet and the study's final model (32 px,
25 classes) and ResNet50 at 224 px (frozen backbone, and fine-tuning all layers; ``weights=none``: no download), each
in float32, in mixed precision (bfloat16) and with JIT compilation forced on. Each measurement builds the space's own
model, trains a few untimed batches (compilation), then times ``--steps`` batches of synthetic uint8 images.

Part 2, many small trials per GPU: a 40-trial ``improved`` search on CIFAR-sized synthetic data (32 px, 25 classes,
``epochs=2``) with K = 1, 2 and 4 trials per GPU (``--trials-per-gpu K``), each for at most ``--search-seconds``;
reports trials per hour and the GPU's busy fraction (``nvidia-smi``'s ``utilization.gpu`` sampled every 200 ms).

``--smoke`` runs everything tiny on a machine without a GPU (``--workers K`` instead of ``--trials-per-gpu K``, no
busy fraction), to check the script itself.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MODES = [("float32", "float32", None), ("mixed bf16", "bfloat16", None), ("JIT", "float32", True)]


def _models(smoke: bool):
    """(label, space, params, image size, classes, batch size) of each throughput row."""
    big = 64 if smoke else 224
    return [
        ("BaseNet", "basenet", {}, 32, 25, 32),
        ("final model", "improved", {}, 32, 25, 32),
        (f"ResNet50 frozen, {big} px", "transfer", {"mode": "frozen"}, big, 50, 64),
        (f"ResNet50 fine-tune, {big} px", "transfer", {"mode": "fine_tune_all"}, big, 50, 64),
    ]


def throughput(space_name: str, pins: dict, size: int, classes: int, batch: int, precision: str, jit, steps: int):
    """Images per second of ``model.fit`` over ``steps`` batches, after untimed compile batches."""
    import keras
    import numpy as np

    from search_spaces import get_space
    from tuner.trial import apply_jit, precision_policy
    from tuner.hp import Defaults, resolve
    from tuner.spec import ModelSpec

    space = get_space(space_name)
    params = resolve(space, Defaults(pins))
    batch = int(pins.get("batch_size", batch))
    spec = ModelSpec(input_shape=(size, size, 3), num_classes=classes, options={"weights": "none"})
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(batch * steps, size, size, 3), dtype=np.uint8)
    y = rng.integers(0, classes, size=(batch * steps,))
    keras.backend.clear_session()
    with precision_policy(precision):
        model = space.build(params, spec)
        jit_used = apply_jit(model, jit)
        model.fit(x[: 3 * batch], y[: 3 * batch], batch_size=batch, epochs=1, verbose=0)  # compile, untimed
        start = time.perf_counter()
        model.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=False)  # the logs are read: synchronised
        seconds = time.perf_counter() - start
    return len(x) / seconds, jit_used


class Busy:
    """Samples ``nvidia-smi``'s GPU utilization every 200 ms while open; ``fraction`` is their mean / 100."""

    def __enter__(self):
        self.samples: list[float] = []
        self.proc = None
        if shutil.which("nvidia-smi"):
            self.proc = subprocess.Popen(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,"
                                          "nounits", "-lms", "200"], stdout=subprocess.PIPE, text=True)
        return self

    def __exit__(self, *exc):
        if self.proc is not None:
            self.proc.terminate()
            out, _ = self.proc.communicate(timeout=10)
            for line in out.splitlines():
                try:
                    self.samples.append(float(line.split(",")[0]))
                except ValueError:
                    pass

    @property
    def fraction(self) -> float | None:
        return sum(self.samples) / len(self.samples) / 100.0 if self.samples else None


def search_rate(k: int, trials: int, seconds: float, smoke: bool, workdir: Path) -> tuple[int, float, float | None]:
    """Completed trials, trials per hour and GPU busy fraction of a K-per-GPU ``improved`` search."""
    import tuner

    url = f"journal:{workdir / f'k{k}.journal'}"
    cmd = [sys.executable, "-m", "tuner.cli", "search", "space=improved", "data=synthetic", "classes=25",
           "epochs=1" if smoke else "epochs=2", "--trials", str(trials), "--no-baselines", "--storage", url,
           "--study", f"k{k}", "--timeout", f"{seconds:.0f}", "--quiet", "--artifacts", str(workdir / f"k{k}")]
    cmd += ["--workers", str(k)] if smoke or not shutil.which("nvidia-smi") else ["--trials-per-gpu", str(k)]
    start = time.perf_counter()
    with Busy() as busy:
        proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"the K={k} search failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
    done = sum(1 for r in tuner.trials(study=f"k{k}", storage=url).records if r.state == "complete")
    return done, 3600.0 * done / wall, busy.fraction


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="gpu-benchmark.md", help="the table is written here (and printed)")
    parser.add_argument("--steps", type=int, default=30, help="timed batches per throughput measurement")
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--search-seconds", type=float, default=75.0, help="--timeout of each K's search")
    parser.add_argument("--ks", default="1,2,4")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, no GPU needed: checks the script")
    args = parser.parse_args()
    if args.smoke:
        args.steps, args.trials, args.search_seconds, args.ks = 2, 3, 5.0, "1,2"
    import keras

    started = time.perf_counter()
    gpu = "no GPU"
    if shutil.which("nvidia-smi"):
        gpu = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True).stdout.strip().splitlines()[0]
    lines = [f"# cnntune GPU benchmark: {gpu}, Keras {keras.__version__}, backend {keras.backend.backend()}, "
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", "",
             "## Training throughput (images/s, synthetic uint8 images; ResNet50 with weights=none)", "",
             "| model | batch | " + " | ".join(label for label, _, _ in MODES) + " |",
             "|---|---|" + "---|" * len(MODES)]
    for label, space_name, pins, size, classes, batch in _models(args.smoke):
        cells = []
        for _, precision, jit in MODES:
            try:
                rate, jit_used = throughput(space_name, pins, size, classes, batch, precision, jit, args.steps)
                cells.append(f"{rate:,.0f}" + ("" if jit is None or jit_used else " (JIT refused)"))
            except Exception as exc:  # one failing mode must not cost the rest of the table
                cells.append(f"failed: {type(exc).__name__}")
            print(f"  {label} {precision} jit={jit}: {cells[-1]}", flush=True)
        lines.append(f"| {label} | {batch} | " + " | ".join(cells) + " |")
    lines += ["", f"## Many small trials per GPU: `improved` search, synthetic 32 px, 25 classes, "
              f"{'epochs=1' if args.smoke else 'epochs=2'}, up to {args.trials} trials, "
              f"--timeout {args.search_seconds:.0f} s", "",
              "| trials per GPU (K) | complete trials | trials per hour | GPU busy |", "|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        for k in (int(v) for v in args.ks.split(",")):
            done, rate, busy = search_rate(k, args.trials, args.search_seconds, args.smoke, Path(tmp))
            lines.append(f"| {k} | {done} | {rate:,.0f} | {'n/a' if busy is None else f'{busy:.0%}'} |")
            print(f"  K={k}: {done} trials, {rate:.0f}/h, busy {busy}", flush=True)
    lines += ["", f"Whole run: {time.perf_counter() - started:.0f} s."]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"table written to {os.path.abspath(args.out)}")


if __name__ == "__main__":
    main()
