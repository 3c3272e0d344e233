"""Shared fixtures: tiny data, a fresh SQLite store per test, the shared real bird photos."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SHARED_BIRDS = Path(__file__).resolve().parents[2] / "shared" / "data" / "cub200_subset"


@pytest.fixture
def birds_dir() -> Path:
    if not (SHARED_BIRDS / "split.csv").is_file():
        pytest.skip(f"the shared bird photos are not at {SHARED_BIRDS}")
    return SHARED_BIRDS


@pytest.fixture
def store(tmp_path, monkeypatch) -> str:
    """A fresh SQLite study store; the working directory is the test's tmp_path."""
    monkeypatch.chdir(tmp_path)
    return f"sqlite:///{tmp_path / 'studies.db'}"


@pytest.fixture(autouse=True)
def _free_keras_memory():
    yield
    import sys

    if "keras" in sys.modules:
        # Drops the graph state of models a test built; without the full garbage collection, which costs
        # ~0.2-0.5 s per test and which Python runs by itself anyway.
        sys.modules["keras"].backend.clear_session(free_memory=False)
