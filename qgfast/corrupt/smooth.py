"""Boundary corruptions (docs/method.md): Gaussian smoothing then threshold, and the jagged band.
Binary semantics: nonzero is foreground, outputs are 0/1 in the input's dtype."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from qgfast.backend import cpu_fast_path, native_extension
from qgfast.corrupt import rng
from qgfast.corrupt._checks import check_masks
from qgfast.corrupt._fast import native_u8
from qgfast.corrupt.morphology import dilate, erode


def opencv_sigma(kernel_size: int) -> float:
    """OpenCV's sigma for ``GaussianBlur(..., (k, k), 0)``, which the authors used."""
    return 0.3 * ((kernel_size - 1) * 0.5 - 1) + 0.8


# Axes up to this long are filtered as one dense matrix product (BLAS beats a one-channel
# convolution by ~10x on a CPU at 224 and stays ahead to about here); longer ones convolve.
MATRIX_MAX = 512


def _taps(kernel_size: int, sigma: float, dtype: torch.dtype, device: torch.device):
    if kernel_size % 2 == 0 or kernel_size < 1:
        raise ValueError(f"kernel_size must be odd and positive, got {kernel_size}")
    half = kernel_size // 2
    t = torch.arange(-half, half + 1, dtype=dtype, device=device)
    w = torch.exp(-(t * t) / (2 * sigma * sigma))
    return w / w.sum()


def _filter_last_axis(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Convolve the last axis of x [..., L] with the odd taps w, reflect-101 borders."""
    half = w.shape[0] // 2
    size = x.shape[-1]
    mode = "reflect" if size > half else "replicate"  # reflect needs size > pad
    rows = x.reshape(-1, 1, size)
    return F.conv1d(F.pad(rows, (half, half), mode=mode), w.view(1, 1, -1)).view(x.shape)


def gaussian_filter(x: torch.Tensor, kernel_size: int, sigma: float) -> torch.Tensor:
    """Separable Gaussian filter of float x [B, 1, *S] with reflect-101 borders (OpenCV's
    default), the kernel normalised to sum 1.

    float32 CPU tensors (unless a backend is forced) take ``qgfast._native``'s banded filter:
    k multiply-adds an output value where the matrix product below costs one per voxel of
    the axis; the two agree to float32 rounding (tested), not bit for bit."""
    w = _taps(kernel_size, sigma, x.dtype, x.device)
    native = native_extension()
    if native is not None and x.dtype == torch.float32 and cpu_fast_path(x) and x.dim() >= 3:
        values = x.reshape(-1, *x.shape[2:]).contiguous().numpy()
        return torch.from_numpy(native.gaussian_filter_f32(values, w.numpy())).view(x.shape)
    shape = x.shape
    matrices: dict[int, torch.Tensor] = {}  # by axis length: a square image builds one
    for axis in range(2, x.dim()):
        size = shape[axis]
        if size > MATRIX_MAX:
            x = _filter_last_axis(x.movedim(axis, -1).contiguous(), w).movedim(-1, axis)
            continue
        # the filter with its borders is linear in the row: row @ (filter of the identity)
        if size not in matrices:
            eye = torch.eye(size, dtype=x.dtype, device=x.device)
            matrices[size] = _filter_last_axis(eye, w)
        matrix = matrices[size]
        pre, post = math.prod(shape[:axis]), math.prod(shape[axis + 1 :])
        if post == 1:
            x = (x.reshape(pre, size) @ matrix).view(shape)
        else:
            x = (matrix.T @ x.reshape(pre, size, post)).view(shape)
    return x.contiguous()


def gaussian_smooth(masks: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Blur the 0/1 mask with OpenCV's Gaussian of side ``kernel_size``, keep > 0.5."""
    check_masks(masks)
    if (fast := native_u8(masks)) is not None:
        # the native filter's steps around it fused, sample by sample: the same voxels
        native, volumes = fast
        taps = _taps(kernel_size, opencv_sigma(kernel_size), torch.float32, masks.device)
        out = native.smooth_threshold_u8(volumes, taps.numpy())
        return torch.from_numpy(out).view(masks.shape)
    x = (masks != 0).to(torch.float32)
    blurred = gaussian_filter(x, kernel_size, opencv_sigma(kernel_size))
    return (blurred > 0.5).to(masks.dtype)


def jagged_band(masks: torch.Tensor, kernel_size: int, *, seed: int = 0) -> torch.Tensor:
    """Inside the band between the dilation and the erosion by a k × k (× k) cube, every
    voxel is redrawn foreground with probability 0.5; outside it nothing changes."""
    check_masks(masks)
    if kernel_size % 2 == 0 or kernel_size < 1:
        raise ValueError(f"kernel_size must be odd and positive, got {kernel_size}")
    fg = (masks != 0).to(torch.uint8)
    r = kernel_size // 2
    inner, outer = erode(fg, r, shape="cube"), dilate(fg, r, shape="cube")
    b = masks.shape[0]
    voxels = torch.arange(masks[0].numel(), device=masks.device)[None, :]
    coin = rng.below(seed, rng.sample_ids(b, masks.device), rng.STREAM_NOISE, voxels, 0.5)
    # erosion ⊆ mask ⊆ dilation: the band (dilation and not erosion) takes the coin, the
    # rest keeps the mask, which equals both there
    out = inner | (outer & coin.view(masks.shape).to(torch.uint8))
    return out.to(masks.dtype)
