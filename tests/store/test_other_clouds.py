"""gs:// and az:// locations against local emulators, as tests/store/test_object_storage.py does s3://: a Python GCS
emulator (``gcp-storage-emulator``, through gcsfs) and Azure's Azurite (an npm package, through adlfs), each started
on 127.0.0.1 on a free port and stopped after. Whole objects, ranged reads, prefixes removed, checkpoints, and a
bucket or container that does not exist as one error line without a credential.

Azurite is installed with npm on first use into a folder of the temporary directory named by its version, and reused
from there: these tests need Node.js, npm and the npm registry once, and fail saying so when they are missing."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from conftest import sample_checkpoint as checkpoint
from servers import free_port, serve, stop
from tuner.errors import StorageError
from tuner.store import Location
from tuner.trial import _checkpoint

# 3.35.0: the last Azurite that runs on Node.js 20 (3.36 needs Node.js 21, 3.37 Node.js 22).
AZURITE = "3.35.0"
# Azurite's one account and its published key (the Azure Storage emulators' well-known development key).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
_DEV_EXTRA = "pip install -e '.[dev]'"


def _need(module: str, package: str) -> None:
    """Fails (not skips) the test when the dev extra's ``package`` is not installed."""
    try:
        __import__(module)
    except ImportError:
        pytest.fail(f"these tests need the {package} package: {_DEV_EXTRA}")


def _forget_filesystems(scheme: str) -> None:
    """Drops fsspec's cached filesystems of ``scheme``: gcsfs and adlfs read their credentials from the environment
    when a filesystem is made, and fsspec reuses one made earlier with other variables."""
    import fsspec

    fsspec.get_filesystem_class(scheme).clear_instance_cache()


@dataclass
class Bucket:
    """A new, empty bucket or container of a test server.

    Attributes:
        url: ``gs://NAME`` or ``az://NAME``.
        keys: every object name in it, sorted (read with the store's own API, not through ``Location``).
        secret: a credential the client sends, which no message may show (``""`` when there is none).
    """

    url: str
    keys: Callable[[], list[str]]
    secret: str


# -- gs://: gcp-storage-emulator -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def gcs_server(tmp_path_factory) -> str:
    """gcp-storage-emulator (the dev extra's) on 127.0.0.1, in memory; its URL. ``STORAGE_EMULATOR_HOST``, which
    gcsfs reads on each request, points gs:// at it meanwhile.

    No Google credentials are found meanwhile either: gcsfs then talks to the emulator unauthenticated, and its check
    of a bucket's layout (a gRPC call, which the emulator does not serve) gives up at once instead of retrying for a
    minute on each file opened, as it does with credentials. Nor is a Compute Engine metadata server looked for, which
    can cost seconds on each file opened where that address does not answer."""
    folder = tmp_path_factory.mktemp("gcs")
    with pytest.MonkeyPatch.context() as env:
        env.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
        env.setenv("CLOUDSDK_CONFIG", str(folder / "gcloud"))  # no gcloud login's default credentials
        env.setenv("NO_GCE_CHECK", "true")  # read by google-auth when imported, so set before gcsfs is
        _need("gcsfs", "gcsfs")
        from google.auth.compute_engine import _metadata

        env.setattr(_metadata, "_NO_GCE_CHECK", True, raising=False)  # imported earlier, before the variable was set
        executable = Path(sys.executable).with_name("gcp-storage-emulator")
        if not executable.is_file():
            pytest.fail(f"the gs:// tests need the gcp-storage-emulator package: {_DEV_EXTRA}")
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = serve([str(executable), "start", "--host", "127.0.0.1", "--port", str(port), "--in-memory"], url,
                       log=folder / "server.log", cwd=folder)
        env.setenv("STORAGE_EMULATOR_HOST", url)
        yield url
        stop(server)


