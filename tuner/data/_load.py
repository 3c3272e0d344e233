"""``load_dataset``: argument checks, the per-process cache, and the shared split/fingerprint step."""

from __future__ import annotations

import math
import numbers
import os
import threading
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import numpy as np

from tuner.data import _cifar, _synthetic
from tuner.data._cub import CUB_URL, LAYOUTS_HELP, read_cub
from tuner.data._dataset import Dataset, compute_fingerprint
from tuner.data._folder import EXPECTED as FOLDER_EXPECTED, read_folder
from tuner.data._images import ImageListing, decode_images, resize_array
from tuner.data._memory import check_fits
from tuner.data._split import stratified_split
from tuner.errors import DataError

__all__ = ["DATASETS", "clear_cache", "load_dataset"]

DATASETS: dict[str, str] = {
    "cifar100_25": (
        "CIFAR-100, first 25 fine classes: 12,500 train / 2,500 test, 32x32 "
        f"(offline copy via data_dir= or {_cifar.ENV_VAR}, else Keras download)"
    ),
    "cub200": (
        "Caltech-UCSD Birds from data_dir= (CUB-200-2011, CUB-200-2010 or flat split.csv layout), "
        "resized to 224x224 by default"
    ),
    "folder": (
        "any class-per-folder image tree in data_dir= (<class>/*.jpg, or train/ + test/), "
        "resized to 224x224 by default"
    ),
    "synthetic": "generated colour/stripe images for fast tests: 3 classes, 32x32, 40 train + 20 test per class",
}

# Image side used when image_size is None. Folder trees default to 224 like the birds: most
# user photo trees are meant for ImageNet-style networks; pass image_size= for small CNNs.
_DEFAULT_SIZE = {"cifar100_25": 32, "cub200": 224, "folder": 224, "synthetic": 32}
_MIN_SIZE = 8
_MIN_CLASSES = 2

_guard = threading.Lock()
_cache: dict[Hashable, Dataset] = {}
_by_fingerprint: dict[str, Dataset] = {}
_key_locks: dict[Hashable, threading.Lock] = {}


def clear_cache() -> None:
    """Forget every dataset loaded in this process (the next ``load_dataset`` decodes again).

    Needed to see files that changed on disk since they were loaded: the cache is keyed by the
    arguments, not by file contents.
    """
    with _guard:
        _cache.clear()
        _by_fingerprint.clear()
        _key_locks.clear()


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_args(
    name: Any, image_size: Any, classes: Any, val_fraction: Any, split_seed: Any
) -> tuple[str, int, float, int]:
    if not isinstance(name, str) or name.strip().lower() not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; valid: {', '.join(DATASETS)}")
    name = name.strip().lower()
    if image_size is None:
        image_size = _DEFAULT_SIZE[name]
    if not _is_int(image_size) or image_size < _MIN_SIZE:
        raise DataError(f"image_size={image_size!r} is invalid: it must be an integer >= {_MIN_SIZE}")
    if classes is not None and not _is_int(classes):
        raise DataError(f"classes={classes!r} is invalid: it must be an integer >= {_MIN_CLASSES}")
    if (
        not isinstance(val_fraction, numbers.Real)
        or isinstance(val_fraction, bool)
        or not math.isfinite(val_fraction)
        or not 0 <= val_fraction < 1
    ):
        raise DataError(f"val_fraction={val_fraction!r} is invalid: it must be a number in [0, 1)")
    if not _is_int(split_seed) or split_seed < 0:
        raise DataError(f"split_seed={split_seed!r} is invalid: it must be an integer >= 0")
    return name, int(image_size), float(val_fraction), int(split_seed)


def _resolve_classes(classes: int | None, available: int, name: str, where: str) -> int:
    if available < _MIN_CLASSES:
        raise DataError(f"{name}: found only {available} class(es) in {where}; need at least {_MIN_CLASSES}")
    if classes is None:
        return available
    # Checked once the available count is known, so the message can give both bounds.
    if not _MIN_CLASSES <= classes <= available:
        raise DataError(
            f"classes={classes} is out of range for {name}: it must be >= {_MIN_CLASSES} and <= "
            f"{available} (the classes available in {where})"
        )
    return int(classes)


def _data_dir(name: str, data_dir: str | os.PathLike[str] | None) -> Path:
    if data_dir is None:
        if name == "cub200":
            raise DataError(
                f"dataset 'cub200' needs data_dir=PATH (there is no download: get CUB-200-2011 from "
                f"{CUB_URL}; data_dir= takes one of: {LAYOUTS_HELP})"
            )
        raise DataError(f"dataset '{name}' needs data_dir=PATH: a folder of class subfolders ({FOLDER_EXPECTED})")
    path = Path(data_dir).expanduser()
    if not path.exists():
        raise DataError(f"data_dir '{data_dir}' does not exist")
    if not path.is_dir():
        raise DataError(f"data_dir '{data_dir}' is not a directory")
    return path.resolve()


