"""The public Python API in one place. This module only re-exports; each name lives in the package that owns it:

| names | package |
|---|---|
| ``search``, ``worker``, ``SearchResult`` | ``tuner.searching`` (the plan, the strategy, the engines) |
| ``SearchOptions`` | ``tuner.options`` (every option of ``search``, ``worker`` and ``reproduce``) |
| ``trials``, ``best``, ``StudyView``, ``BestReport``, ``Comparison`` | ``tuner.reporting`` |
| ``report``, ``ReportResult`` | ``tuner.reporting`` (Markdown, HTML and figures) |
| ``export``, ``export_target``, ``read_export_metadata`` | ``tuner.reporting`` |
| ``track``, ``TrackResult`` | ``tuner.reporting`` (a study's trials logged to MLflow afterwards) |
| ``reproduce``, ``write_reproduction``, ``Reproduction`` | ``tuner.replays`` |
| ``reevaluate``, ``ReevalReport`` | ``tuner.replays`` |
| ``spaces``, ``space_detail`` | ``search_spaces`` (the space registry) |

Every function takes the same store arguments (``storage`` URL and ``study`` name), returns plain records and never
prints; errors a user can act on are ``CnntuneError``.
"""

from __future__ import annotations

from search_spaces import detail as space_detail, summaries as spaces
from tuner.options import SearchOptions
from tuner.replays import ReevalReport, Reproduction, reevaluate, reproduce, write_reproduction
from tuner.reporting import (BestReport, Comparison, ReportResult, StudyView, TrackResult, best, export,
                             export_target, read_export_metadata, report, track, trials)
from tuner.searching import SearchResult, search, worker

__all__ = [
    "BestReport",
    "Comparison",
    "ReevalReport",
    "ReportResult",
    "Reproduction",
    "SearchOptions",
    "SearchResult",
    "StudyView",
    "TrackResult",
    "best",
    "export",
    "export_target",
    "read_export_metadata",
    "reevaluate",
    "report",
    "reproduce",
    "search",
    "space_detail",
    "spaces",
    "track",
    "trials",
    "worker",
    "write_reproduction",
]