@pytest.fixture
def gs_bucket(gcs_server) -> Bucket:
    """A new bucket on the GCS emulator."""
    _forget_filesystems("gs")
    name = f"cnntune-{uuid.uuid4().hex[:12]}"
    request = urllib.request.Request(f"{gcs_server}/storage/v1/b?project=cnntune-test", method="POST",
                                     data=json.dumps({"name": name}).encode(),
                                     headers={"Content-Type": "application/json"})
    urllib.request.urlopen(request, timeout=10).close()

    def keys() -> list[str]:
        with urllib.request.urlopen(f"{gcs_server}/storage/v1/b/{name}/o", timeout=10) as response:
            return sorted(item["name"] for item in json.load(response).get("items", []))

    yield Bucket(f"gs://{name}", keys, "")
    _forget_filesystems("gs")


# -- az://: Azurite --------------------------------------------------------------------------------------------------
def _azurite_blob() -> Path:
    """Azurite's blob server, installed with npm into the temporary directory on first use.

    npm installs into a folder of its own that is renamed into place once complete: an interrupted install, or two
    test processes installing at once, never leave a partial one where the next run looks."""
    home = Path(tempfile.gettempdir()) / f"cnntune-azurite-{AZURITE}"
    executable = home / "node_modules" / ".bin" / "azurite-blob"
    if executable.is_file():
        return executable
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        pytest.fail("the az:// tests run Azurite, an npm package: install Node.js and npm")
    part = Path(tempfile.mkdtemp(prefix=f"{home.name}.part-", dir=home.parent))
    try:
        proc = subprocess.run([npm, "install", "--prefix", str(part), "--no-save", "--no-audit", "--no-fund",
                               "--loglevel=error", f"azurite@{AZURITE}"], capture_output=True, text=True,
                              timeout=600)
        if proc.returncode != 0:
            pytest.fail(f"npm could not install azurite@{AZURITE} (it needs the npm registry once):\n"
                        f"{(proc.stdout + proc.stderr)[-2000:]}")
        try:
            part.rename(home)
        except OSError:  # another process installed it meanwhile
            if not executable.is_file():
                raise
    except subprocess.TimeoutExpired:
        pytest.fail(f"npm did not install azurite@{AZURITE} within 10 minutes (it needs the npm registry once)")
    finally:
        shutil.rmtree(part, ignore_errors=True)
    return executable


@pytest.fixture(scope="module")
def azurite(tmp_path_factory) -> str:
    """Azurite's blob service on 127.0.0.1, in memory, telemetry off; its URL (without the account)."""
    _need("adlfs", "adlfs")
    executable = _azurite_blob()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    folder = tmp_path_factory.mktemp("azurite")
    # --skipApiVersionCheck: azure-storage-blob may speak a newer API version than this Azurite knows.
    server = serve([str(executable), "--blobHost", "127.0.0.1", "--blobPort", str(port), "--inMemoryPersistence",
                    "--skipApiVersionCheck", "--loose", "--disableTelemetry", "--silent"], url,
                   log=folder / "server.log", cwd=folder)
    yield url
    stop(server)


def _azurite_connection(azurite: str, key: str = AZURITE_KEY) -> str:
    return (f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={key};"
            f"BlobEndpoint={azurite}/{AZURITE_ACCOUNT};")


@pytest.fixture
def az_bucket(azurite, monkeypatch) -> Bucket:
    """A new container on Azurite; ``AZURE_STORAGE_CONNECTION_STRING`` points az:// at it."""
    from azure.storage.blob import BlobServiceClient

    connection = _azurite_connection(azurite)
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", connection)
    _forget_filesystems("az")
    name = f"cnntune-{uuid.uuid4().hex[:12]}"
    with BlobServiceClient.from_connection_string(connection) as service:
        service.create_container(name)

    def keys() -> list[str]:
        with BlobServiceClient.from_connection_string(connection) as service:
            return sorted(service.get_container_client(name).list_blob_names())

    yield Bucket(f"az://{name}", keys, AZURITE_KEY)
    _forget_filesystems("az")


@pytest.fixture(params=["gs", "az"])
def bucket(request) -> Bucket:
    return request.getfixturevalue(f"{request.param}_bucket")


