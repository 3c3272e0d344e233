"""Tests of the data layer (``tuner.data``): loaders, layouts, splits, errors, cache, import cost."""

from __future__ import annotations

import csv
import math
import json
import os
import pickle
import socket
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import BIRDS, one_line_error, run_cli, run_python
from tuner.data import DATASETS, Dataset, _cifar, available_bytes, clear_cache, load_dataset
from tuner.errors import CnntuneError, DataError


needs_birds = pytest.mark.skipif(
    not (BIRDS / "split.csv").is_file(),
    reason=f"shared CUB-200 subset not found at {BIRDS} (it sits beside the checkout in CI)",
)

# Distinct colours, so fake classes are told apart by their pixels.
COLOURS = [(220, 30, 30), (30, 200, 40), (40, 60, 210), (230, 210, 40), (160, 40, 200)]


@pytest.fixture(autouse=True)
def _fresh_cache():
    # Every test starts from an empty per-process cache; fake folders reuse tmp paths across tests.
    clear_cache()
    yield
    clear_cache()


def write_image(path: Path, colour=(200, 50, 50), size=(20, 16), fmt: str | None = None) -> Path:
    """Write a small solid-colour image (format from the suffix unless ``fmt`` is given)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, format=fmt)
    return path


def make_class_tree(root: Path, counts: dict[str, int], ext: str = ".jpg") -> Path:
    for i, (name, n) in enumerate(counts.items()):
        for j in range(n):
            write_image(root / name / f"{j:04d}{ext}", COLOURS[i % len(COLOURS)])
    return root


# ---------------------------------------------------------------- the shared birds (real data)


@pytest.fixture(scope="module")
def birds_csv() -> list[dict[str, str]]:
    with open(BIRDS / "split.csv", newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def birds() -> Dataset:
    clear_cache()
    return load_dataset("cub200", data_dir=BIRDS, image_size=32)


@needs_birds
def test_birds_sizes_and_types(birds: Dataset) -> None:
    assert (len(birds.x_train), len(birds.x_val), len(birds.x_test)) == (1200, 300, 1449)
    assert birds.input_shape == (32, 32, 3) and birds.num_classes == 50
    for x, y in ((birds.x_train, birds.y_train), (birds.x_val, birds.y_val), (birds.x_test, birds.y_test)):
        assert x.dtype == np.uint8 and x.shape[1:] == (32, 32, 3)
        assert y.dtype == np.int64 and y.shape == (len(x),)
        assert not x.flags.writeable  # shared by the cache: read-only
    assert birds.x_train.std() > 20  # real photos, not a constant


@needs_birds
def test_birds_classes_match_split_csv(birds: Dataset, birds_csv) -> None:
    names = {int(r["label"]): r["class_name"] for r in birds_csv}
    assert birds.class_names == [names[i] for i in range(50)]
    test_counts = Counter(int(r["label"]) for r in birds_csv if r["split"] == "test")
    assert np.bincount(birds.y_test, minlength=50).tolist() == [test_counts[i] for i in range(50)]
    # Stratified validation: 20% of 30 train images of every class.
    assert np.bincount(birds.y_val, minlength=50).tolist() == [6] * 50
    assert np.bincount(birds.y_train, minlength=50).tolist() == [24] * 50


@needs_birds
def test_birds_subset_cache_and_summary(birds: Dataset) -> None:
    sub = load_dataset("cub200", data_dir=BIRDS, image_size=32, classes=5)
    assert sub.class_names == birds.class_names[:5]
    assert (len(sub.x_train), len(sub.x_val)) == (120, 30)
    assert set(sub.y_test.tolist()) == set(range(5)) and len(sub.x_test) == int(np.sum(birds.y_test < 5))
    # Per-class split streams: the subset's validation images are the full dataset's ones.
    np.testing.assert_array_equal(sub.x_val, birds.x_val[birds.y_val < 5])
    # Same arguments (however the path is spelled) -> the same object, decoded once.
    again = load_dataset("cub200", data_dir=BIRDS, image_size=32)
    assert again.fingerprint == birds.fingerprint
    assert load_dataset("cub200", data_dir=str(BIRDS) + "/", image_size=32) is again
    summary = birds.describe()
    assert json.loads(json.dumps(summary)) == summary
    assert summary["train"] == 1200 and summary["image_shape"] == [32, 32, 3] and summary["num_classes"] == 50
    mean, var = birds.channel_stats()
    assert len(mean) == len(var) == 3 and all(50 < m < 200 for m in mean) and all(v > 100 for v in var)
    assert birds.channel_stats() is birds.channel_stats()  # computed once
    np.testing.assert_allclose(mean, birds.x_train.reshape(-1, 3).mean(axis=0))
    np.testing.assert_allclose(var, birds.x_train.reshape(-1, 3).astype(float).var(axis=0))


# ---------------------------------------------------------------- CUB layouts (fake, tiny)


CUB_CLASSES = ["001.Black_footed_Albatross", "002.Laysan_Albatross", "003.Sooty_Albatross"]


def make_cub2011(root: Path, train_only_class: int | None = None) -> Path:
    """Official CUB-200-2011 files: 3 classes x 4 images, the first 3 of each flagged 1 (= train)."""
    images, labels, split = [], [], []
    image_id = 0
    for c, class_dir in enumerate(CUB_CLASSES, start=1):
        for j in range(4):
            image_id += 1
            rel = f"{class_dir}/{class_dir.split('.')[1]}_{j:04d}_{image_id}.jpg"
            write_image(root / "images" / rel, COLOURS[c - 1], size=(30, 20))
            images.append(f"{image_id} {rel}")
            labels.append(f"{image_id} {c}")
            is_train = j < 3 and c != train_only_class
            split.append(f"{image_id} {1 if is_train else 0}")
    (root / "images.txt").write_text("\n".join(images) + "\n")
    (root / "image_class_labels.txt").write_text("\n".join(labels) + "\n")
    (root / "train_test_split.txt").write_text("\n".join(split) + "\n")
    (root / "classes.txt").write_text("\n".join(f"{i} {d}" for i, d in enumerate(CUB_CLASSES, 1)) + "\n")
    return root


def test_cub2011_layout(tmp_path: Path) -> None:
    root = make_cub2011(tmp_path / "CUB_200_2011")
    # Pointing at the folder the archive was unpacked in also works.
    ds = load_dataset("cub200", data_dir=tmp_path, image_size=16, val_fraction=0)
    assert ds.class_names == ["Black_footed_Albatross", "Laysan_Albatross", "Sooty_Albatross"]
    assert (len(ds.x_train), len(ds.x_val), len(ds.x_test)) == (9, 0, 3)
    assert ds.x_val.shape == (0, 16, 16, 3)
    assert ds.input_shape == (16, 16, 3)
    assert ds.y_train.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2] and ds.y_test.tolist() == [0, 1, 2]
    # Labels follow the files: class 1's pixels are red.
    assert tuple(int(v) for v in ds.x_train[0, 8, 8]) == pytest.approx(COLOURS[0], abs=12)
    assert load_dataset("cub200", data_dir=root, image_size=16, val_fraction=0).fingerprint == ds.fingerprint


def test_cub2010_layout(tmp_path: Path) -> None:
    train, test = [], []
    for c, class_dir in enumerate(reversed(CUB_CLASSES)):  # order comes from sorting, not the lists
        for j in range(3):
            rel = f"{class_dir}/img_{j}.jpg"
            write_image(tmp_path / "images" / rel, COLOURS[c])
            (train if j < 2 else test).append(rel)
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "train.txt").write_text("\n".join(train) + "\n")
    (tmp_path / "lists" / "test.txt").write_text("\n".join(test) + "\n")
    ds = load_dataset("cub200", data_dir=tmp_path, image_size=8)
    assert ds.class_names == ["Black_footed_Albatross", "Laysan_Albatross", "Sooty_Albatross"]
    assert (len(ds.x_train), len(ds.x_val), len(ds.x_test)) == (3, 3, 3)
    assert np.bincount(ds.y_val).tolist() == [1, 1, 1]  # 2 train images: one stays on each side


def test_cub_without_data_dir_says_where_to_get_it() -> None:
    with pytest.raises(DataError, match=r"data_dir=.*vision\.caltech\.edu"):
        load_dataset("cub200")


def test_cub_unknown_layout(tmp_path: Path) -> None:
    write_image(tmp_path / "a" / "x.jpg")
    with pytest.raises(DataError, match="no CUB-200 layout found"):
        load_dataset("cub200", data_dir=tmp_path)


def test_cub_class_with_only_test_images(tmp_path: Path) -> None:
    make_cub2011(tmp_path, train_only_class=2)
    with pytest.raises(DataError, match="class 'Laysan_Albatross' has no training images"):
        load_dataset("cub200", data_dir=tmp_path, image_size=8)


# ---------------------------------------------------------------- generic folders


def test_folder_with_train_and_test(tmp_path: Path) -> None:
    make_class_tree(tmp_path / "train", {"cat": 5, "dog": 5}, ext=".png")
    make_class_tree(tmp_path / "test", {"cat": 2, "dog": 3}, ext=".png")
    ds = load_dataset("folder", data_dir=tmp_path, image_size=12)
    assert ds.class_names == ["cat", "dog"]
    assert (len(ds.x_train), len(ds.x_val), len(ds.x_test)) == (8, 2, 5)
    assert ds.y_test.tolist() == [0, 0, 1, 1, 1]


def test_folder_without_test_holds_out_20_percent(tmp_path: Path) -> None:
    make_class_tree(tmp_path, {"b": 10, "a": 10, "train": 5})  # a class may be called "train"
    write_image(tmp_path / "a" / "nested" / "deep.jpeg", COLOURS[0])  # subfolders of a class count
    write_image(tmp_path / "a" / "photo.WEBP", COLOURS[0], fmt="WEBP")  # extensions in any case
    (tmp_path / "a" / "._0000.jpg").write_bytes(b"macOS resource fork, not a JPEG")
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    make_class_tree(tmp_path / ".ipynb_checkpoints", {"junk": 1})
    ds = load_dataset("folder", data_dir=tmp_path, image_size=8, val_fraction=0)
    assert ds.class_names == ["a", "b", "train"]
    # 12 / 10 / 5 images -> 2 (round(2.4)) / 2 / 1 held out as test.
    assert np.bincount(ds.y_test).tolist() == [2, 2, 1]
    assert np.bincount(ds.y_train).tolist() == [10, 8, 4]
    # The test hold-out does not move with split_seed; the validation split does.
    a = load_dataset("folder", data_dir=tmp_path, image_size=8, split_seed=1)
    b = load_dataset("folder", data_dir=tmp_path, image_size=8, split_seed=2)
    assert a.fingerprint != b.fingerprint
    np.testing.assert_array_equal(a.y_test, ds.y_test)
    assert np.bincount(a.y_val).tolist() == [2, 2, 1]


def test_folder_images_without_class_folders(tmp_path: Path) -> None:
    write_image(tmp_path / "loose.jpg")
    with pytest.raises(DataError, match="put each class's images in its own subfolder"):
        load_dataset("folder", data_dir=tmp_path)


def test_folder_default_size_is_224(tmp_path: Path) -> None:
    make_class_tree(tmp_path, {"a": 2, "b": 2})
    assert load_dataset("folder", data_dir=tmp_path).input_shape == (224, 224, 3)


# ---------------------------------------------------------------- CIFAR-100 (fake offline copy)


def make_cifar_copy(root: Path, per_label: int = 2, labels: int = 31, protocol: int = 2) -> Path:
    """A ``cifar-100-python`` folder in the official format: pickled dicts with bytes keys."""
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", per_label), ("test", 1)):
        y = [label for label in range(labels) for _ in range(n)]
        data = rng.integers(0, 256, size=(len(y), 3072), dtype=np.uint8)
        data[:, :1024] = np.repeat(np.array(y, dtype=np.uint8)[:, None], 1024, axis=1)  # red = label
        batch = {b"batch_label": b"fake", b"fine_labels": y, b"coarse_labels": [0] * len(y),
                 b"filenames": [b"x.png"] * len(y), b"data": data}  # fmt: skip
        (root / split).write_bytes(pickle.dumps(batch, protocol=protocol))
    names = [n.encode() for n in _cifar.FINE_LABEL_NAMES] + [f"extra_{i}".encode() for i in range(75)]
    meta = {b"fine_label_names": names, b"coarse_label_names": [b"c"] * 20}
    (root / "meta").write_bytes(pickle.dumps(meta, protocol=protocol))
    return root


def test_cifar_from_data_dir(tmp_path: Path) -> None:
    copy = make_cifar_copy(tmp_path / "cifar-100-python")
    ds = load_dataset("cifar100_25", data_dir=copy)
    assert ds.num_classes == 25 and ds.class_names[:3] == ["apple", "aquarium_fish", "baby"]
    assert ds.class_names[-1] == "cockroach"
    assert ds.input_shape == (32, 32, 3)
    assert (len(ds.x_train), len(ds.x_val), len(ds.x_test)) == (25, 25, 25)
    assert set(ds.y_train.tolist()) | set(ds.y_val.tolist()) == set(range(25))
    # CHW rows became HWC pixels: the red plane holds the label.
    assert all(int(x[5, 7, 0]) == int(y) for x, y in zip(ds.x_test, ds.y_test, strict=True))
    # The parent folder works too; a resize is applied only when asked.
    assert load_dataset("cifar100_25", data_dir=tmp_path).fingerprint == ds.fingerprint
    assert load_dataset("cifar100_25", data_dir=copy, image_size=40).input_shape == (40, 40, 3)
    small = load_dataset("cifar100_25", data_dir=copy, classes=10)
    assert small.num_classes == 10 and int(small.y_test.max()) == 9
    with pytest.raises(DataError, match=r"classes=30 is out of range.*<= 25"):
        load_dataset("cifar100_25", data_dir=copy, classes=30)


def test_cifar_from_env_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copy = make_cifar_copy(tmp_path / "offline", protocol=pickle.HIGHEST_PROTOCOL)
    monkeypatch.setenv("CNNTUNE_CIFAR100_DIR", str(copy))
    ds = load_dataset("cifar100_25")
    assert ds.num_classes == 25 and int(ds.y_train.max()) == 24 and len(ds.x_test) == 25
    monkeypatch.setenv("CNNTUNE_CIFAR100_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="CNNTUNE_CIFAR100_DIR '.*nowhere' does not exist"):
        load_dataset("cifar100_25")


def test_cifar_refuses_pickles_that_run_code(tmp_path: Path) -> None:
    copy = make_cifar_copy(tmp_path / "cifar-100-python")

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    (copy / "train").write_bytes(pickle.dumps({b"data": Evil()}))
    with pytest.raises(DataError, match="refusing to load"):
        load_dataset("cifar100_25", data_dir=copy)


def test_cifar_without_copy_or_network(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("CNNTUNE_CIFAR100_DIR", raising=False)
    monkeypatch.delenv("KERAS_HOME", raising=False)
    seen = {}

    def offline_keras():
        seen["timeout"] = socket.getdefaulttimeout()
        # What keras.utils.get_file raises without a network.
        raise Exception(
            "URL fetch failure on https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz: None -- "
            "[Errno -2] Name or service not known"
        )

    monkeypatch.setattr(_cifar, "_keras_load_data", offline_keras)
    before = socket.getdefaulttimeout()
    with pytest.raises(DataError) as err:
        load_dataset("cifar100_25")
    message = str(err.value)
    assert "data_dir=" in message and "CNNTUNE_CIFAR100_DIR" in message and "connected machine" in message
    assert "URL fetch failure" in message and "\n" not in message
    assert seen["timeout"] is not None or before is not None  # the download cannot hang forever
    assert socket.getdefaulttimeout() == before


# ---------------------------------------------------------------- synthetic


def test_synthetic_is_deterministic_and_learnable() -> None:
    ds = load_dataset("synthetic")
    assert ds.class_names == ["class_0", "class_1", "class_2"]
    assert (len(ds.x_train), len(ds.x_val), len(ds.x_test)) == (96, 24, 60)
    assert ds.input_shape == (32, 32, 3)
    clear_cache()
    again = load_dataset("synthetic")
    assert again is not ds and again.fingerprint == ds.fingerprint
    np.testing.assert_array_equal(again.x_train, ds.x_train)
    # Learnable: even nearest class-mean colour beats chance by far.
    big = load_dataset("synthetic", classes=10, image_size=16)
    centroids = np.stack([big.x_train[big.y_train == c].mean(axis=(0, 1, 2)) for c in range(10)])
    pixels = big.x_test.mean(axis=(1, 2))
    predicted = np.argmin(((pixels[:, None, :] - centroids[None]) ** 2).sum(-1), axis=1)
    assert (predicted == big.y_test).mean() > 0.5
    # Class k looks the same whatever the number of classes.
    np.testing.assert_array_equal(big.x_test[big.y_test < 3], load_dataset("synthetic", image_size=16).x_test)


def test_fingerprint_is_stable_across_processes() -> None:
    code = "from tuner.data import load_dataset; print(load_dataset('synthetic', classes=4).fingerprint)"
    assert run_python(code).strip() == load_dataset("synthetic", classes=4).fingerprint


# ---------------------------------------------------------------- errors users can cause


def test_missing_dir_and_empty_dir(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"data_dir '.*missing' does not exist"):
        load_dataset("folder", data_dir=tmp_path / "missing")
    (tmp_path / "empty" / "a").mkdir(parents=True)
    with pytest.raises(DataError, match=r"no images found in '.*empty' \(expected"):
        load_dataset("folder", data_dir=tmp_path / "empty")
    with pytest.raises(DataError, match="needs data_dir"):
        load_dataset("folder")


def test_corrupt_image_is_named(tmp_path: Path) -> None:
    make_class_tree(tmp_path, {"a": 5, "b": 5})
    bad = tmp_path / "b" / "0002.jpg"
    bad.write_bytes(b"\xff\xd8 this is not really a jpeg")
    with pytest.raises(DataError, match=r"cannot read image '.*b/0002\.jpg'.*skip_bad_images=True") as err:
        load_dataset("folder", data_dir=tmp_path, image_size=8)
    assert isinstance(err.value, CnntuneError) and "\n" not in str(err.value)
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable image.*0002\.jpg") as record:
        ds = load_dataset("folder", data_dir=tmp_path, image_size=8, skip_bad_images=True)
    assert record[0].filename == __file__  # the warning points at the caller
    assert len(ds.x_train) + len(ds.x_val) + len(ds.x_test) == 9


def test_class_left_empty_by_skipping(tmp_path: Path) -> None:
    make_class_tree(tmp_path, {"a": 3, "b": 1})
    (tmp_path / "b" / "0000.jpg").write_bytes(b"garbage")
    with pytest.warns(UserWarning), pytest.raises(DataError, match="class 'b' has no training images"):
        load_dataset("folder", data_dir=tmp_path, image_size=8, skip_bad_images=True)


def test_empty_class_folder(tmp_path: Path) -> None:
    make_class_tree(tmp_path, {"a": 3, "b": 3})
    (tmp_path / "c_empty").mkdir()
    with pytest.raises(DataError, match="class 'c_empty' has no training images"):
        load_dataset("folder", data_dir=tmp_path)


def test_unknown_dataset() -> None:
    with pytest.raises(DataError, match="unknown dataset 'foo'; valid: cifar100_25, cub200, folder, synthetic"):
        load_dataset("foo")
    assert list(DATASETS) == ["cifar100_25", "cub200", "folder", "synthetic"]
    assert all(isinstance(v, str) and "\n" not in v for v in DATASETS.values())


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"classes": 0}, r"classes=0 is out of range.*>= 2 and <= 3"),
        ({"classes": 1}, r"classes=1 is out of range"),
        ({"classes": 4}, r"classes=4 is out of range.*<= 3"),
        ({"classes": "3"}, r"classes='3' is invalid"),
        ({"image_size": 4}, r"image_size=4 is invalid.*>= 8"),
        ({"image_size": 32.0}, r"image_size=32.0 is invalid"),
        ({"val_fraction": 1.0}, r"val_fraction=1.0 is invalid"),
        ({"val_fraction": -0.1}, r"val_fraction=-0.1 is invalid"),
        ({"split_seed": -1}, r"split_seed=-1 is invalid"),
    ],
)
def test_bad_arguments(tmp_path: Path, kwargs: dict, pattern: str) -> None:
    make_class_tree(tmp_path, {"a": 2, "b": 2, "c": 2})
    with pytest.raises(DataError, match=pattern):
        load_dataset("folder", data_dir=tmp_path, **kwargs)


# ---------------------------------------------------------------- cache and fingerprint


def test_cache_returns_same_object_and_fingerprint_tracks_content(tmp_path: Path) -> None:
    make_class_tree(tmp_path, {"a": 4, "b": 4})
    first = load_dataset("folder", data_dir=tmp_path, image_size=8)
    assert load_dataset("folder", data_dir=tmp_path, image_size=8) is first
    # classes=None and classes=<all> hold the same content: one shared object.
    assert load_dataset("folder", data_dir=tmp_path, image_size=8, classes=2) is first
    assert len(first.fingerprint) == 64 and "fingerprint" in repr(first) and "array" not in repr(first)
    write_image(tmp_path / "a" / "0001.jpg", (10, 250, 250))
    clear_cache()  # the cache is keyed by arguments; changed files need a fresh load
    second = load_dataset("folder", data_dir=tmp_path, image_size=8)
    assert second is not first and second.fingerprint != first.fingerprint


def test_import_does_not_load_keras_or_tensorflow() -> None:
    code = (
        "import sys, tuner.data\n"
        "from tuner.data import load_dataset\n"
        "load_dataset('synthetic')\n"
        "print(sorted(m for m in ('keras', 'tensorflow') if m in sys.modules))"
    )
    assert run_python(code).strip() == "[]"


def _size_needing(images: int, times: float) -> int:
    """An image size at which ``images`` decoded need ``times`` the memory available here."""
    have = available_bytes()
    assert have and have > 0
    return math.ceil(math.sqrt(times * have / (images * 3)))


def test_data_that_would_not_fit_in_memory_is_refused_before_decoding(store):
    # 6 synthetic classes of 40 + 20 images: at this size they would need twice the memory there is.
    size = _size_needing(6 * 60, 2.0)
    with pytest.raises(DataError, match=r"synthetic: 360 images at image_size=\d+ need [\d.]+ GiB .* available"):
        load_dataset("synthetic", image_size=size, classes=6)
    # The shared birds through the command line: one line, and no study records a trial.
    size = _size_needing(2949, 1.5)
    one_line_error(run_cli("search", "space=basenet", "data=cub200", f"data_dir={BIRDS}", f"image_size={size}",
                           "--storage", store, "--study", "huge"), "2,949 images", f"image_size={size}", "GiB")
    assert not tuner_trials(store, "huge")
    # A size that fits loads as before.
    assert load_dataset("synthetic", image_size=16, classes=6).x_train.shape[1:] == (16, 16, 3)


def tuner_trials(store: str, study: str) -> list:
    import optuna

    try:
        return optuna.load_study(study_name=study, storage=store).trials
    except KeyError:
        return []
