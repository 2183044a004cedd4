"""Painting balls and axis-aligned ellipsoids into label maps, in plain PyTorch (oracle of
``qgfast.kernels.blobs``)."""

from __future__ import annotations

import torch


def paint_blobs(
    x: torch.Tensor, centres: torch.Tensor, axes: torch.Tensor, fill: int
) -> torch.Tensor:
    """x [B, 1, *S]; centres [B, n, nd] voxel coordinates; axes [B, n, nd] integer semi-axes
    (first axis −1: no blob). A voxel at offset d from a centre is inside when
    Σ_a d_a² · Π_{b≠a} r_b² ≤ Π_a r_a² — the ellipsoid Σ (d_a / r_a)² ≤ 1 in exact integer
    arithmetic (all r equal: the digital ball Σ d² ≤ r²; a zero semi-axis: a flat blob).
    Inside voxels are set to ``fill``; returns a copy."""
    spatial = x.shape[2:]
    grids = torch.meshgrid(*[torch.arange(s, device=x.device) for s in spatial], indexing="ij")
    inside = torch.zeros((x.shape[0], *spatial), dtype=torch.bool, device=x.device)
    view = (x.shape[0],) + (1,) * len(spatial)
    nd = len(spatial)
    for j in range(centres.shape[1]):
        q = [(axes[:, j, a].to(torch.int64) ** 2).view(view) for a in range(nd)]
        whole = q[0].clone()
        for a in range(1, nd):
            whole = whole * q[a]
        lhs = torch.zeros_like(inside, dtype=torch.int64)
        for a, g in enumerate(grids):
            others = torch.ones_like(q[0])
            for b in range(nd):
                if b != a:
                    others = others * q[b]
            lhs = lhs + (g[None] - centres[:, j, a].view(view)) ** 2 * others
        present = (axes[:, j, 0] >= 0).view(view)
        inside |= present & (lhs <= whole)
    out = x.clone()
    out[:, 0][inside] = fill
    return out
