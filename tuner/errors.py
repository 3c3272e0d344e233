"""Errors users can act on. Domain code raises these; only the CLI turns them into exit code 1."""

from __future__ import annotations

__all__ = ["CnntuneError", "DataError", "SpaceError", "StorageError"]


class CnntuneError(Exception):
    """An error with a message a user can act on (no traceback needed)."""


class DataError(CnntuneError):
    """A dataset is missing, empty, corrupt or misconfigured."""


class SpaceError(CnntuneError):
    """An unknown space, hyperparameter key, or a value of the wrong type."""


class StorageError(CnntuneError):
    """A study store that cannot be opened, or a study that does not exist."""
