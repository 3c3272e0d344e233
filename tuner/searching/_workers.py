"""Many workers on one host: ``search --workers N``, ``search --gpus 0,1,2,3`` and ``--trials-per-gpu K``.

The search process creates the study (settings, queued baselines) and starts ``N`` ``cnntune worker`` processes on
it, one per listed GPU (K per GPU with ``--trials-per-gpu``, each with a share of its memory) with
``CUDA_VISIBLE_DEVICES`` set to that GPU alone; it relays their output line by line,
tagged with the worker's name, and waits for them. The study's storage is the only thing they share: the budget is
kept exact by the places of ``tuner.store.Budget``, a dead worker's trial is retried through the storage's
heartbeats. Nothing here imports Optuna or Keras.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

from tuner.errors import CnntuneError
from tuner.options import SearchOptions
from tuner.records import Display
from tuner.store import redact, sqlite_file
from tuner.trial import share_gpu_env

__all__ = ["WorkerPool", "parse_gpus", "worker_pool"]

# Seconds a worker gets after SIGTERM to checkpoint its trial and exit before it is killed.
STOP_GRACE = 30.0


def parse_gpus(gpus: str | Sequence[str]) -> list[str]:
    """GPU ids from ``"0,1,3"``, a list, or ``"all"`` (every GPU ``nvidia-smi -L`` lists), each one a GPU of this
    machine: an index or a UUID that ``nvidia-smi -L`` lists (a worker given a GPU that is not there would train on
    the CPU without a word).

    Raises:
        CnntuneError: an empty list, a GPU listed twice or not on this machine, or ``nvidia-smi`` missing, failing or
            listing no GPU.
    """
    if isinstance(gpus, str) and gpus.strip() == "all":
        return [index for index, _ in _listed_gpus("all")]
    ids = [str(g).strip() for g in (gpus.split(",") if isinstance(gpus, str) else gpus)]
    if not ids or any(not g for g in ids):
        raise CnntuneError(f"--gpus takes a comma-separated list of GPU ids (0,1,3) or all. Received: {gpus!r}")
    if len(set(ids)) != len(ids):
        raise CnntuneError(f"--gpus lists a GPU twice: {gpus!r}; use --workers N to run several workers per GPU")
    listed = _listed_gpus(",".join(ids))
    known = {name for pair in listed for name in pair}
    missing = [g for g in ids if g not in known]
    if missing:
        raise CnntuneError(f"--gpus {','.join(ids)}: this machine has no GPU {', '.join(missing)}; nvidia-smi -L "
                           f"lists {', '.join(index for index, _ in listed)}")
    return ids


def _listed_gpus(asked: str) -> list[tuple[str, str]]:
    """``(index, UUID)`` of each GPU ``nvidia-smi -L`` lists (``GPU 0: NVIDIA H100 (UUID: GPU-...)``)."""
    if shutil.which("nvidia-smi") is None:
        raise CnntuneError(f"--gpus {asked}: nvidia-smi is not installed here, so there is no NVIDIA GPU to give "
                           "workers; use --workers N for CPU workers")
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30, check=True).stdout
    except (subprocess.SubprocessError, OSError) as exc:
        raise CnntuneError(f"--gpus {asked}: nvidia-smi -L failed ({exc})") from None
    listed = []
    for line in out.splitlines():
        if line.startswith("GPU "):
            index = line.split(":", 1)[0].split()[1]
            uuid = line.rpartition("UUID:")[2].strip(" )") if "UUID:" in line else index
            listed.append((index, uuid))
    if not listed:
        raise CnntuneError(f"--gpus {asked}: nvidia-smi lists no GPU; use --workers N for CPU workers")
    return listed


@dataclass
class WorkerPool:
    """``size`` worker processes on one study; worker ``i`` sees GPU ``gpus[i]`` (``None``: the host's devices).

    Attributes:
        size: how many workers; ``0`` creates the study and starts none.
        url: the study's storage URL.
        gpus: per worker, the ``CUDA_VISIBLE_DEVICES`` it gets, or ``None``.
        allow_mixed_backends: the workers pass ``--allow-mixed-backends`` on (``tuner.store.check_backends``).
    """

    size: int
    url: str
    gpus: list[str | None] = field(default_factory=list)
    exit_codes: dict[str, int] = field(default_factory=dict)
    allow_mixed_backends: bool = False

    def command(self, study: str, name: str, timeout: float | None) -> list[str]:
        """The ``cnntune worker`` command line of worker ``name``."""
        cmd = [sys.executable, "-m", "tuner.cli", "worker", "--study", study, "--storage", self.url,
               "--worker-id", name]
        cmd += ["--allow-mixed-backends"] if self.allow_mixed_backends else []
        return cmd + (["--timeout", f"{timeout:.0f}"] if timeout is not None else [])

    def run(self, study: str, *, timeout: float | None, display: Display) -> None:
        """Starts the workers, relays their output tagged by name, waits for all of them.

        Ctrl-C or SIGTERM here sends SIGTERM to every worker (each records its trial as interrupted, with its
        checkpoint, and exits), waits up to ``STOP_GRACE`` seconds, then re-raises.

        Raises:
            CnntuneError: a worker exited with an error; the others ran to the end and finished trials are kept.
        """
        procs: dict[str, subprocess.Popen] = {}
        readers: list[threading.Thread] = []
        sharing = Counter(gpu for gpu in self.gpus if gpu is not None)  # workers per GPU
        try:
            for i in range(self.size):
                name = f"w{i}"
                env = dict(os.environ)
                gpu = self.gpus[i] if i < len(self.gpus) else None
                if gpu is not None:
                    env["CUDA_VISIBLE_DEVICES"] = gpu
                    env.update(share_gpu_env(sharing[gpu], os.environ))  # several workers on one GPU: a share each
                display.message(f"starting worker {name}" + (f" on GPU {gpu}" if gpu is not None else ""))
                proc = subprocess.Popen(self.command(study, name, timeout), env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True, bufsize=1)
                procs[name] = proc
                reader = threading.Thread(target=_relay, args=(name, proc, display), daemon=True)
                reader.start()
                readers.append(reader)
            for proc in procs.values():
                _wait(proc)
        except KeyboardInterrupt:
            _stop(procs.values())
            raise
        finally:
            for reader in readers:
                reader.join(timeout=5)
        self.exit_codes = {name: proc.returncode for name, proc in procs.items()}
        failed = {name: code for name, code in self.exit_codes.items() if code != 0}
        if failed:
            listed = ", ".join(f"{name} exited with code {code}" for name, code in failed.items())
            raise CnntuneError(f"{len(failed)} of {self.size} workers failed ({listed}; their lines above say why); "
                               "finished trials are kept, rerun the command to go on")


def _relay(name: str, proc: subprocess.Popen, display: Display) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.rstrip()
        if line:
            display.worker_output(name, redact(line))


def _wait(proc: subprocess.Popen) -> None:
    # Short waits, so that Ctrl-C reaches this process between them.
    while proc.poll() is None:
        time.sleep(0.2)


def _stop(procs) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE
    for proc in procs:
        try:
            proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def worker_pool(options: SearchOptions, *, url: str, pooled: bool) -> WorkerPool | None:
    """The pool ``search --workers/--gpus/--trials-per-gpu`` asks for, or ``None`` when this process runs the
    trials itself. ``--trials-per-gpu K`` starts K workers per GPU of ``--gpus`` (default ``all``), GPU by GPU in
    turn.

    Args:
        options: the search's options.
        url: the study's storage URL.
        pooled: the engine's workers share a storage (``POOLED_WORKERS``); the Keras Tuner engine's follow a chief.

    Raises:
        CnntuneError: the Keras Tuner engine, ``--workers`` with ``--trials-per-gpu``, or several writers on a SQLite
            file.
    """
    workers, gpus = options.workers, options.gpus
    ids: list[str] | None = None  # the GPUs, read once (``--gpus all`` runs nvidia-smi)
    if options.trials_per_gpu is not None:
        if workers is not None:
            raise CnntuneError("--trials-per-gpu K starts K workers per GPU; drop --workers (or drop "
                               "--trials-per-gpu and let --workers N take the GPUs in turn)")
        gpus = "all" if gpus is None else gpus
        ids = parse_gpus(gpus)
        workers = options.trials_per_gpu * len(ids)
    if gpus is None and workers in (None, 1):
        return None
    if not pooled or options.chief is not None:
        raise CnntuneError("--workers and --gpus start Optuna workers; the Keras Tuner engine runs its workers with "
                           "--chief HOST:PORT and `cnntune worker --chief HOST:PORT`")
    if ids is None:
        ids = parse_gpus(gpus) if gpus is not None else []
    size = len(ids) if workers is None else workers
    if size > 1 and sqlite_file(url) is not None:
        journal = sqlite_file(url).with_suffix(".journal")
        raise CnntuneError(f"{size} workers writing one SQLite file fail with 'database is locked'; on one host pass "
                           f"--storage journal:{journal} (Optuna's journal file), across hosts a PostgreSQL or "
                           "MySQL URL")
    per_worker: list[str | None] = [ids[i % len(ids)] for i in range(size)] if ids else [None] * size
    return WorkerPool(size=size, url=url, gpus=per_worker, allow_mixed_backends=options.allow_mixed_backends)