def _check_train_classes(y_train: np.ndarray, class_names: list[str], where: str, after: str = "") -> None:
    counts = np.bincount(y_train, minlength=len(class_names))
    empty = [class_names[i] for i in np.flatnonzero(counts == 0)]
    if empty:
        others = f" (and {len(empty) - 1} more)" if len(empty) > 1 else ""
        raise DataError(f"class '{empty[0]}' has no training images in {where}{after}{others}")


def _build(
    name: str,
    class_names: list[str],
    splits: dict[str, tuple[np.ndarray, np.ndarray]],
    *,
    image_size: int,
    val_fraction: float,
    split_seed: int,
) -> Dataset:
    """Fingerprint the final arrays (``splits``: ``{"train"|"val"|"test": (x, y)}``) into a Dataset."""
    arrays = {}
    for split, (x, y) in splits.items():
        arrays[f"x_{split}"] = x
        arrays[f"y_{split}"] = np.asarray(y, dtype=np.int64)
    config = {
        "image_size": image_size,
        "classes": len(class_names),
        "val_fraction": val_fraction,
        "split_seed": split_seed,
    }
    fingerprint = compute_fingerprint(name, class_names, arrays, config)
    return Dataset(name=name, class_names=list(class_names), fingerprint=fingerprint, **arrays)


