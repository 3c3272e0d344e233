"""CIFAR-100 (first fine classes): an offline ``cifar-100-python`` copy, Keras' cache, or a download.

Keras is imported only inside ``_keras_load_data``, the last resort, so listing datasets and loading
an offline copy never start TensorFlow.
"""

from __future__ import annotations

import os
import pickle
import socket
from pathlib import Path
from typing import Any

import numpy as np

from tuner.errors import DataError

__all__ = ["ENV_VAR", "FINE_LABEL_NAMES", "MAX_CLASSES", "find_cifar_dir", "read_cifar", "download_cifar"]

ENV_VAR = "CNNTUNE_CIFAR100_DIR"
MAX_CLASSES = 25  # the dataset is "cifar100_25": the study's first 25 fine classes

# Official fine-label order (meta b"fine_label_names"), used when the arrays come from Keras,
# which does not return names. Only the first MAX_CLASSES are ever used.
FINE_LABEL_NAMES = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle",
    "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle",
    "chair", "chimpanzee", "clock", "cloud", "cockroach",
)  # fmt: skip

_DIRNAME = "cifar-100-python"
# Per-operation socket timeout for the Keras download: a firewalled host that drops packets would
# otherwise hang forever in urllib; a working but slow download is unaffected (it is per read).
_DOWNLOAD_TIMEOUT_S = 30.0

OFFLINE_HINT = (
    f"pass data_dir=PATH to an offline '{_DIRNAME}' copy (files train, test, meta from "
    f"https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz) or set {ENV_VAR}=PATH, "
    "or run once on a connected machine so Keras downloads it to ~/.keras/datasets"
)


def _has_copy(path: Path) -> bool:
    return (path / "train").is_file() and (path / "test").is_file()


def _copy_in(path: Path) -> Path | None:
    """``path`` itself, or the ``cifar-100-python`` folder inside it (as the archive unpacks)."""
    for candidate in (path, path / _DIRNAME, path / f"{_DIRNAME}-target" / _DIRNAME):
        if _has_copy(candidate):
            return candidate
    return None


def _keras_cache_dirs() -> list[Path]:
    # Keras 3 unpacks to datasets/cifar-100-python-target/cifar-100-python; Keras 2 and manual
    # copies use datasets/cifar-100-python. KERAS_HOME moves the whole cache.
    homes = [Path(os.environ["KERAS_HOME"])] if os.environ.get("KERAS_HOME") else []
    homes.append(Path.home() / ".keras")
    return [h.expanduser() / "datasets" for h in homes]


def find_cifar_dir(data_dir: str | os.PathLike[str] | None) -> Path | None:
    """Locate an offline copy: ``data_dir``, then ``$CNNTUNE_CIFAR100_DIR``, then Keras' cache.

    Args:
        data_dir: An explicit location, or None.

    Returns:
        The resolved ``cifar-100-python`` folder, or None when the only option left is a download.

    Raises:
        DataError: An explicitly given location (argument or env var) is missing or not a copy.
    """
    explicit = [("data_dir", data_dir)] if data_dir is not None else []
    if data_dir is None and os.environ.get(ENV_VAR):
        explicit = [(ENV_VAR, os.environ[ENV_VAR])]
    for label, value in explicit:
        path = Path(value).expanduser()
        if not path.exists():
            raise DataError(f"{label} '{value}' does not exist (expected an offline '{_DIRNAME}' folder)")
        found = _copy_in(path)
        if found is None:
            raise DataError(
                f"{label} '{value}' is not a '{_DIRNAME}' copy (expected the files train, test and meta "
                f"in it or in its '{_DIRNAME}' subfolder)"
            )
        return found.resolve()
    for base in _keras_cache_dirs():
        found = _copy_in(base)
        if found is not None:
            return found.resolve()
    return None


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles only numpy arrays and plain containers: the official files need nothing else,
    and a file given by path should not be able to run code."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # bytes in protocol-2 pickles written by Python 3
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _unpickle(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            # encoding="bytes": the official files were written by Python 2.
            obj = _ArrayUnpickler(fh, encoding="bytes").load()
    except Exception as exc:
        raise DataError(f"cannot read '{path}' as a CIFAR-100 python pickle: {exc}") from None
    if not isinstance(obj, dict):
        raise DataError(f"'{path}' is not a CIFAR-100 python pickle (expected a dict)")
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


def _split_arrays(path: Path) -> tuple[np.ndarray, np.ndarray]:
    batch = _unpickle(path)
    if "data" not in batch or "fine_labels" not in batch:
        raise DataError(f"'{path}' has no 'data' / 'fine_labels' entries (not a CIFAR-100 python pickle)")
    data = np.asarray(batch["data"])
    labels = np.asarray(batch["fine_labels"], dtype=np.int64).reshape(-1)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(labels):
        raise DataError(
            f"'{path}': 'data' must be uint8 (N, 3072) with one fine label per row, "
            f"got {data.dtype} {data.shape} and {len(labels)} labels"
        )
    # Rows are channel-major (1024 red, 1024 green, 1024 blue, each row-major 32x32) -> NHWC.
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def read_cifar(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Read an official ``cifar-100-python`` folder.

    Args:
        folder: A folder with the ``train`` and ``test`` pickles (``meta`` for names, optional).

    Returns:
        ``x_train, y_train, x_test, y_test, fine_label_names``: every class in the files (NHWC
        uint8, int64 labels); the names come from ``meta``, else the built-in list (first 25).
    """
    x_train, y_train = _split_arrays(folder / "train")
    x_test, y_test = _split_arrays(folder / "test")
    names = list(FINE_LABEL_NAMES)
    if (folder / "meta").is_file():
        meta = _unpickle(folder / "meta")
        if "fine_label_names" in meta:
            names = [n.decode() if isinstance(n, bytes) else str(n) for n in meta["fine_label_names"]]
    return x_train, y_train, x_test, y_test, names


def _keras_load_data() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Keras' loader (downloads ~160 MB once). Tests replace this function to stay offline."""
    import keras  # lazy: importing keras starts TensorFlow

    return keras.datasets.cifar100.load_data(label_mode="fine")


def download_cifar() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Load CIFAR-100 through Keras, downloading it when not cached.

    Returns:
        ``x_train, y_train, x_test, y_test, fine_label_names`` (NHWC uint8, int64 labels).

    Raises:
        DataError: Keras is missing or the download fails; the message names the offline options.
    """
    previous = socket.getdefaulttimeout()
    if previous is None:
        socket.setdefaulttimeout(_DOWNLOAD_TIMEOUT_S)
    try:
        (x_train, y_train), (x_test, y_test) = _keras_load_data()
    except Exception as exc:  # keras raises a bare Exception("URL fetch failure on ...")
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise DataError(
            f"cifar100_25: no local copy found and the download failed ({reason}); {OFFLINE_HINT}"
        ) from None
    finally:
        if previous is None:
            socket.setdefaulttimeout(None)
    arrays = []
    for x in (x_train, x_test):
        x = np.asarray(x, dtype=np.uint8)
        if x.ndim == 4 and x.shape[1] == 3 and x.shape[-1] != 3:  # image_data_format channels_first
            x = x.transpose(0, 2, 3, 1)
        arrays.append(x)
    y_tr = np.asarray(y_train, dtype=np.int64).reshape(-1)
    y_te = np.asarray(y_test, dtype=np.int64).reshape(-1)
    return arrays[0], y_tr, arrays[1], y_te, list(FINE_LABEL_NAMES)
