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

class VolumeStreamCore:
    """The Rust half of ``qgfast.data.VolumeStream``: cases, config, and the decoded-volume
    cache that outlives epochs."""

    def __init__(
        self,
        images: list[list[str]],
        labels: list[str | None],
        labeled: list[int],
        unlabeled: list[int],
        config: dict[str, Any],
    ) -> None: ...
    def start(self, epoch: int) -> EpochIterator:
        """Run one epoch on worker threads."""
    def stats(self) -> dict[str, Any]:
        """{"cache_hits", "cache_misses", "cache_bytes", "skipped": [(case, reason)]}"""

class EpochIterator:
    """Batches of one epoch in order: {"labeled": {...}, "unlabeled": {...}}."""

    n_batches: int
    def __iter__(self) -> EpochIterator: ...
    def __next__(self) -> dict[str, dict[str, np.ndarray]]: ...
    def close(self) -> None:
        """Stop and join the worker threads now."""

class BatchBuffer:
    """The base object of a batch array: owns its memory and hands it back to the stream
    for reuse when the array is gone. Not constructible from Python."""

def build_info(key: str | None = None) -> dict[str, str] | str:
    """All build facts as a dict, or the one named by ``key`` (ValueError if unknown)."""

def label_components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """Face-connected components of a uint8 array of any rank (nonzero = foreground):
    int64 labels (largest C-order voxel index + 1 per component, 0 background), count."""

def counter_uniforms(
    seed: int, stream: int, samples: np.ndarray, counters: np.ndarray
) -> np.ndarray:
    """float64 [len(samples), len(counters)]: ``qgfast.corrupt.rng.uniform`` of the int64
    sample ids (a column) against the int64 counters (a row); ``seed`` is its low 32 bits."""

def gather_nearest_u8(masks: np.ndarray, axes: list[list[np.ndarray]]) -> np.ndarray:
    """uint8 [B, *S]: ``qgfast.corrupt.geometry.gather_nearest`` of uint8 masks [B, *S],
    ``axes[a]`` the float64/float32 terms (broadcastable to [B, *S]) of axis a's source."""

def shape_fill_u8(
    masks: np.ndarray, rays: list[tuple[float, float]] | None = None, cos_half: float = 0.0
) -> np.ndarray:
    """uint8 [B, H, W] of 0/1: each non-empty sample of the masks [B, H, W] (non-zero =
    foreground) replaced by its filled convex hull (``rays`` None) or star polygon (``rays``
    the rays' (cos, sin), ``cos_half`` cos(π/n)); ``qgfast.corrupt.approx``'s reference."""

def _selftest_fail(kind: str) -> None:
    """Test hook: ``"error"`` raises ValueError, ``"panic"`` raises NativeError."""

def write_volume_stats(path: str | PathLike[str], role: str, max_bytes: int = ...) -> str:
    """Write ``<path>.qgstats`` beside the uncompressed NIfTI ``path`` ("image": per-channel
    value counts or z-score maps; "label": the checked foreground list), so a stream crops it
    reading only each patch's bytes; its path."""
