"""Any class-per-folder image tree: ``<class>/*.jpg``, or ``train/<class>/...`` + ``test/<class>/...``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tuner.data._images import IMAGE_EXTENSIONS, ImageListing, is_image_file, list_images, visible_subdirs
from tuner.data._split import STREAM_TEST_HOLDOUT, stratified_split
from tuner.errors import DataError

__all__ = ["TEST_HOLDOUT_FRACTION", "TEST_HOLDOUT_SEED", "read_folder"]

# Without a test/ folder, this share of each class becomes the test split. Its seed is fixed (not
# split_seed) so every run on the same tree is scored on the same test images.
TEST_HOLDOUT_FRACTION = 0.2
TEST_HOLDOUT_SEED = 0

_EXTS = "|".join(e.lstrip(".") for e in IMAGE_EXTENSIONS)
EXPECTED = f"expected <class>/*.{{{_EXTS}}} or train/<class>/... + test/<class>/..."


def _is_split_tree(train_dir: Path) -> bool:
    """``train/`` holds class folders (not images): a vehicles tree may well have a class named train."""
    if not train_dir.is_dir():
        return False
    has_images = any(is_image_file(p) for p in train_dir.iterdir() if p.is_file())
    return not has_images and bool(visible_subdirs(train_dir))


def _class_files(class_root: Path) -> dict[str, list[Path]]:
    return {d.name: list_images(d) for d in visible_subdirs(class_root)}


def read_folder(root: Path) -> ImageListing:
    """List a class-per-folder tree.

    Class order is the sorted class folder names. Other top-level folders beside ``train/`` and
    ``test/`` (e.g. ``val/``) are ignored in the split layout: the validation part is always taken
    from the train split.

    Args:
        root: An existing directory.

    Returns:
        Class names and labelled train/test paths (a seeded, stratified 20% of each class is held
        out as test when there is no ``test/`` folder).

    Raises:
        DataError: No images, images not in class folders, an empty class, or a test-only class.
    """
    train_root = root / "train"
    split_tree = _is_split_tree(train_root)
    class_root = train_root if split_tree else root
    train_files = _class_files(class_root)
    if not any(train_files.values()):
        loose = [p for p in class_root.iterdir() if p.is_file() and is_image_file(p)]
        if loose:
            raise DataError(
                f"no class folders in '{class_root}': found {len(loose)} image(s) directly in it; "
                "put each class's images in its own subfolder (data_dir/<class>/*.jpg)"
            )
        raise DataError(f"no images found in '{root}' ({EXPECTED})")
    names = sorted(train_files)
    for name in names:
        if not train_files[name]:
            raise DataError(
                f"class '{name}' has no training images (no .{_EXTS.replace('|', '/.')} files in "
                f"'{class_root / name}'; remove the folder or add images)"
            )
    labels = {name: i for i, name in enumerate(names)}
    listing = ImageListing(class_names=names, where=f"'{root}'")
    listing.train = [(p, labels[n]) for n in names for p in train_files[n]]

    test_root = root / "test"
    if split_tree and test_root.is_dir():
        test_files = _class_files(test_root)
        for name in sorted(test_files):
            if name not in labels:
                raise DataError(
                    f"class '{name}' has no training images (it is in '{test_root}' but not in '{train_root}')"
                )
            listing.test.extend((p, labels[name]) for p in test_files[name])
        listing.test.sort(key=lambda item: (item[1], item[0]))
    else:
        y = np.array([label for _, label in listing.train])
        keep, held = stratified_split(y, TEST_HOLDOUT_FRACTION, TEST_HOLDOUT_SEED, STREAM_TEST_HOLDOUT)
        everything = listing.train
        listing.train = [everything[i] for i in keep]
        listing.test = [everything[i] for i in held]
    return listing
