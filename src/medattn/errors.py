"""Typed errors that users can act on: each names the file or option and what was wrong.

The command line prints these without a traceback; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from pathlib import Path


class MedattnError(Exception):
    """Base class for errors caused by user input (files, options, configs)."""


class ReadError(MedattnError):
    """A file could not be read. Raised before anything is half-loaded."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"cannot read {self.path}: {reason}")


class WriteError(MedattnError):
    """A file could not be written (a full disk, a file-size limit, no permission). The write was atomic, so the
    file that was there before is still there, whole."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"cannot write {self.path}: {reason}")


class DataError(MedattnError):
    """A dataset is inconsistent: labels that do not match images, empty folders, missing splits."""


class ConfigError(MedattnError):
    """A config file, option or name is invalid."""


class RunDirError(MedattnError):
    """A run directory is missing, incomplete, or would be overwritten."""


class TrainingDiverged(MedattnError, FloatingPointError):
    """The loss stopped being finite; training stopped before the update, and the last good checkpoint is kept.

    Also a FloatingPointError, so a search (tune grid) records the point as failed and goes on."""


class MemoryBudgetError(MedattnError, MemoryError):
    """Work refused before it started: its estimated peak memory exceeds what the machine (or
    MEDATTN_MEMORY_LIMIT) has. The message gives the estimate, what is available and which option to change."""
