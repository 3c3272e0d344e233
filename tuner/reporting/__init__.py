"""Reading a study's results: ``trials`` and ``best`` (the best against each baseline), ``export`` (one
``.keras`` file), ``report`` (Markdown, HTML and figures) and ``open_dashboard`` (optuna-dashboard on the store).

Nothing here imports Keras.
"""

from __future__ import annotations

from tuner.reporting._dashboard import DEFAULT_HOST, DEFAULT_PORT, Dashboard, dashboard_url, open_dashboard
from tuner.reporting._doc import Document
from tuner.reporting._export import METADATA_NAME, export, export_target, read_export_metadata
from tuner.reporting._figures import by_value, comparison, curves, history, importance, pareto
from tuner.reporting._report import ReportResult, SIZE_LABELS, report
from tuner.reporting._results import BestReport, Comparison, StudyView, best, trials
from tuner.reporting._track import TrackResult, register, registry_uri, track
from tuner.reporting._sections import ReportData, fmt_value, mattered, rows_table, state_section, value_panels

__all__ = [
    "BestReport",
    "Comparison",
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "Dashboard",
    "Document",
    "METADATA_NAME",
    "ReportData",
    "ReportResult",
    "SIZE_LABELS",
    "StudyView",
    "TrackResult",
    "best",
    "by_value",
    "comparison",
    "curves",
    "dashboard_url",
    "export",
    "export_target",
    "fmt_value",
    "history",
    "importance",
    "mattered",
    "open_dashboard",
    "pareto",
    "read_export_metadata",
    "register",
    "registry_uri",
    "report",
    "rows_table",
    "state_section",
    "track",
    "trials",
    "value_panels",
]
