"""Shared fixtures and helpers: tiny data, a fresh SQLite store per test, the shared real bird photos, a fake trial
runner, and the CLI helpers. Test modules import the helpers with ``from conftest import ...``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from typer.testing import CliRunner

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]
# The shared real photos (50 CUB-200-2011 classes) sit beside the checkout, in CI too.
BIRDS = ROOT.parent / "shared" / "data" / "cub200_subset"
# Words of the fastest real search: generated data (3 classes, 32 px), one epoch.
SYN = ["data=synthetic", "epochs=1"]
# A space that plants diverging, raising and flat trials (tests/spaces/planted.py), by file.
PLANTED = str(ROOT / "tests" / "spaces" / "planted.py")


@pytest.fixture
def birds_dir() -> Path:
    if not (BIRDS / "split.csv").is_file():
        pytest.skip(f"the shared bird photos are not at {BIRDS}")
    return BIRDS


@pytest.fixture
def store(tmp_path, monkeypatch) -> str:
    """A fresh SQLite study store; the working directory is the test's tmp_path. After the test, every study it left
    there names one best trial: the one ``trials`` highlights is the one ``best`` reports and exports."""
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    yield url
    assert_one_best(url)


def assert_one_best(url: str) -> None:
    """``trials`` and ``best`` name the same best trial (or none) for every study in a store."""
    import tuner
    from tuner.errors import CnntuneError
    from tuner.store import open_storage, study_names

    if not Path(url[len("sqlite:///"):]).is_file():
        return
    try:
        names = study_names(open_storage(url, existing=True))
    except CnntuneError:  # a test that broke its store on purpose
        return
    for name in names:
        view = tuner.trials(study=name, storage=url, history=False)
        try:
            picked = tuner.best(study=name, storage=url, history=False).best.number
        except CnntuneError:  # no completed search trial
            picked = None
        assert view.best == picked, f"study {name}: trials highlights {view.best}, best reports {picked}"


@pytest.fixture(autouse=True)
def _free_keras_memory():
    yield
    import sys

    if "keras" in sys.modules:
        # Drops the graph state of models a test built; without the full garbage collection, which costs
        # ~0.2-0.5 s per test and which Python runs by itself anyway.
        sys.modules["keras"].backend.clear_session(free_memory=False)


def run_python(code: str) -> str:
    """Runs ``python -c code`` in a fresh interpreter at the repository root; returns its output, fails the test on a
    non-zero exit (with what it printed). For what a process imports: this one has imported everything already."""
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def non_trainable(model) -> int:
    """Number of non-trainable weights (BatchNormalization's moving statistics) of a Keras model."""
    return int(sum(np.prod(w.shape) for w in model.non_trainable_weights))


# -- a trial runner that trains nothing ------------------------------------------------------------------------------
class FakeRunner:
    """Has ``tuner.trial.run_trial``'s signature; returns chosen accuracies, records each call, can be interrupted.

    Args:
        accuracy: ``(params, seed) -> (val, test)``.
        interrupt_on: raise ``KeyboardInterrupt`` on this call (1-based).
        seconds: ``params -> seconds`` the trial took.
        facts: ``params -> extras`` the trial records, e.g. its cost (``macs``, ``activations``).
    """

    def __init__(self, accuracy: Callable = lambda params, seed: (0.5, 0.4), interrupt_on: int | None = None,
                 seconds: Callable = lambda params: 0.01, facts: Callable = lambda params: {}):
        self.accuracy = accuracy
        self.interrupt_on = interrupt_on
        self.seconds = seconds
        self.facts = facts
        self.calls: list[tuple[dict, int]] = []

    def __call__(self, space, params, data, *, seed, model_path, on_epoch=None, **kwargs):
        from tuner.trial import TrialOutcome

        self.calls.append((dict(params), int(seed)))
        if self.interrupt_on is not None and len(self.calls) == self.interrupt_on:
            raise KeyboardInterrupt
        val, test = self.accuracy(params, seed)
        return TrialOutcome(val_accuracy=val, test_accuracy=test, n_params=10, history={"val_accuracy": [val]},
                            best_epoch=1, epochs_run=1, seconds=self.seconds(params), model_path=None,
                            backend="fake", extra=dict(self.facts(params)))


# -- the command line ------------------------------------------------------------------------------------------------
def run_cli(*args: str):
    """Runs ``cnntune ARGS`` in-process; an unexpected exception fails the test with its traceback."""
    from tuner.cli import app

    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def one_line_error(result, *needles: str) -> str:
    """Asserts exit code 1 and exactly one output line, ``error: ...``, containing every needle."""
    assert result.exit_code == 1, result.output
    text = result.output.strip()
    assert "Traceback" not in text
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    assert lines[0].startswith("error: "), text
    for needle in needles:
        assert needle in lines[0], text
    return lines[0]


# -- storages and devices --------------------------------------------------------------------------------------------
SERVERS = {"postgresql": "CNNTUNE_TEST_POSTGRES_URL", "mysql": "CNNTUNE_TEST_MYSQL_URL"}


def storage_url(kind: str, tmp_path: Path) -> str:
    """A storage URL of ``kind``: ``journal`` and ``sqlite`` files under ``tmp_path``, or the PostgreSQL / MySQL
    server its variable names (``.ci/run`` sets them; the test is skipped where none is set)."""
    if kind == "journal":
        return f"journal:{tmp_path / 'studies.journal'}"
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'studies.db'}"
    url = os.environ.get(SERVERS[kind])
    if not url:
        pytest.skip(f"{SERVERS[kind]} is not set: no {kind} server to test against")
    return url


