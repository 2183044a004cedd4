"""Crash-safe file writes shared by the predictor's and the trainer's checkpoints.

The object goes to a temporary file in the target's folder, is flushed and fsynced, then
renamed over the target and the folder entry fsynced: a kill or a full disk at any moment
leaves either the old file or the new one, never a truncated file.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import torch


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem lets a folder be opened
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _rename(tmp: Path, path: Path) -> None:
    """The commit point of ``atomic_torch_save`` (a seam for the crash-injection tests)."""
    os.replace(tmp, path)


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save(obj)`` to ``path`` atomically (see the module docstring). On any failure
    the temporary file is removed, ``path`` is as it was, and the error propagates."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        _rename(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)
    return path
