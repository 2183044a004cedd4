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


class native_data_errors:
    """``with native_data_errors(): ...`` re-raises the native extension's
    ``NativeDataError(path, reason)`` as ``DataError`` (the one public type)."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, err, tb) -> None:
        from qgfast import _native

        if kind is not None and issubclass(kind, _native.NativeDataError):
            raise DataError(*err.args) from None
