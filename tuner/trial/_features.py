"""Cached backbone features: a frozen backbone runs once per dataset, not once per trial and epoch.

A space opts in with two optional functions (the trial runner calls them; see ``search_spaces/transfer.py``):

* ``feature_extractor(params, spec) -> (model, identity) | None``: for configurations whose backbone is frozen and
  sees no augmentation, a model mapping raw uint8 images to feature vectors, and a string naming the backbone and
  its weights (``resnet50/avg/imagenet``); ``None`` trains the configuration end to end as usual.
* ``head(params, spec, n_features) -> compiled keras.Model`` on the feature vectors.

The features of each split are stored with ``np.save`` under a cache folder, one file per
(dataset fingerprint, split, image shape, backbone identity, Keras version and backend): a changed image, another
split seed, other weights (by content) or another image size give another file name, so a stale file is never
read. Files are written atomically, so workers sharing the folder never see half a file. The model a trial saves is
one model, extractor + trained head, taking raw uint8 images.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ENV_VAR", "HeadOnly", "cache_path", "default_cache_dir", "features", "head_only"]

ENV_VAR = "CNNTUNE_FEATURE_CACHE"
_FORMAT = "cnntune-features-v1"  # bump when the meaning of a cached array changes
_SPLITS = ("train", "val", "test")
_BATCH = 64


def default_cache_dir() -> Path:
    """``$CNNTUNE_FEATURE_CACHE``, else ``~/.cache/cnntune/features``."""
    env = os.environ.get(ENV_VAR)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "cnntune" / "features"


def cache_path(cache_dir: str | os.PathLike, data, split: str, identity: str) -> Path:
    """The file holding the features of one split; its name carries a content key of everything that shapes them."""
    import keras

    shape = "x".join(str(d) for d in data.input_shape)
    # The backend too: under weights=none the same seed draws other random weights on another backend, so its
    # features belong to another backbone.
    key = {"format": _FORMAT, "dataset": data.fingerprint, "split": split, "shape": shape, "backbone": identity,
           "keras": keras.__version__, "backend": keras.backend.backend()}
    policy = keras.config.dtype_policy().name
    if policy != "float32":  # a mixed-precision backbone computes other features (float32 keys are unchanged)
        key["policy"] = policy
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]
    backbone = identity.split("/")[0]
    return Path(cache_dir) / f"{data.name}_{split}_{backbone}_{shape}_{digest}.npy"


def _load(path: Path, rows: int) -> np.ndarray | None:
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None  # missing or truncated: recompute
    return arr if arr.ndim == 2 and len(arr) == rows and np.isfinite(arr).all() else None


def features(extractor, identity: str, data, split: str, cache_dir: str | os.PathLike) -> tuple[np.ndarray, bool]:
    """The extractor's features of one split of ``data``, from the cache or computed and stored.

    Returns:
        ``(features, hit)``: float32 ``(N, F)`` and whether they came from the cache.
    """
    x = getattr(data, f"x_{split}")
    path = cache_path(cache_dir, data, split, identity)
    cached = _load(path, len(x)) if path.is_file() else None
    if cached is not None:
        return cached, True
    if len(x):
        out = np.asarray(extractor.predict(x, batch_size=_BATCH, verbose=0), dtype=np.float32)
    else:
        out = np.zeros((0, int(extractor.output.shape[-1])), dtype=np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npy")
    np.save(tmp, out)
    os.replace(tmp, path)  # atomic: a concurrent reader sees the old state or the whole file
    return out, False


@dataclass
class HeadOnly:
    """A trial that trains a head on cached features: the head, its arrays, and how to make the saved model."""

    head: Any
    extractor: Any
    arrays: dict[str, tuple[np.ndarray, np.ndarray]]
    attrs: dict[str, Any] = field(default_factory=dict)
    name: str = "model"

    def compose(self, head) -> Any:
        """One model, raw uint8 images in: the extractor followed by the trained ``head`` (same weights)."""
        import keras

        inputs = keras.Input(shape=self.extractor.input.shape[1:], dtype=self.extractor.input.dtype, name="image")
        model = keras.Model(inputs, head(self.extractor(inputs, training=False)), name=self.name)
        # A fresh optimizer of the head's kind and settings, so that the file can be trained further as is.
        model.compile(optimizer=head.optimizer.__class__.from_config(head.optimizer.get_config()), loss=head.loss,
                      metrics=["accuracy"])
        model.optimizer.build(model.trainable_variables)  # its slots are saved, so loading warns about nothing
        return model


def head_only(space, params: dict[str, Any], spec, data, cache_dir: str | os.PathLike | None = None) -> HeadOnly | None:
    """Plans a cached-feature trial when ``space`` offers one for ``params``; ``None`` otherwise.

    Args:
        space: the search space module (``feature_extractor`` and ``head`` are optional there).
        params: the trial's resolved values.
        spec: the ``ModelSpec`` of ``data``.
        data: a ``tuner.data.Dataset``.
        cache_dir: where feature files live; ``None`` uses ``default_cache_dir()``.

    Returns:
        ``HeadOnly`` with ``attrs`` = ``{"feature_cache": "hit"|"built", "feature_seconds": s}``, or ``None``.
    """
    maker = getattr(space, "feature_extractor", None)
    if maker is None or not hasattr(space, "head"):
        return None
    made = maker(params, spec)
    if made is None:
        return None
    extractor, identity = made
    start = time.perf_counter()
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    arrays, hits = {}, []
    for split in _SPLITS:
        feats, hit = features(extractor, identity, data, split, folder)
        arrays[split] = (feats, getattr(data, f"y_{split}"))
        hits.append(hit)
    attrs = {"feature_cache": "hit" if all(hits) else "built",
             "feature_seconds": round(time.perf_counter() - start, 3)}
    head_model = space.head(params, spec, int(arrays["train"][0].shape[1]))
    return HeadOnly(head=head_model, extractor=extractor, arrays=arrays, attrs=attrs,
                    name=str(getattr(space, "NAME", "model")))
