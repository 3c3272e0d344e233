"""Caltech-UCSD Birds: read the image listing of one of three on-disk layouts (auto-detected).

* flat: ``<class_name>/*.jpg`` + ``split.csv`` (``path,label,class_name,split``), as in
  ``shared/data/cub200_subset``;
* CUB-200-2011: ``images/``, ``images.txt``, ``image_class_labels.txt``, ``train_test_split.txt``,
  ``classes.txt`` (also found one level down in ``CUB_200_2011/``, as the official archive unpacks);
* CUB-200-2010: ``images/<class_dir>/*.jpg`` + ``lists/train.txt`` and ``lists/test.txt``.
"""

from __future__ import annotations

import csv
from pathlib import Path

from tuner.data._images import ImageListing
from tuner.errors import DataError

__all__ = ["CUB_URL", "LAYOUTS_HELP", "read_cub"]

CUB_URL = "https://www.vision.caltech.edu/datasets/cub_200_2011/"
LAYOUTS_HELP = (
    "split.csv + <class>/*.jpg (flat), images/ + images.txt + image_class_labels.txt + "
    "train_test_split.txt + classes.txt (CUB-200-2011), or images/ + lists/train.txt + "
    "lists/test.txt (CUB-200-2010)"
)
_FLAT_HEADER = ("path", "label", "class_name", "split")


def _class_name(class_dir: str) -> str:
    """``"001.Black_footed_Albatross"`` -> ``"Black_footed_Albatross"`` (unchanged without a dot)."""
    head, dot, tail = class_dir.partition(".")
    return tail if dot and head.isdigit() and tail else class_dir


def _read_table(path: Path, columns: int, form: str) -> dict[str, tuple[int, str]]:
    """``{first column: (line number, rest of the line)}`` of a whitespace-separated listing file.

    Keys keep the file's order; the last column keeps any inner spaces (paths may contain them).
    """
    if not path.is_file():
        raise DataError(f"missing '{path}' (expected lines '{form}')")
    rows: dict[str, tuple[int, str]] = {}
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            parts = line.split(maxsplit=columns - 1)
            if len(parts) != columns:
                raise DataError(f"'{path}' line {lineno}: expected '{form}', got {line.strip()!r}")
            rows[parts[0]] = (lineno, parts[1].strip())
    return rows


