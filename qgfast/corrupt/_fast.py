"""When a batch of masks takes a native CPU fast path, and the array it hands over."""

from __future__ import annotations

from types import ModuleType

import numpy as np
import torch

from qgfast.backend import cpu_fast_path, native_extension


def native_u8(masks: torch.Tensor) -> tuple[ModuleType, np.ndarray] | None:
    """``(qgfast._native, the masks as a C-contiguous uint8 [B, *S] array)`` for uint8
    masks [B, 1, *S] on the CPU with no backend forced and the extension built; else None
    (the caller runs its PyTorch reference)."""
    native = native_extension()
    if native is None or masks.dtype != torch.uint8 or not cpu_fast_path(masks):
        return None
    return native, masks.reshape(masks.shape[0], *masks.shape[2:]).contiguous().numpy()
