"""``export``: one trial's model as one ``.keras`` file that takes raw uint8 images, with its metadata inside."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path
from typing import Any

from tuner.errors import CnntuneError, StorageError
from tuner._results import best
from tuner.study import open_study, read_records, study_meta

__all__ = ["METADATA_NAME", "export", "export_target", "read_export_metadata"]

# The member of the .keras zip file that holds cnntune's metadata.
METADATA_NAME = "cnntune.json"


def export_target(path: str | Path) -> Path:
    """Checks an export file name before any work is done.

    Raises:
        CnntuneError: not a ``.keras`` name, or its folder does not exist.
    """
    target = Path(path).expanduser()
    if target.suffix != ".keras":
        raise CnntuneError(f"--export needs a file name ending in .keras. Received: {path}")
    if not target.parent.is_dir():
        raise CnntuneError(f"cannot export to {target}: folder {target.parent} does not exist")
    return target


def export(path: str | Path, *, study: str | None = None, storage: str | None = None,
           trial: int | None = None) -> Path:
    """Writes the best (or a given) trial's model as one ``.keras`` file that takes raw uint8 images.

    The metadata (space, params, seed, epoch, backend, dataset, class names) goes inside the file as
    ``cnntune.json`` and beside it as ``<name>.json``.

    Raises:
        CnntuneError: a folder that does not exist, a missing model file, an unknown trial.
    """
    target = export_target(path)
    if trial is None:
        report = best(study=study, storage=storage)
        rec, meta, name = report.best, report.meta, report.study
    else:
        _, st = open_study(storage, study)
        matches = [r for r in read_records(st) if r.number == trial]
        if not matches or matches[0].state != "complete":
            raise StorageError(f"study {st.study_name!r} has no completed trial {trial}")
        rec, meta, name = matches[0], study_meta(st), st.study_name
    if not rec.model_path or not Path(rec.model_path).is_file():
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
    # Written beside the target, patched, then renamed: a reader never sees a half-written model.
    tmp = target.with_name(target.name + ".tmp")
    shutil.copyfile(rec.model_path, tmp)
    with zipfile.ZipFile(tmp, "a") as zf:
        zf.writestr(METADATA_NAME, json.dumps(info, indent=2))
    tmp.replace(target)
    target.with_suffix(".json").write_text(json.dumps(info, indent=2))
    return target


def read_export_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata ``export`` stored inside a ``.keras`` file."""
    with zipfile.ZipFile(path) as zf:
        return json.loads(zf.read(METADATA_NAME))
