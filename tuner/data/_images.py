"""Listing image files and decoding them in parallel into one uint8 array (Pillow, no TensorFlow)."""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from tuner.errors import DataError

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageListing",
    "decode_images",
    "is_image_file",
    "list_images",
    "resize_array",
    "visible_subdirs",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")

# Folders that tools create next to data and that are never classes.
_IGNORED_DIRS = {"__MACOSX"}

# Beyond this many bad files the warning / error only counts the rest, to stay readable.
_MAX_NAMED = 20

# Pillow's bilinear resize is antialiased when shrinking (its support grows with the scale), so
# it averages like an area filter on downscales and interpolates on upscales.
_RESAMPLE = Image.Resampling.BILINEAR


@dataclass
class ImageListing:
    """Image files of a dataset before decoding: class names in label order and labelled paths.

    Attributes:
        class_names: Class names; index = label.
        train: ``(path, label)`` of the dataset's train split.
        test: ``(path, label)`` of the dataset's test split.
        where: Human-readable location used in error messages.
    """

    class_names: list[str]
    train: list[tuple[Path, int]] = field(default_factory=list)
    test: list[tuple[Path, int]] = field(default_factory=list)
    where: str = ""


def _hidden(name: str) -> bool:
    # ".DS_Store", "._x.jpg" (macOS resource forks, not JPEGs), ".ipynb_checkpoints", ".git".
    return name.startswith(".") or name in _IGNORED_DIRS


def is_image_file(path: Path) -> bool:
    """Whether ``path`` has an image extension (any case) and is not a hidden file."""
    return path.suffix.lower() in IMAGE_EXTENSIONS and not _hidden(path.name)


def visible_subdirs(directory: Path) -> list[Path]:
    """Non-hidden subdirectories of ``directory``, sorted by name."""
    return sorted(p for p in directory.iterdir() if p.is_dir() and not _hidden(p.name))


def list_images(directory: Path) -> list[Path]:
    """Image files under ``directory`` (recursively, skipping hidden folders), sorted by path."""
    found: list[Path] = []
    for root, dirs, files in os.walk(directory, followlinks=True):
        dirs[:] = [d for d in dirs if not _hidden(d)]
        found.extend(Path(root) / f for f in files if is_image_file(Path(f)))
    return sorted(found)


def _workers(n_items: int) -> int:
    try:
        cpus = len(os.sched_getaffinity(0))  # honours taskset / container CPU pinning
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, 32, n_items))


def _decode_one(path: Path, size: int) -> np.ndarray:
    with Image.open(path) as img:
        # JPEG only: let libjpeg decode at 1/2, 1/4 or 1/8 scale when the target is that much smaller
        # (both sides stay >= size), which makes 227 -> 32 several times faster. No-op otherwise.
        img.draft(None, (size, size))
        ImageOps.exif_transpose(img, in_place=True)  # camera photos stored sideways
        if img.mode != "RGB":
            if img.mode == "P" and "transparency" in img.info:
                img = img.convert("RGBA")  # avoids Pillow's palette-transparency warning
            img = img.convert("RGB")
        if img.size != (size, size):
            img = img.resize((size, size), _RESAMPLE)
        return np.asarray(img, dtype=np.uint8)


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text


def _user_stacklevel() -> int:
    """Stack level of the first frame outside this package, so a warning points at the caller."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_globals.get("__name__", "").startswith("tuner.data"):
        frame, level = frame.f_back, level + 1
    return level


def _bad_list(bad: Sequence[tuple[Path, str]]) -> str:
    shown = "; ".join(f"'{p}' ({r})" for p, r in bad[:_MAX_NAMED])
    more = f"; and {len(bad) - _MAX_NAMED} more" if len(bad) > _MAX_NAMED else ""
    return shown + more


def decode_images(
    paths: Sequence[Path], size: int, *, skip_bad: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Decode image files to RGB, resize each to ``size`` x ``size`` and stack them.

    Decoding runs on a thread pool: Pillow releases the GIL while decoding and resizing, so this
    scales with the available cores.

    Args:
        paths: Image files.
        size: Target height and width in pixels.
        skip_bad: Skip unreadable files with one warning naming them, instead of raising.

    Returns:
        ``(images, kept)``: uint8 ``(K, size, size, 3)`` and the indices into ``paths`` of the ``K``
        decoded files (all of them unless ``skip_bad`` dropped some).

    Raises:
        DataError: A file cannot be read or decoded and ``skip_bad`` is false. The message names it.
    """
    n = len(paths)
    out = np.empty((n, size, size, 3), dtype=np.uint8)

    def work(i: int) -> str | None:
        try:
            out[i] = _decode_one(paths[i], size)
        except Exception as exc:  # any decoder failure means "this file is unusable"
            return _reason(exc)
        return None

    workers = _workers(n)
    if workers == 1:
        reasons = [work(i) for i in range(n)]
    else:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cnntune-decode") as pool:
            reasons = list(pool.map(work, range(n)))

    bad = [(Path(paths[i]), r) for i, r in enumerate(reasons) if r is not None]
    if not bad:
        return out, np.arange(n)
    if not skip_bad:
        path, reason = bad[0]
        more = f"; {len(bad) - 1} more unreadable image(s)" if len(bad) > 1 else ""
        raise DataError(
            f"cannot read image '{path}': {reason}{more} "
            "(fix or remove it, or pass skip_bad_images=True to skip unreadable images)"
        )
    warnings.warn(
        f"skipped {len(bad)} unreadable image(s): {_bad_list(bad)}",
        UserWarning,
        stacklevel=_user_stacklevel(),
    )
    kept = np.array([i for i, r in enumerate(reasons) if r is None], dtype=np.int64)
    return out[kept], kept


def resize_array(images: np.ndarray, size: int) -> np.ndarray:
    """Resize uint8 ``(N, H, W, 3)`` images to ``size`` x ``size`` with the same filter as files."""
    if images.shape[1:3] == (size, size):
        return images
    out = np.empty((len(images), size, size, 3), dtype=np.uint8)

    def work(i: int) -> None:
        out[i] = np.asarray(Image.fromarray(images[i]).resize((size, size), _RESAMPLE))

    with ThreadPoolExecutor(max_workers=_workers(len(images))) as pool:
        list(pool.map(work, range(len(images))))
    return out
