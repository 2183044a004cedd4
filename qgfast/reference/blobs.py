"""Painting balls and axis-aligned ellipsoids into label maps, in plain PyTorch (oracle of
``qgfast.kernels.blobs``)."""

from __future__ import annotations

import math

import torch


def paint_blobs(
    x: torch.Tensor, centres: torch.Tensor, axes: torch.Tensor, fill: int
) -> torch.Tensor:
    """x [B, 1, *S]; centres [B, n, nd] voxel coordinates; axes [B, n, nd] integer semi-axes
    (first axis −1: no blob). A voxel at offset d from a centre is inside when |d_a| ≤ r_a on
    every axis and Σ_a d_a² · Π_{b≠a} q_b ≤ Π_a q_a with q_a = max(r_a², 1) — the ellipsoid
    Σ (d_a / r_a)² ≤ 1 in exact integer arithmetic (all r equal: the digital ball
    Σ d² ≤ r²). A zero semi-axis makes the blob flat: offset 0 along that axis, an
    ellipse/ellipsoid in the others (all zero: one voxel). Inside voxels are set to
    ``fill``; returns a copy.

    Each blob is tested over the offsets of one box of side 2·R + 1 (R the largest semi-axis
    of the call) around its centre, so the work follows the blobs' size, not the volume's."""
    out = x.clone(memory_format=torch.contiguous_format)
    b, spatial = x.shape[0], x.shape[2:]
    nd = len(spatial)
    present = axes[..., 0] >= 0  # [B, n]
    if not bool(present.any()):  # also no blob slot at all
        return out
    reach = int(axes.max())
    side = torch.arange(-reach, reach + 1, device=x.device)
    offsets = torch.stack(torch.meshgrid(*[side] * nd, indexing="ij"), -1).view(-1, nd)  # [W, nd]
    r = axes.to(torch.int64).clamp_min(0)  # [B, n, nd]
    q = (r * r).clamp_min(1)
    whole = q.prod(-1, keepdim=True)  # [B, n, 1]
    # Σ_a d_a² · Π_{b≠a} q_b, the product of the others exactly whole / q_a
    lhs = sum(offsets[:, a] ** 2 * (whole // q[..., a : a + 1]) for a in range(nd))  # [B, n, W]
    in_box = (offsets.abs() <= r[:, :, None, :]).all(-1)
    inside = (lhs <= whole) & in_box & present[..., None]
    pos = centres.to(torch.int64)[:, :, None, :] + offsets  # [B, n, W, nd]
    sizes = torch.tensor(spatial, device=x.device)
    inside &= ((pos >= 0) & (pos < sizes)).all(-1)
    strides = torch.tensor([math.prod(spatial[a + 1 :]) for a in range(nd)], device=x.device)
    linear = (pos * strides).sum(-1)  # [B, n, W]
    rows = torch.arange(b, device=x.device)[:, None, None].expand_as(linear)
    out.view(b, -1)[rows[inside], linear[inside]] = fill
    return out
