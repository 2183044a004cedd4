"""Type stub for the Rust extension ``qgfast._native`` (rust/src/lib.rs). Keep in sync."""

import numpy as np

__version__: str

class NativeError(RuntimeError):
    """An internal failure (a caught panic) inside qgfast's native extension."""

def build_info(key: str | None = None) -> dict[str, str] | str:
    """All build facts as a dict, or the one named by ``key`` (ValueError if unknown)."""

def label_components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """Face-connected components of a uint8 array of any rank (nonzero = foreground):
    int64 labels (largest C-order voxel index + 1 per component, 0 background), count."""

def _selftest_fail(kind: str) -> None:
    """Test hook: ``"error"`` raises ValueError, ``"panic"`` raises NativeError."""
