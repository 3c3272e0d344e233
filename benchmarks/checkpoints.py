"""Per-epoch checkpoints in a bucket against a local folder, and the time from SIGTERM to the checkpoint stored.

Part 1, the cost of a checkpoint per epoch. For BaseNet and the final model (``space=improved`` at its hand-chosen
defaults) on the birds at 32x32, one real trial writes its checkpoint (weights, Adam's moments, random-layer states);
that checkpoint is then written again ``--writes`` times to a local folder and to an S3 bucket (``_checkpoint.write``,
what the trial's background writer runs after every epoch), alternating; the table gives the median milliseconds and
the checkpoint's size. Then whole trials of ``--epochs`` epochs train with their checkpoints in the local folder and
in the bucket, ``--repeats`` rounds alternating, and the table gives the median seconds per epoch of each: the
training thread's cost, since the write runs beside the next epoch.

Part 2, SIGTERM. ``cnntune search`` runs BaseNet (6 epochs of 50 generated classes) with ``--artifacts`` in the
bucket; once the bucket holds the checkpoint of epoch 2, the process gets SIGTERM in the middle of an epoch. The
table gives the seconds from the signal to the process's exit (code 130), by which time the trial is recorded as
interrupted and the last whole epoch's checkpoint is in the bucket (checked: its epoch is read back).

The bucket is moto's S3-protocol server on 127.0.0.1 (the dev extra), unless ``--endpoint`` names another server
(AWS_* credentials from the environment then). A local server measures cnntune's and the client's costs, not a
network's: against a cloud bucket add the upload time of the checkpoint's size at the host's bandwidth.

    .venv/bin/python benchmarks/checkpoints.py --data-dir ../shared/data/cub200_subset
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # run from anywhere: the checkout's packages, the tests' servers

from servers import start_moto, stop  # noqa: E402


def make_bucket(endpoint: str) -> str:
    import boto3

    name = f"cnntune-bench-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=name)
    return f"s3://{name}"


def trial(space_name: str, data, epochs: int, checkpoint_dir: str, seed: int = 0) -> float:
    """Trains the space's defaults for ``epochs`` epochs checkpointing into ``checkpoint_dir``; seconds per epoch."""
    from search_spaces import get_space
    from tuner.hp import Defaults, resolve
    from tuner.trial import run_trial

    space = get_space(space_name)
    params = resolve(space, Defaults({"epochs": epochs}))
    out = run_trial(space, params, data, seed=seed, model_path=None, checkpoint_dir=checkpoint_dir,
                    evaluate_test=False, feature_cache=False)
    return out.seconds / epochs


def part_1(args, bucket: str, work: Path) -> None:
    from tuner.data import load_dataset
    from tuner.trial import _checkpoint

    data = load_dataset("cub200", data_dir=args.data_dir, image_size=32)
    print("| model | checkpoint | write, local folder | write, bucket | epoch, checkpoints local | "
          "epoch, checkpoints in the bucket |")
    print("|---|---|---|---|---|---|")
    for space_name, label in (("basenet", "BaseNet"), ("improved", "final model")):
        seed_dir = work / f"{space_name}-first"
        trial(space_name, data, 1, str(seed_dir))
        ckpt = _checkpoint.read(seed_dir)
        size = (seed_dir / _checkpoint.FILE).stat().st_size
        local, remote = [], []
        for i in range(args.writes):
            for where, times in ((str(work / f"{space_name}-local"), local), (f"{bucket}/{space_name}", remote)):
                started = time.perf_counter()
                _checkpoint.write(where, ckpt)
                times.append(time.perf_counter() - started)
        epoch_local, epoch_remote = [], []
        for r in range(args.repeats):
            sides = [(str(work / f"{space_name}-trial-{r}"), epoch_local),
                     (f"{bucket}/{space_name}-trial-{r}", epoch_remote)]
            for where, times in (sides if r % 2 == 0 else sides[::-1]):
                times.append(trial(space_name, data, args.epochs, where, seed=r))
        ms = lambda xs: f"{1000 * statistics.median(xs):.1f} ms"  # noqa: E731
        print(f"| {label} | {size / 2**20:.2f} MiB | {ms(local)} | {ms(remote)} | "
              f"{statistics.median(epoch_local):.2f} s | {statistics.median(epoch_remote):.2f} s |", flush=True)


def part_2(args, bucket: str, work: Path) -> None:
    from tuner.trial import _checkpoint

    words = ["space=basenet", "data=synthetic", "classes=50", "epochs=6", "learning_rate=0.001"]
    print("\n| run | SIGTERM at | SIGTERM to exit | exit code | checkpoint in the bucket |")
    print("|---|---|---|---|---|")
    took = []
    for run in range(args.signals):
        study = f"sigterm-{run}"
        folder = f"{bucket}/runs/{study}/checkpoints/trial_0000"
        proc = subprocess.Popen(
            [sys.executable, "-m", "tuner.cli", "search", *words, "--trials", "1", "--no-baselines", "--study", study,
             "--storage", f"sqlite:///{work / 'sigterm.db'}", "--artifacts", f"{bucket}/runs", "-q"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
        seen = None
        while (seen := _checkpoint.read_meta(folder)) is None or seen["epoch"] < 2:
            if proc.poll() is not None:
                sys.exit(f"the search ended before epoch 2:\n{proc.communicate()[0][-2000:]}")
            time.sleep(0.05)
        time.sleep(0.3)  # into the next epoch
        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=120)
        took.append(time.monotonic() - signalled)
        stored = _checkpoint.read_meta(folder)
        print(f"| {run + 1} | epoch {seen['epoch'] + 1} | {took[-1]:.2f} s | {proc.returncode} | "
              f"epoch {stored['epoch'] if stored else 'none'} |", flush=True)
    print(f"\nSIGTERM to exit: median {statistics.median(took):.2f} s, longest {max(took):.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data/cub200_subset")
    parser.add_argument("--writes", type=int, default=20, help="checkpoint writes per side")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--signals", type=int, default=5, help="SIGTERM runs")
    parser.add_argument("--endpoint", help="an S3-protocol server to use instead of a local moto server")
    args = parser.parse_args()

    server = None
    if args.endpoint is None:
        os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1")
        server, args.endpoint = start_moto()
    os.environ["AWS_ENDPOINT_URL"] = args.endpoint
    try:
        bucket = make_bucket(args.endpoint)
        with tempfile.TemporaryDirectory(prefix="cnntune-bench-") as folder:
            part_1(args, bucket, Path(folder))
            part_2(args, bucket, Path(folder))
    finally:
        if server is not None:
            stop(server)


if __name__ == "__main__":
    main()
