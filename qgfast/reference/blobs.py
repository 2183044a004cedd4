"""Painting balls into label maps, in plain PyTorch (oracle of ``qgfast.kernels.blobs``)."""

from __future__ import annotations

import torch


def paint_balls(
    x: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, fill: int
) -> torch.Tensor:
    """x [B, 1, *S]; centres [B, n, nd] voxel coordinates; radii [B, n] (−1: no ball).
    Voxels with Σ (coord − centre)² ≤ r² of any ball are set to ``fill``; returns a copy."""
    spatial = x.shape[2:]
    grids = torch.meshgrid(*[torch.arange(s, device=x.device) for s in spatial], indexing="ij")
    inside = torch.zeros((x.shape[0], *spatial), dtype=torch.bool, device=x.device)
    view = (x.shape[0],) + (1,) * len(spatial)
    for j in range(centres.shape[1]):
        dist2 = sum((g[None] - centres[:, j, a].view(view)) ** 2 for a, g in enumerate(grids))
        r = radii[:, j].view(view)
        inside |= (r >= 0) & (dist2 <= r * r)
    out = x.clone()
    out[:, 0][inside] = fill
    return out