def fake_nvidia_smi(tmp_path: Path, monkeypatch, gpus: int) -> None:
    """Puts an ``nvidia-smi`` that lists ``gpus`` H200s (``-L``) first on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "nvidia-smi"
    fake.write_text("#!/bin/sh\n" + "".join(f"echo 'GPU {i}: NVIDIA H200 (UUID: GPU-{i})'\n" for i in range(gpus)))
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


# -- checkpoints -----------------------------------------------------------------------------------------------------
def sample_checkpoint(epoch: int, seed: int = 0, best_epoch: int | None = None):
    """A checkpoint of ``epoch`` epochs with random arrays (best weights of their own when ``best_epoch`` is
    another epoch)."""
    from tuner.trial import _checkpoint

    rng = np.random.default_rng(seed)
    best_epoch = epoch if best_epoch is None else best_epoch
    return _checkpoint.Checkpoint(
        epoch=epoch, config={"learning_rate": 0.001, "epochs": 4, "widths": (6, 16)},
        history={"loss": [1.0 / (e + 1) for e in range(epoch)], "val_accuracy": [0.1 * e for e in range(epoch)]},
        best=0.1 * (best_epoch - 1), best_epoch=best_epoch,
        weights=[rng.normal(size=(3, 3, 2)).astype("float32"), rng.normal(size=(4,)).astype("float32")],
        optimizer=[np.array(7, dtype="int64"), rng.normal(size=(3, 3, 2)).astype("float32")],
        rng=[np.array([57844375, 6], dtype="int64")],
        best_weights=None if best_epoch == epoch else [rng.normal(size=(3, 3, 2)).astype("float32"),
                                                       rng.normal(size=(4,)).astype("float32")],
        early_stopping={"wait": 1, "best": 0.5, "best_epoch": 0},
    )


# -- object storage: moto's S3-protocol server ---------------------------------------------------------------------
S3_SECRET = "s3cr3t-key-never-printed"  # the secret key the S3 tests use: no output may show it


@pytest.fixture(scope="session")
def s3_server() -> str:
    """moto's S3-protocol server (the dev extra's ``moto[server]``) on 127.0.0.1, one per test process; its URL."""
    from servers import start_moto, stop

    server, url = start_moto()
    yield url
    stop(server)


@pytest.fixture
def s3(s3_server, monkeypatch) -> str:
    """A new, empty bucket on the test S3 server, as ``s3://NAME``; the AWS variables point every client at it."""
    import uuid

    import boto3

    for key, value in {"AWS_ENDPOINT_URL": s3_server, "AWS_ACCESS_KEY_ID": "cnntune-test",
                       "AWS_SECRET_ACCESS_KEY": S3_SECRET, "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    name = f"cnntune-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket=name)
    return f"s3://{name}"


def s3_keys(bucket_url: str) -> list[str]:
    """Every key in a test bucket, sorted."""
    import boto3

    name = bucket_url.removeprefix("s3://").split("/")[0]
    pages = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"]).get_paginator("list_objects_v2")
    return sorted(o["Key"] for page in pages.paginate(Bucket=name) for o in page.get("Contents", []))


class EpochRunner(FakeRunner):
    """Reports ``epochs`` epochs (loss falling, accuracy rising), fails its ``fail_on``-th call and is interrupted
    (Ctrl-C) after epoch ``interrupt_at[1]`` of its ``interrupt_at[0]``-th call."""

    def __init__(self, fail_on: int | None = None, interrupt_at: tuple[int, int] | None = None):
        super().__init__()
        self.fail_on, self.interrupt_at = fail_on, interrupt_at

    def __call__(self, space, params, data, *, seed, model_path, on_epoch=None, **kwargs):
        from tuner.trial import TrialOutcome

        self.calls.append((dict(params), int(seed)))
        if len(self.calls) == self.fail_on:
            raise RuntimeError("boom")
        epochs = int(params["epochs"])
        history: dict[str, list[float]] = {"loss": [], "val_accuracy": []}
        for epoch in range(1, epochs + 1):
            logs = {"loss": 1.0 / epoch, "val_accuracy": 0.1 * epoch + 0.01 * len(self.calls)}
            for key, value in logs.items():
                history[key].append(value)
            if on_epoch is not None:
                on_epoch(epoch, logs)
            if self.interrupt_at == (len(self.calls), epoch):
                raise KeyboardInterrupt
        best = max(history["val_accuracy"])
        return TrialOutcome(val_accuracy=best, test_accuracy=best - 0.05, n_params=10, history=history,
                            best_epoch=epochs, epochs_run=epochs, seconds=0.01, model_path=None, backend="fake")


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory) -> str:
    """A real MLflow tracking server (SQLite backend) for the session's tests; its URL. Tests use studies (MLflow
    experiments) of their own names."""
    from servers import start_mlflow, stop

    server, url = start_mlflow(tmp_path_factory.mktemp("mlflow"))
    yield url
    stop(server)
