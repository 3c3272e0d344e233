"""cnntune: automated search for Keras convolutional networks.

The public API (``search``, ``trials``, ``best``, ``export``) returns plain records and never prints;
importing this package does not import TensorFlow or Keras.
"""

from tuner._errors import CnntuneError, DataError, SpaceError, StorageError
from tuner.api import BestReport, Comparison, SearchResult, StudyView, best, export, read_export_metadata, search, trials, worker
from tuner.records import Display, TrialRecord

__all__ = [
    "BestReport",
    "CnntuneError",
    "Comparison",
    "DataError",
    "Display",
    "SearchResult",
    "SpaceError",
    "StorageError",
    "StudyView",
    "TrialRecord",
    "best",
    "export",
    "read_export_metadata",
    "search",
    "trials",
    "worker",
]

__version__ = "0.1.0"
