"""The servers that the tests and the benchmarks start on 127.0.0.1 (moto's S3 server, MLflow, the GCS emulator,
Azurite): one way to pick a port, start one, wait until it answers and stop it with everything it started."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve(command: list[str], url: str, *, log: Path | None = None, cwd: Path | None = None,
          wait: float = 60.0) -> subprocess.Popen:
    """Starts ``command`` in a process group of its own (servers that start workers: MLflow) and returns once ``url``
    answers over HTTP, with any status (Azurite's root answers 400).

    Raises:
        RuntimeError: it exited, or did not answer within ``wait`` seconds (with the end of ``log``).
    """
    with open(log, "wb") if log is not None else contextlib.nullcontext(subprocess.DEVNULL) as out:
        server = subprocess.Popen(command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + wait
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return server
        except urllib.error.HTTPError:
            return server
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                kill(server)
                output = log.read_text(errors="replace")[-2000:] if log is not None else ""
                raise RuntimeError(f"{Path(command[0]).name} did not answer at {url}\n{output}".rstrip()) from None
            time.sleep(0.1)


def kill(server: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    """Signals the server and every process it started (its group), and waits for it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, sig)
    server.wait(timeout=30)


def stop(server: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL after 30 s."""
    try:
        kill(server, signal.SIGTERM)
    except subprocess.TimeoutExpired:
        kill(server)


def _tool(name: str) -> str:
    """An executable of this Python's environment (the dev extra installs them)."""
    return str(Path(sys.executable).with_name(name))


def start_moto(port: int | None = None) -> tuple[subprocess.Popen, str]:
    """moto's S3-protocol server; ``(process, URL)``."""
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    return serve([_tool("moto_server"), "-H", "127.0.0.1", "-p", str(port)], url), url


def start_mlflow(folder: Path, port: int | None = None) -> tuple[subprocess.Popen, str]:
    """``mlflow server`` with its SQLite backend store and its artifacts in ``folder`` (the artifacts uploaded through
    the server); ``(process, URL)``."""
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    command = [_tool("mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
               "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}", "--artifacts-destination",
               str(folder / "artifacts")]
    return serve(command, f"{url}/health", wait=120), url
