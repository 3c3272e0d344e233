"""The public Python API in one place. This module only re-exports; each name lives in the module that owns it:

| names | module |
|---|---|
| ``search``, ``worker``, ``SearchResult`` | ``tuner._search`` (options, the plan, the engines) |
| ``trials``, ``best``, ``StudyView``, ``BestReport``, ``Comparison`` | ``tuner._results`` |
| ``report``, ``ReportResult`` | ``tuner._report`` (Markdown, HTML and figures) |
| ``export``, ``export_target``, ``read_export_metadata`` | ``tuner._export`` |
| ``reproduce``, ``write_reproduction``, ``Reproduction`` | ``tuner.reproduce`` |
| ``reevaluate``, ``ReevalReport`` | ``tuner.reeval`` |
| ``spaces``, ``space_detail`` | ``search_spaces`` (the space registry) |

Every function takes the same store arguments (``storage`` URL and ``study`` name), returns plain records and never
prints; errors a user can act on are ``CnntuneError``.
"""

from __future__ import annotations

from search_spaces import detail as space_detail
from search_spaces import summaries as spaces
from tuner._export import export, export_target, read_export_metadata
from tuner.reeval import ReevalReport, reevaluate
from tuner.reproduce import Reproduction, reproduce, write_reproduction
from tuner._report import ReportResult, report
from tuner._results import BestReport, Comparison, StudyView, best, trials
from tuner._search import SearchResult, search, worker

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
