"""``export``: one trial's model as one ``.keras`` file that takes raw uint8 images, with its metadata inside; to a
local file or to object storage (``s3://bucket/model.keras``)."""

from __future__ import annotations

import json
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from tuner.errors import CnntuneError, StorageError
from tuner.reporting._results import best
from tuner.store import Location, is_url, read_study

__all__ = ["METADATA_NAME", "export", "export_target", "read_export_metadata"]

# The member of the .keras zip file that holds cnntune's metadata.
METADATA_NAME = "cnntune.json"


def export_target(path: str | Path) -> Location:
    """Checks an export file name (a local path or a URL of object storage) before any work is done.

    Raises:
        CnntuneError: not a ``.keras`` name, or its folder does not exist.
        StorageError: the bucket cannot be written.
    """
    text = str(path)
    if not text.endswith(".keras") or text.rstrip("/").rsplit("/", 1)[-1] == ".keras":
        raise CnntuneError(f"--export needs a file name ending in .keras. Received: {path}")
    if is_url(text):
        target = Location.of(text)
        Location.of(text.rsplit("/", 1)[0]).check_writable()
        return target
    local = Path(text).expanduser()
    if not local.parent.is_dir():
        raise CnntuneError(f"cannot export to {local}: folder {local.parent} does not exist")
    return Location.of(local)


def export(path: str | Path | Location, *, study: str | None = None, storage: str | None = None,
           trial: int | None = None) -> Path | str:
    """Writes the best (or a given) trial's model as one ``.keras`` file that takes raw uint8 images.

    The metadata (space, params, seed, epoch, backend, dataset, class names) goes inside the file as
    ``cnntune.json`` and beside it as ``<name>.json``. ``path`` is a local file or a URL of object storage; the
    trial's model file may be either too.

    Returns:
        The file written: a ``Path``, or the URL.

    Raises:
        CnntuneError: a folder that does not exist, a missing model file, an unknown trial.
    """
    target = path if isinstance(path, Location) else export_target(path)  # a Location: export_target's, checked
    if trial is None:
        report = best(study=study, storage=storage)
        rec, meta, name = report.best, report.meta, report.study
    else:
        read = read_study(storage, study, history=False)
        matches = [r for r in read.records if r.number == trial]
        if not matches or matches[0].state != "complete":
            raise StorageError(f"study {read.name!r} has no completed trial {trial}")
        rec, meta, name = matches[0], read.meta, read.name
    if not rec.model_path or not Location.of(rec.model_path).exists():
        raise CnntuneError(f"the model file of trial {rec.number} is missing ({rec.model_path}); rerun the search")
    info = {
        "study": name,
        "trial": rec.number,
        "space": meta.get("space"),
        "params": rec.params,
        "seed": rec.seed,
        "epoch": rec.best_epoch,
        "backend": rec.backend,
        "dataset": meta.get("data"),
        "options": meta.get("options") or {},
        "class_names": meta.get("class_names"),
        "input_shape": meta.get("input_shape"),
        "input_dtype": "uint8",
        "val_accuracy": rec.val_accuracy,
        "test_accuracy": rec.test_accuracy,
        "baseline": rec.baseline,
    }
    # Made aside, patched, then put in place whole (renamed, or one upload): a reader never sees a half-written model.
    with tempfile.TemporaryDirectory(prefix="cnntune-export-") as folder:
        tmp = Path(folder) / "model.keras"
        with Location.of(rec.model_path).fetched() as source:
            _copy_portable(source, tmp)
        with zipfile.ZipFile(tmp, "a") as zf:
            zf.writestr(METADATA_NAME, json.dumps(info, indent=2))
        target.upload(tmp)
    sidecar = target.where[: -len(".keras")] + ".json"
    Location.of(sidecar).write_bytes(json.dumps(info, indent=2).encode())
    return target.local or target.where


def _portable(config: Any) -> bool:
    """Rewrites, in place, what a saved model's config says about the backend that trained it, so that the file
    loads and runs alike on every backend. Returns whether anything changed.

    * Under PyTorch, ``keras.optimizers.Adam()`` is an instance of
      ``keras.src.backend.torch.optimizers.torch_adam.Adam`` (the same for SGD, RMSprop, ...), and Keras saves that
      module: on another backend the file then loads PyTorch's optimizer class (which fails to train there), and
      without torch installed it does not load at all. Such a class becomes the ``keras.optimizers`` class of the
      same name, which picks the loading backend's own again.
    * ``compile(jit_compile="auto")`` is saved as the training backend's answer: ``True`` under JAX, which on PyTorch
      means ``torch.compile`` for every predict (about 30 s on 2 CPU cores, and a C++ compiler needed). It goes back
      to ``"auto"``, what the spaces compile with, for the loading backend to decide.
    """
    changed = False
    if isinstance(config, dict):
        module = config.get("module")
        if isinstance(module, str) and module.startswith("keras.src.backend.") and ".optimizers." in module:
            config["module"] = "keras.optimizers"
            changed = True
        compiled = config.get("compile_config")
        if isinstance(compiled, dict) and isinstance(compiled.get("jit_compile"), bool):
            compiled["jit_compile"] = "auto"
            changed = True
        for value in config.values():
            changed = _portable(value) or changed
    elif isinstance(config, list):
        for value in config:
            changed = _portable(value) or changed
    return changed


def _copy_portable(source: str | Path, dest: Path) -> None:
    """Copies a ``.keras`` file, its ``config.json`` made loadable on every backend (``_portable``)."""
    with zipfile.ZipFile(source) as zin:
        config = json.loads(zin.read("config.json"))
        if not _portable(config):
            shutil.copyfile(source, dest)
            return
        with zipfile.ZipFile(dest, "w") as zout:
            for info in zin.infolist():
                if info.filename == "config.json":
                    zout.writestr(info, json.dumps(config))
                    continue
                with zin.open(info) as src, zout.open(info, "w") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)


def read_export_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata ``export`` stored inside a ``.keras`` file."""
    with zipfile.ZipFile(path) as zf:
        return json.loads(zf.read(METADATA_NAME))
