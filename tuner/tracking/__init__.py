"""Trials where teams already look: an MLflow tracking server (``--track URI``) and TensorBoard's event files with
the HParams dashboard (``--tensorboard DIR``). Each is a ``Display`` around the search's own, fed what the search
shows; TensorBoard is imported only when asked for, MLflow's client only for a URI that is not an http(s) server
(``tuner.tracking._server``).
"""

from __future__ import annotations

import importlib.util
from typing import Any

from tuner.errors import CnntuneError
from tuner.records import Display
from tuner.tracking._mlflow import TRACK_TIMEOUTS, Tracked, register_model
from tuner.tracking._server import needs_client
from tuner.tracking._tensorboard import FINAL_METRICS, TensorBoard

__all__ = ["FINAL_METRICS", "TRACK_TIMEOUTS", "TensorBoard", "Tracked", "need", "needs_client", "register_model",
           "tracked"]


def tracked(display: Display, *, track: str | None, tensorboard: str | None, study: str, role: str,
            defaults: dict[str, Any]) -> Display:
    """``display``, also logging every trial to MLflow at ``track`` and to TensorBoard under ``tensorboard`` (each
    when given). ``role``: ``search`` or ``worker``; ``defaults``: the space's hand-chosen configuration.

    Raises:
        CnntuneError: the package an option needs is not installed.
    """
    if track and needs_client(track):  # an http(s) server is spoken to without MLflow's client
        need("mlflow", "--track")
    if tensorboard:
        need("tensorboard", "--tensorboard")
    if tensorboard:
        display = TensorBoard(display, tensorboard, study)
    if track:
        display = Tracked(display, track, study, role, defaults=defaults)
    return display


def need(package: str, option: str) -> None:
    """Raises ``CnntuneError`` (one line) when ``option`` cannot work: ``package`` is not installed."""
    install = {"mlflow": "pip install 'cnntune[mlflow]'", "tensorboard": "pip install tensorboard"}[package]
    if importlib.util.find_spec(package) is None:
        raise CnntuneError(f"{option} needs the {package} package: {install}")

