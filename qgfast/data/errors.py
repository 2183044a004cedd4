"""The one exception type for bad input data."""

from __future__ import annotations

from pathlib import Path


class DataError(ValueError):
    """A file or folder that cannot be used as data; ``path`` and ``reason`` say why.

    Subclasses ``ValueError`` so callers that already catch bad-value errors keep working.
    """

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")
