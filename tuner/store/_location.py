"""Where a study's shared files live: a local folder, or a prefix in object storage (``s3://``, ``gs://``, ``az://``
or any other fsspec URL).

A ``Location`` names a folder or a file in either. Trials write their per-epoch checkpoints and their model files
through it, ``best --export`` writes to one, and a search checks one is writable before any trial trains. Writes are
whole or absent for a reader: a local file is written aside, synced and renamed over the old one; an object store
replaces an object in one request (a single PUT, or a multipart upload that appears when it completes), so a reader
finds the previous object or the new one, never a part. Object stores have no rename: nothing here moves a file.

Credentials come from where each store's own library looks (``AWS_*`` variables, ``~/.aws``, the instance's role;
``GOOGLE_APPLICATION_CREDENTIALS``; ``AZURE_STORAGE_*``) and never from the URL: messages show the URL only, with
any password in it hidden. ``AWS_ENDPOINT_URL`` (or fsspec's ``FSSPEC_S3_ENDPOINT_URL``) points ``s3://`` at another
S3-protocol server (MinIO, Ceph, a local test server).

Nothing here imports Keras.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import tempfile
import uuid
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable, Iterator

from tuner.errors import StorageError

__all__ = ["Location", "is_url", "one_line", "redact"]

_SCHEME = re.compile(r"^(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]*)://")
# The package fsspec needs for a scheme, and the extra of cnntune's that installs it.
_PACKAGES = {"s3": ("s3fs", "s3"), "s3a": ("s3fs", "s3"), "gs": ("gcsfs", "gcs"), "gcs": ("gcsfs", "gcs"),
             "az": ("adlfs", "azure"), "abfs": ("adlfs", "azure"), "abfss": ("adlfs", "azure")}
# A bucket that does not answer is one error line within seconds, not minutes of the client's default retries.
_S3 = {"config_kwargs": {"connect_timeout": 10, "read_timeout": 120, "retries": {"max_attempts": 3}}}
_OPTIONS: dict[str, dict[str, Any]] = {"s3": _S3, "s3a": _S3}
_PROBE = ".cnntune-write-check"


def _options(scheme: str) -> dict[str, Any]:
    """The filesystem's options: ``_OPTIONS``, and for ``s3://`` the endpoint of ``AWS_ENDPOINT_URL_S3`` or
    ``AWS_ENDPOINT_URL`` when set (part of the key fsspec caches a filesystem under: another endpoint, another
    client)."""
    options = dict(_OPTIONS.get(scheme, {}))
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if scheme in ("s3", "s3a") and endpoint:
        options["endpoint_url"] = endpoint
    return options


_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.\-]*://[^:/@\s]*:)(?P<pw>[^@\s]*)(?P<tail>@)")


def is_url(where: str | os.PathLike | None) -> bool:
    """Whether ``where`` names object storage (a URL with a scheme other than ``file://``), not a local path."""
    match = _SCHEME.match(str(where or ""))
    return bool(match) and match["scheme"].lower() != "file"


def redact(text: str) -> str:
    """Hides passwords of any URLs inside ``text`` (``postgresql://u:secret@h/db`` -> ``postgresql://u:***@h/db``)."""
    return _URL_PASSWORD.sub(lambda m: f"{m['head']}***{m['tail']}", str(text))


@dataclass(frozen=True)
class Location:
    """A folder or file, local or in object storage.

    Attributes:
        where: an absolute local path, or a URL without a trailing slash.
    """

    where: str

    @classmethod
    def of(cls, where: "str | os.PathLike | Location") -> "Location":
        if isinstance(where, Location):
            return where
        if is_url(where):
            return cls(str(where).rstrip("/"))
        text = str(where)
        return cls(str(Path(text[len("file://"):] if text.startswith("file://") else text).expanduser().resolve()))

    @property
    def remote(self) -> bool:
        return is_url(self.where)

    @property
    def local(self) -> Path | None:
        """The local path, or ``None`` for object storage."""
        return None if self.remote else Path(self.where)

    def __truediv__(self, name: str) -> "Location":
        return Location(f"{self.where}/{name}" if self.remote else str(Path(self.where) / name))

    def __str__(self) -> str:
        return redact(self.where)

    @property
    def name(self) -> str:
        return self.where.rstrip("/").rsplit("/", 1)[-1]

    def _fs(self):
        """``(filesystem, path)`` for a URL (fsspec caches one filesystem per scheme and options).

        Raises:
            StorageError: the scheme's package is not installed, or fsspec knows no such scheme.
        """
        scheme = _SCHEME.match(self.where)["scheme"].lower()
        try:
            import fsspec

            return fsspec.core.url_to_fs(self.where, **_options(scheme))
        except ImportError:
            package, extra = _PACKAGES.get(scheme, ("fsspec", "cloud"))
            raise StorageError(f"{scheme}:// artifacts need the {package} package: pip install 'cnntune[{extra}]'") \
                from None
        except ValueError as exc:  # fsspec: "Protocol not known"
            raise StorageError(f"cannot use {self}: {redact(str(exc))}") from None

    def exists(self) -> bool:
        if not self.remote:
            return Path(self.where).exists()
        fs, path = self._fs()
        return bool(fs.exists(path))

    @contextmanager
    def open(self) -> Iterator[IO[bytes]]:
        """The file for reading, seekable (an object is read in ranges, as asked for).

        Raises:
            FileNotFoundError: no such file or object.
        """
        if not self.remote:
            with open(self.where, "rb") as f:
                yield f
            return
        fs, path = self._fs()
        with fs.open(path, "rb") as f:
            yield f

    def write_with(self, fill: Callable[[IO[bytes]], Any]) -> None:
        """Replaces the file with what ``fill`` writes into the file object it is handed, whole: a reader finds the
        old content or the new, never a part of it. A local file is streamed aside, synced and renamed over the old
        one; an object is gathered in memory and put in one request."""
        if self.remote:
            buffer = io.BytesIO()
            fill(buffer)
            fs, path = self._fs()
            fs.pipe_file(path, buffer.getvalue())
            return
        target = Path(self.where)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                fill(f)
                f.flush()
                os.fsync(f.fileno())  # the renamed file must hold the data even after a crash of the machine
            os.replace(tmp, target)  # atomic: readers see the old file or the new one
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def write_bytes(self, data: bytes) -> None:
        """Replaces the file with ``data``, whole (``write_with``)."""
        self.write_with(lambda f: f.write(data))

    def upload(self, source: str | os.PathLike) -> None:
        """Copies the local file ``source`` here, whole (``write_with``; to object storage streamed by the client)."""
        if self.remote:
            fs, path = self._fs()
            fs.put_file(str(source), path)
        elif Path(source).resolve() != Path(self.where):
            with open(source, "rb") as src:
                self.write_with(lambda f: shutil.copyfileobj(src, f, 1 << 20))

    def fetch(self, local: str | os.PathLike) -> bool:
        """Copies this file to the local path ``local`` (its folder created); ``False`` when there is no such
        file."""
        local = Path(local)
        local.parent.mkdir(parents=True, exist_ok=True)
        try:
            if self.remote:
                fs, path = self._fs()
                fs.get_file(path, str(local))
            else:
                shutil.copyfile(self.where, local)
        except FileNotFoundError:
            return False
        return True

    def local_copy(self, folder: str | os.PathLike) -> Path | None:
        """This file as a local path: itself when local, else a copy in ``folder``; ``None`` when there is no such
        file."""
        if not self.remote:
            return Path(self.where) if Path(self.where).is_file() else None
        local = Path(folder) / self.name
        return local if self.fetch(local) else None

    @contextmanager
    def staged(self, folder: str | os.PathLike | None = None) -> Iterator[Path]:
        """A local path to write this file at: itself when local, else one in a temporary folder under ``folder``
        (the system's when ``None``), removed afterwards: the caller uploads it first (``upload``)."""
        if not self.remote:
            yield Path(self.where)
            return
        if folder is not None:
            Path(folder).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="cnntune-staged-", dir=folder) as staging:
            yield Path(staging) / self.name

    @contextmanager
    def fetched(self) -> Iterator[Path]:
        """A local path of this file: itself, or a temporary copy of the object, removed afterwards.

        Raises:
            FileNotFoundError: no such file or object.
        """
        with tempfile.TemporaryDirectory(prefix="cnntune-fetch-") if self.remote else nullcontext() as folder:
            local = self.local_copy(folder)
            if local is None:
                raise FileNotFoundError(self.where)
            yield local

    def remove(self) -> None:
        """Deletes the file or the folder with everything under it; nothing when it does not exist."""
        if not self.remote:
            path = Path(self.where)
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            return
        fs, path = self._fs()
        try:
            fs.rm(path, recursive=True)
        except FileNotFoundError:
            pass

    def check_writable(self) -> None:
        """Writes, reads back and deletes a small object here, so that a search whose artifacts cannot be stored
        says so before any trial trains.

        Raises:
            StorageError: one line: the location and why it cannot be written (never a credential).
        """
        if not self.remote:
            try:
                Path(self.where).mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StorageError(f"cannot write artifacts to {self}: {exc.strerror or exc}") from None
        probe = self / f"{_PROBE}-{uuid.uuid4().hex}"  # workers starting together each check with their own object
        try:
            probe.write_bytes(b"cnntune")
            with probe.open() as f:
                if f.read() != b"cnntune":
                    raise OSError("what was written did not read back")
            probe.remove()
        except StorageError:
            raise
        except Exception as exc:  # each store's client raises its own types; all mean the same here
            raise StorageError(f"cannot write artifacts to {self}: {_reason(exc)}") from None


def one_line(exc: BaseException, limit: int = 300) -> str:
    """An exception's message on one line, cut at ``limit`` characters, any password hidden; its type when empty."""
    return redact((" ".join(str(exc).split()) or type(exc).__name__)[:limit])


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if isinstance(exc, FileNotFoundError) and (exc.errno is None or text in ("", str(exc.filename))):
        return "the bucket or container does not exist"  # a client's FileNotFoundError names only the request
    return one_line(exc)

