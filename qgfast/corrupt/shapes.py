"""Shape replacements (METHOD.md "blob"): a Gaussian blob with the foreground's centroid and
per-axis spread, thresholded to keep the original area, and a disc/ball of the same area at
the centroid. Binary semantics; an empty mask stays empty."""

from __future__ import annotations

import math

import torch

from qgfast.corrupt.geometry import voxel_coords
from qgfast.corrupt.morphology import check_masks


def moments(masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Voxel coordinates [N, nd], area [B], centroid [B, nd], per-axis std [B, nd]."""
    pts = voxel_coords(masks.shape[2:], masks.device)
    w = (masks.reshape(masks.shape[0], -1) != 0).to(torch.float64)
    area = w.sum(1)
    mean = (w @ pts) / area.clamp_min(1)[:, None]
    var = (w @ (pts * pts)) / area.clamp_min(1)[:, None] - mean * mean
    return pts, area, mean, var.clamp_min(0).sqrt()


def gaussian_blob(masks: torch.Tensor, spread: float = 1.0) -> torch.Tensor:
    """Voxels of the largest exp(−½ Σ ((x − μ)/(spread·σ))²) values, exactly as many as the
    mask has foreground voxels (ties at the cut broken by voxel index)."""
    check_masks(masks)
    pts, area, mean, std = moments(masks)
    scale = (spread * std).clamp_min(0.5)  # a one-voxel-thick axis still gets a spread
    z = ((pts[None] - mean[:, None]) / scale[:, None]) ** 2
    field = torch.exp(-0.5 * z.sum(-1))  # [B, N]
    order = field.argsort(dim=1, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))
    keep = rank < area.to(torch.int64)[:, None]
    return keep.view(masks.shape).to(masks.dtype)


def circular_blob(masks: torch.Tensor) -> torch.Tensor:
    """A disc (2D) or ball (3D) at the centroid with the mask's area: r = √(A/π) or
    ∛(3A/4π)."""
    check_masks(masks)
    pts, area, mean, _ = moments(masks)
    nd = masks.dim() - 2
    radius = (area / math.pi).sqrt() if nd == 2 else (3 * area / (4 * math.pi)).pow(1 / 3)
    dist2 = ((pts[None] - mean[:, None]) ** 2).sum(-1)
    keep = (dist2 <= (radius * radius)[:, None]) & (area[:, None] > 0)
    return keep.view(masks.shape).to(masks.dtype)