# -- the tests ---------------------------------------------------------------------------------------------------------
def test_a_location_writes_whole_objects_reads_them_in_ranges_and_removes_a_prefix(bucket, tmp_path):
    folder = Location.of(f"{bucket.url}/a/b/")
    assert folder.remote and folder.local is None and folder.where == f"{bucket.url}/a/b"
    (folder / "x.bin").write_bytes(b"first")
    (folder / "x.bin").write_bytes(b"second")  # replaced whole
    (folder / "c" / "y.bin").write_bytes(b"y")
    (Location.of(bucket.url) / "kept.bin").write_bytes(b"kept")
    assert bucket.keys() == ["a/b/c/y.bin", "a/b/x.bin", "kept.bin"]
    with (folder / "x.bin").open() as f:
        f.seek(2)
        assert f.read() == b"cond"
    assert (folder / "x.bin").exists() and not (folder / "nothing").exists()
    assert not (folder / "nothing").fetch(tmp_path / "unused") and not (tmp_path / "unused").exists()
    with (folder / "c" / "y.bin").fetched() as path:
        assert path.read_bytes() == b"y"
    folder.remove()
    folder.remove()  # nothing left: nothing to do
    assert bucket.keys() == ["kept.bin"]
    folder.check_writable()
    assert bucket.keys() == ["kept.bin"]  # the probe removed what it wrote


def test_a_checkpoint_is_replaced_whole_reads_back_and_is_discarded(bucket):
    written = checkpoint(3, best_epoch=2)
    stored = _checkpoint.write(f"{bucket.url}/checkpoints/trial_0000", written)
    assert stored.where == f"{bucket.url}/checkpoints/trial_0000/checkpoint.npz"
    _checkpoint.write(f"{bucket.url}/checkpoints/trial_0000", checkpoint(4, seed=1, best_epoch=2))  # replaces it
    written = checkpoint(5, seed=2, best_epoch=3)
    _checkpoint.write(f"{bucket.url}/checkpoints/trial_0000", written)
    assert bucket.keys() == ["checkpoints/trial_0000/checkpoint.npz"]
    back = _checkpoint.read(f"{bucket.url}/checkpoints/trial_0000")
    assert back.epoch == 5 and back.best_epoch == 3 and back.history == written.history
    for a, b in zip([*back.weights, *back.optimizer, *back.best_weights],
                    [*written.weights, *written.optimizer, *written.best_weights], strict=True):
        np.testing.assert_array_equal(a, b)
    assert _checkpoint.read_meta(f"{bucket.url}/checkpoints/trial_0000")["epoch"] == 5
    assert _checkpoint.read(f"{bucket.url}/checkpoints/trial_0009") is None
    assert _checkpoint.read_meta(f"{bucket.url}/checkpoints/trial_0009") is None
    _checkpoint.discard(f"{bucket.url}/checkpoints/trial_0000")
    assert bucket.keys() == []


def test_a_bucket_that_does_not_exist_is_one_error_line_without_a_credential(bucket):
    missing = bucket.url.replace("cnntune-", "cnntune-missing-")
    with pytest.raises(StorageError) as raised:
        Location.of(f"{missing}/runs").check_writable()
    message = str(raised.value)
    assert message.startswith(f"cannot write artifacts to {missing}/runs: ") and "\n" not in message
    assert "does not exist" in message.lower()
    assert not bucket.secret or bucket.secret not in message
    assert bucket.keys() == []


def test_a_wrong_account_key_is_one_error_line_that_shows_neither_key(az_bucket, azurite, monkeypatch):
    wrong = "A" * 86 + "=="
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", _azurite_connection(azurite, key=wrong))
    _forget_filesystems("az")
    with pytest.raises(StorageError, match=rf"^cannot write artifacts to {az_bucket.url}/runs: ") as raised:
        Location.of(f"{az_bucket.url}/runs").check_writable()
    assert AZURITE_KEY not in str(raised.value) and wrong not in str(raised.value)
    assert "\n" not in str(raised.value)
