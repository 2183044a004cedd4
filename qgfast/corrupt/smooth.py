"""Boundary corruptions (METHOD.md): Gaussian smoothing then threshold, and the jagged band.
Binary semantics: nonzero is foreground, outputs are 0/1 in the input's dtype."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from qgfast.corrupt import rng
from qgfast.corrupt.morphology import check_masks, dilate, erode


def opencv_sigma(kernel_size: int) -> float:
    """OpenCV's sigma for ``GaussianBlur(..., (k, k), 0)``, which the authors used."""
    return 0.3 * ((kernel_size - 1) * 0.5 - 1) + 0.8


def gaussian_filter(x: torch.Tensor, kernel_size: int, sigma: float) -> torch.Tensor:
    """Separable Gaussian filter of float x [B, 1, *S] with reflect-101 borders (OpenCV's
    default), the kernel normalised to sum 1."""
    if kernel_size % 2 == 0 or kernel_size < 1:
        raise ValueError(f"kernel_size must be odd and positive, got {kernel_size}")
    half = kernel_size // 2
    t = torch.arange(-half, half + 1, dtype=x.dtype, device=x.device)
    w = torch.exp(-(t * t) / (2 * sigma * sigma))
    w = w / w.sum()
    nd = x.dim() - 2
    conv = F.conv2d if nd == 2 else F.conv3d
    for axis in range(nd):
        shape = [1, 1] + [1] * nd
        shape[2 + axis] = kernel_size
        pad = [0, 0] * nd
        pad[2 * (nd - 1 - axis)] = pad[2 * (nd - 1 - axis) + 1] = half
        size = x.shape[2 + axis]
        mode = "reflect" if size > half else "replicate"  # reflect needs size > pad
        x = conv(F.pad(x, pad, mode=mode), w.view(shape))
    return x


def gaussian_smooth(masks: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Blur the 0/1 mask with OpenCV's Gaussian of side ``kernel_size``, keep > 0.5."""
    check_masks(masks)
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
    band = dilate(fg, r, shape="cube") != erode(fg, r, shape="cube")
    b = masks.shape[0]
    voxels = torch.arange(masks[0].numel(), device=masks.device)[None, :]
    coin = rng.uniform(seed, rng.sample_ids(b, masks.device), rng.STREAM_NOISE, voxels) < 0.5
    out = torch.where(band, coin.view(masks.shape), fg.bool())
    return out.to(masks.dtype)