def _int(value: str, path: Path, lineno: int, what: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise DataError(f"'{path}' line {lineno}: {what} {value!r} is not an integer") from None


def _read_flat(root: Path) -> ImageListing:
    csv_path = root / "split.csv"
    with open(csv_path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or not set(_FLAT_HEADER) <= set(reader.fieldnames):
            raise DataError(
                f"'{csv_path}' must start with the header {','.join(_FLAT_HEADER)} "
                f"(found: {','.join(reader.fieldnames or [])})"
            )
        rows: list[tuple[Path, int, str]] = []
        names: dict[int, str] = {}
        for lineno, row in enumerate(reader, start=2):
            label = _int(row["label"], csv_path, lineno, "label")
            name = (row["class_name"] or "").strip()
            split = (row["split"] or "").strip().lower()
            if split not in ("train", "test"):
                raise DataError(f"'{csv_path}' line {lineno}: split must be train or test, got {split!r}")
            if names.setdefault(label, name) != name:
                raise DataError(
                    f"'{csv_path}' line {lineno}: label {label} is class {name!r} here but "
                    f"{names[label]!r} earlier"
                )
            rows.append((root / row["path"].strip(), label, split))
    if not rows:
        raise DataError(f"no images found in '{root}' (split.csv lists no images)")
    # Labels keep their order; gaps (a subset of classes) are closed so labels run 0..K-1.
    order = sorted(names)
    remap = {old: new for new, old in enumerate(order)}
    listing = ImageListing(class_names=[names[o] for o in order], where=f"'{root}'")
    for path, label, split in rows:
        (listing.train if split == "train" else listing.test).append((path, remap[label]))
    return listing


def _read_2011(root: Path) -> ImageListing:
    images_txt = root / "images.txt"
    labels_txt = root / "image_class_labels.txt"
    split_txt = root / "train_test_split.txt"
    classes_txt = root / "classes.txt"
    images = _read_table(images_txt, 2, "<image_id> <relative path>")
    labels = _read_table(labels_txt, 2, "<image_id> <class_id>")
    flags = _read_table(split_txt, 2, "<image_id> <1 = train, 0 = test>")
    if not images:
        raise DataError(f"no images found in '{root}' (images.txt is empty)")

    def class_of(image_id: str) -> int:
        if image_id not in labels:
            raise DataError(f"image id {image_id} of '{images_txt}' is missing from '{labels_txt}'")
        lineno, value = labels[image_id]
        return _int(value, labels_txt, lineno, "class id")

    class_dirs: dict[int, str] = {}
    if classes_txt.is_file():
        for cid, (lineno, class_dir) in _read_table(classes_txt, 2, "<class_id> <class_dir>").items():
            class_dirs[_int(cid, classes_txt, lineno, "class id")] = class_dir
    else:
        # Without classes.txt the class folder in each image path names the class.
        for image_id, (_, rel) in images.items():
            class_dirs.setdefault(class_of(image_id), Path(rel).parts[0])
    ids = sorted(class_dirs)  # official order: class ids 1..200
    remap = {cid: i for i, cid in enumerate(ids)}
    listing = ImageListing(class_names=[_class_name(class_dirs[c]) for c in ids], where=f"'{root}'")
    for image_id, (_, rel) in images.items():
        cid = class_of(image_id)
        if cid not in remap:
            raise DataError(f"class id {cid} of image {image_id} is not listed in '{classes_txt}'")
        if image_id not in flags:
            raise DataError(f"image id {image_id} of '{images_txt}' is missing from '{split_txt}'")
        lineno, flag = flags[image_id]
        if flag not in ("0", "1"):
            raise DataError(f"'{split_txt}' line {lineno}: flag {flag!r} must be 1 (train) or 0 (test)")
        # The official file marks training images with 1.
        target = listing.train if flag == "1" else listing.test
        target.append((root / "images" / rel, remap[cid]))
    return listing


def _read_2010(root: Path) -> ImageListing:
    splits: dict[str, list[str]] = {}
    for split in ("train", "test"):
        path = root / "lists" / f"{split}.txt"
        if not path.is_file():
            raise DataError(f"missing '{path}' (CUB-200-2010 layout: one image path under images/ per line)")
        splits[split] = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    rels = splits["train"] + splits["test"]
    if not rels:
        raise DataError(f"no images found in '{root}' (lists/train.txt and lists/test.txt are empty)")
    # Class = the image's folder; label order = sorted folder names ("001.Black_footed_Albatross", ...).
    dirs = sorted({Path(r).parts[0] for r in rels if len(Path(r).parts) > 1})
    remap = {d: i for i, d in enumerate(dirs)}
    listing = ImageListing(class_names=[_class_name(d) for d in dirs], where=f"'{root}'")
    for split, target in (("train", listing.train), ("test", listing.test)):
        for rel in splits[split]:
            parts = Path(rel).parts
            if len(parts) < 2:
                raise DataError(
                    f"'{root / 'lists' / (split + '.txt')}': {rel!r} is not '<class_dir>/<file>' under images/"
                )
            target.append((root / "images" / rel, remap[parts[0]]))
    return listing


def read_cub(root: Path) -> ImageListing:
    """Detect the layout of a CUB-200 folder and list its images.

    Args:
        root: An existing directory.

    Returns:
        The class names (official order) and labelled train/test image paths.

    Raises:
        DataError: No known layout, or a malformed listing file.
    """
    if not (root / "images.txt").is_file() and (root / "CUB_200_2011" / "images.txt").is_file():
        root = root / "CUB_200_2011"  # pointed at the folder the official archive was unpacked in
    if (root / "split.csv").is_file():
        return _read_flat(root)
    if (root / "images.txt").is_file():
        return _read_2011(root)
    if (root / "lists" / "train.txt").is_file() or (root / "lists").is_dir():
        return _read_2010(root)
    raise DataError(f"no CUB-200 layout found in '{root}' (expected {LAYOUTS_HELP})")