def _split_val(
    x: np.ndarray, y: np.ndarray, val_fraction: float, split_seed: int
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    keep, held = stratified_split(y, val_fraction, split_seed)
    return {"train": (x[keep], y[keep]), "val": (x[held], y[held])}


def _from_listing(
    name: str,
    listing: ImageListing,
    *,
    classes: int | None,
    image_size: int,
    val_fraction: float,
    split_seed: int,
    skip_bad: bool,
) -> tuple[list[str], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Keep the first ``classes`` classes, split, decode, and check every class can train."""
    n = _resolve_classes(classes, len(listing.class_names), name, listing.where)
    names = listing.class_names[:n]
    train = [(p, y) for p, y in listing.train if y < n]
    test = [(p, y) for p, y in listing.test if y < n]
    y_train = np.array([y for _, y in train], dtype=np.int64)
    y_test = np.array([y for _, y in test], dtype=np.int64)
    _check_train_classes(y_train, names, listing.where)
    # Split before decoding and decode straight into one buffer ordered train | val | test: the
    # three splits are then slices of it, with no copy (copying 2,949 images at 224x224 costs
    # about as much as decoding them on a VM with slow page faults).
    keep, held = stratified_split(y_train, val_fraction, split_seed)
    order = [train[i] for i in keep] + [train[i] for i in held] + test
    check_fits(len(order), image_size, f"{name} in {listing.where}")
    labels = np.concatenate([y_train[keep], y_train[held], y_test])
    images, kept = decode_images([p for p, _ in order], image_size, skip_bad=skip_bad)
    if len(kept) == len(order):
        a, b = len(keep), len(keep) + len(held)
        return names, {
            "train": (images[:a], labels[:a]),
            "val": (images[a:b], labels[a:b]),
            "test": (images[b:], labels[b:]),
        }
    # Some files were skipped: split again what is left of the train split (rare, so copies are fine).
    labels = labels[kept]
    n_train = int(np.searchsorted(kept, len(train)))
    _check_train_classes(labels[:n_train], names, listing.where, " after skipping unreadable images")
    splits = _split_val(images[:n_train], labels[:n_train], val_fraction, split_seed)
    splits["test"] = (images[n_train:], labels[n_train:])
    return names, splits


def _load_uncached(
    name: str,
    source: Path | None,
    *,
    image_size: int,
    classes: int | None,
    val_fraction: float,
    split_seed: int,
    skip_bad_images: bool,
) -> Dataset:
    if name in ("cub200", "folder"):
        assert source is not None
        listing = read_cub(source) if name == "cub200" else read_folder(source)
        names, splits = _from_listing(
            name, listing,
            classes=classes, image_size=image_size, val_fraction=val_fraction,
            split_seed=split_seed, skip_bad=skip_bad_images,
        )  # fmt: skip
    else:
        if name == "cifar100_25":
            where = f"'{source}'" if source else "the Keras download"
            x_tr, y_tr, x_te, y_te, names = _cifar.read_cifar(source) if source else _cifar.download_cifar()
            available = min(_cifar.MAX_CLASSES, len(names), int(max(y_tr.max(initial=-1), y_te.max(initial=-1))) + 1)
            n = _resolve_classes(classes, available, name, where)  # default: all 25
            # Integer indices: boolean masks are several times slower on big 4-D arrays.
            tr, te = np.flatnonzero(y_tr < n), np.flatnonzero(y_te < n)
            x_tr, y_tr, x_te, y_te = x_tr[tr], y_tr[tr], x_te[te], y_te[te]
            names = names[:n]
            _check_train_classes(y_tr, names, where)
            check_fits(len(x_tr) + len(x_te), image_size, f"{name} in {where}")
            x_tr, x_te = resize_array(x_tr, image_size), resize_array(x_te, image_size)
        else:  # synthetic
            n = _resolve_classes(classes if classes is not None else 3, _synthetic.MAX_CLASSES, name, "the generator")
            check_fits(n * (_synthetic.TRAIN_PER_CLASS + _synthetic.TEST_PER_CLASS), image_size, name)
            x_tr, y_tr, x_te, y_te, names = _synthetic.make_synthetic(n, image_size)
        splits = _split_val(x_tr, y_tr, val_fraction, split_seed)
        splits["test"] = (x_te, y_te)
    return _build(name, names, splits, image_size=image_size, val_fraction=val_fraction, split_seed=split_seed)


def load_dataset(
    name: str,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    image_size: int | None = None,
    classes: int | None = None,
    val_fraction: float = 0.2,
    split_seed: int = 0,
    skip_bad_images: bool = False,
) -> Dataset:
    """Load a dataset as uint8 arrays, split into train / validation / test.

    Results are cached per process: the same arguments return the same (read-only) object, decoded
    once. Nothing here imports Keras, except the CIFAR-100 download, the last resort of
    ``cifar100_25``.

    Args:
        name: One of ``DATASETS``: ``"cifar100_25"``, ``"cub200"``, ``"folder"``, ``"synthetic"``.
        data_dir: Where the files are. Required for ``cub200`` (flat ``split.csv``, CUB-200-2011 or
            CUB-200-2010 layout, auto-detected) and ``folder``; for ``cifar100_25`` an offline
            ``cifar-100-python`` folder (else ``$CNNTUNE_CIFAR100_DIR``, else Keras' cache, else a
            download). Ignored by ``synthetic``.
        image_size: Side of the square images. Default 32 for ``cifar100_25`` and ``synthetic``
            (CIFAR is only resized when another size is asked), 224 for ``cub200`` and ``folder``.
            Images are converted to RGB and resized with Pillow's (antialiased) bilinear filter,
            without keeping the aspect ratio.
        classes: Keep the first N classes (labels ``0..N-1`` in the dataset's official order:
            CIFAR fine-label order, CUB class ids, sorted folder names). Default: 25 for
            ``cifar100_25`` (its maximum), 3 for ``synthetic``, all for the others.
        val_fraction: Share of each class of the train split held out as validation, in ``[0, 1)``;
            0 gives an empty validation set.
        split_seed: Seed of the stratified validation split.
        skip_bad_images: Skip unreadable image files with a warning naming them, instead of failing.

    Returns:
        The dataset.

    Raises:
        DataError: Unknown dataset, bad argument, missing or malformed data, unreadable image,
            a class without training images, or (CIFAR) no local copy and no network.
    """
    name, size, val_fraction, split_seed = _check_args(name, image_size, classes, val_fraction, split_seed)
    if name == "cifar100_25":
        source = _cifar.find_cifar_dir(data_dir)
    elif name == "synthetic":
        source = None
    else:
        source = _data_dir(name, data_dir)
    skip = bool(skip_bad_images) and name in ("cub200", "folder")  # only image files can be bad
    key = (name, str(source), size, classes, val_fraction, split_seed, skip)
    with _guard:
        if key in _cache:
            return _cache[key]
        lock = _key_locks.setdefault(key, threading.Lock())
    # One loader per key: a second thread asking for the same data waits instead of decoding again.
    with lock:
        with _guard:
            if key in _cache:
                return _cache[key]
        dataset = _load_uncached(
            name, source,
            image_size=size, classes=classes, val_fraction=val_fraction,
            split_seed=split_seed, skip_bad_images=skip_bad_images,
        )  # fmt: skip
        with _guard:
            # classes=None and classes=<all> give equal content: share one object (and its memory).
            dataset = _by_fingerprint.setdefault(dataset.fingerprint, dataset)
            _cache[key] = dataset
    return dataset
