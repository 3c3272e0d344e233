"""The public Python API in one place. This module only re-exports; each name lives in the module that owns it:

| names | module |
|---|---|
| ``search``, ``worker``, ``SearchResult`` | ``tuner.searching._search`` (options, the plan, the engines) |
| ``trials``, ``best``, ``StudyView``, ``BestReport``, ``Comparison`` | ``tuner.reporting._results`` |
| ``report``, ``ReportResult`` | ``tuner.reporting._report`` (Markdown, HTML and figures) |
| ``export``, ``export_target``, ``read_export_metadata`` | ``tuner.reporting._export`` |
| ``reproduce``, ``write_reproduction``, ``Reproduction`` | ``tuner.replays._reproduce`` |
| ``reevaluate``, ``ReevalReport`` | ``tuner.replays._reeval`` |
| ``spaces``, ``space_detail`` | ``search_spaces`` (the space registry) |

Every function takes the same store arguments (``storage`` URL and ``study`` name), returns plain records and never
prints; errors a user can act on are ``CnntuneError``.
"""

from __future__ import annotations

from search_spaces import detail as space_detail
from search_spaces import summaries as spaces
from tuner.replays import ReevalReport, reevaluate
from tuner.replays import Reproduction, reproduce, write_reproduction
from tuner.reporting import export, export_target, read_export_metadata
from tuner.reporting import ReportResult, report
from tuner.reporting import BestReport, Comparison, StudyView, best, trials
from tuner.searching import SearchResult, search, worker

__all__ = [
    "BestReport",
    "Comparison",
    "ReevalReport",
    "ReportResult",
    "Reproduction",
    "SearchResult",
    "StudyView",
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
    "trials",
    "worker",
    "write_reproduction",
]
