"""Datasets for the search: uint8 image arrays split into train / validation / test.

``load_dataset(name, ...)`` loads one of ``DATASETS`` (``cifar100_25``, ``cub200``, ``folder``,
``synthetic``) and caches it per process. Importing this package never imports Keras or
TensorFlow (the CLI lists datasets without starting them); only the CIFAR-100 download does.
"""

from __future__ import annotations

from tuner.data._dataset import Dataset
from tuner.data._load import DATASETS, clear_cache, load_dataset
from tuner.data._memory import available_bytes
from tuner.errors import DataError

__all__ = ["DATASETS", "DataError", "Dataset", "available_bytes", "clear_cache", "load_dataset"]
