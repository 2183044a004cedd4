"""Type stub for the Rust extension ``qgfast._native`` (rust/src/lib.rs). Keep in sync."""

from os import PathLike
from typing import Any

import numpy as np

__version__: str

class NativeError(RuntimeError):
    """An internal failure (a caught panic) inside qgfast's native extension."""

class NativeDataError(ValueError):
    """Bad input data; ``args`` are ``(path, reason)`` (re-raised as ``qgfast.data.DataError``)."""

def nifti_header(path: str | PathLike[str]) -> dict[str, Any]:
    """The NIfTI-1/2 header fields (``.nii.gz``: only the header is inflated)."""

def read_nifti(
    path: str | PathLike[str], raw: bool = False, max_bytes: int = ...
) -> tuple[dict[str, Any], np.ndarray]:
    """(header fields, voxels in C order of the reversed NIfTI shape): the on-disk type,
    or float64 ``raw * slope + inter`` when the header scales and ``raw`` is False."""

def build_info(key: str | None = None) -> dict[str, str] | str:
    """All build facts as a dict, or the one named by ``key`` (ValueError if unknown)."""

def label_components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """Face-connected components of a uint8 array of any rank (nonzero = foreground):
    int64 labels (largest C-order voxel index + 1 per component, 0 background), count."""

def _selftest_fail(kind: str) -> None:
    """Test hook: ``"error"`` raises ValueError, ``"panic"`` raises NativeError."""
