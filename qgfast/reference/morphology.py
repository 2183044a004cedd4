"""Morphology on batched label maps, in plain PyTorch: the oracle and CPU backend of
``qgfast.corrupt`` erosion/dilation/opening/closing.

Everything reduces to two grey filters over a structuring element (SE) with the volume
padded by 0 (background) — scipy.ndimage's ``border_value=0``:

    erosion:  a voxel keeps its label v iff every SE neighbour has label v (min = max = v),
              else it becomes 0. For a binary mask this is binary erosion exactly.
    dilation: a background voxel takes the largest label within its SE; foreground voxels
              keep theirs. For a binary mask this is binary dilation exactly.

So classes shrink and grow without one-hot; where two classes grow into the same voxel
the larger label wins (documented, tested).

Balls are applied as chords (line runs): a ball of radius r is the union, over offsets
(dy[, dz]) of the other axes, of runs along the last axis of half-length
h = ⌊√(r² − dy² [− dz²])⌋. The running max/min of every half-length 0..r along the last
axis is built incrementally (r + 1 passes), and the ball filter takes one lookup per chord:
~π r² (3D) or 2r + 1 (2D) lookups per voxel instead of the ball's ~4/3 π r³ taps. Cubes
are separable: one run per axis.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F

Footprint = Literal["ball", "cube"]


def chord_half_lengths(radius: int, other_dims: int) -> list[tuple[tuple[int, ...], int]]:
    """[(offset over the leading spatial axes, half-length along the last axis)] of a
    digital ball x² + y² [+ z²] ≤ r² (skimage ``disk``/``ball``)."""
    chords = []
    rng = range(-radius, radius + 1)
    offsets = [(a,) for a in rng] if other_dims == 1 else [(a, b) for a in rng for b in rng]
    for off in offsets:
        rest = radius * radius - sum(o * o for o in off)
        if rest >= 0:
            chords.append((off, math.isqrt(rest)))
    return chords


def footprint(radius: int, spatial_dims: int, shape: Footprint) -> torch.Tensor:
    """The SE as a bool tensor of side 2r + 1 (for tests and documentation)."""
    side = 2 * radius + 1
    if shape == "cube":
        return torch.ones((side,) * spatial_dims, dtype=torch.bool)
    grid = torch.meshgrid(*[torch.arange(-radius, radius + 1)] * spatial_dims, indexing="ij")
    return sum(g * g for g in grid) <= radius * radius


def _runs(xp: torch.Tensor, radius: int, width: int, op) -> list[torch.Tensor]:
    """Running op over windows [-h, h] along the last axis, for h = 0..radius; xp is padded
    by ``radius`` on that axis, results are cropped to ``width``."""
    r = radius
    out = [xp[..., r : r + width]]
    for h in range(1, r + 1):
        out.append(op(op(out[-1], xp[..., r + h : r + h + width]), xp[..., r - h : r - h + width]))
    return out


def _filter(x: torch.Tensor, radius: int, shape: Footprint, op) -> torch.Tensor:
    """Grey filter (op = torch.maximum or torch.minimum) of x [B, 1, *S] over the SE, with
    0 outside the volume."""
    if radius == 0:
        return x
    spatial = x.shape[2:]
    nd = len(spatial)
    r = radius
    xp = F.pad(x, (r, r) * nd, value=0)
    runs = _runs(xp, r, spatial[-1], op)
    if shape == "cube":
        out = runs[r]  # the full run along the last axis, then one run per other axis
        for axis in range(2, 2 + nd - 1):
            n = spatial[axis - 2]
            moved = out.movedim(axis, -1)
            out = _runs(moved, r, n, op)[r].movedim(-1, axis)
        return out
    out = None
    for off, h in chord_half_lengths(r, nd - 1):
        index = tuple(slice(r + o, r + o + n) for o, n in zip(off, spatial[:-1], strict=True))
        tap = runs[h][(..., *index, slice(None))]
        out = tap if out is None else op(out, tap)
    return out


def erode(x: torch.Tensor, radius: int, shape: Footprint = "ball") -> torch.Tensor:
    """Erosion of label map x [B, 1, *S] (integer) by one radius."""
    if radius == 0:
        return x.clone()
    lo = _filter(x, radius, shape, torch.minimum)
    hi = _filter(x, radius, shape, torch.maximum)
    return torch.where(lo == hi, x, torch.zeros_like(x))


def dilate(x: torch.Tensor, radius: int, shape: Footprint = "ball") -> torch.Tensor:
    """Dilation of label map x [B, 1, *S] (integer) by one radius."""
    if radius == 0:
        return x.clone()
    return torch.where(x == 0, _filter(x, radius, shape, torch.maximum), x)
