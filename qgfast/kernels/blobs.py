"""Triton painting of balls into label maps: one program per (sample, blob) walking only the
blob's bounding box, so the work is proportional to the blobs' volume, not the masks'.
Overlapping blobs write the same fill value, so their order does not matter."""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _paint_kernel(
    p_out, p_centres, p_radii, fill, N_BLOBS, S0, S1, S2, N,
    IS_3D: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    i_b = tl.program_id(0)
    i_j = tl.program_id(1)
    blob = i_b.to(tl.int64) * N_BLOBS + i_j
    r = tl.load(p_radii + blob).to(tl.int32)
    c0 = tl.load(p_centres + blob * 3).to(tl.int32)
    c1 = tl.load(p_centres + blob * 3 + 1).to(tl.int32)
    c2 = tl.load(p_centres + blob * 3 + 2).to(tl.int32)
    side = 2 * tl.maximum(r, 0) + 1
    depth = side if IS_3D else 1
    volume = tl.where(r >= 0, side * side * depth, 0)  # r = -1: no blob, no work
    for start in range(0, volume, BLOCK):
        o = start + tl.arange(0, BLOCK)
        dk = o % side - r
        dj = (o // side) % side - r
        di = o // (side * side) - r if IS_3D else o * 0
        i = c0 + di
        j = c1 + dj
        k = c2 + dk
        inside = (o < volume) & (di * di + dj * dj + dk * dk <= r * r)
        inside = inside & (i >= 0) & (i < S0) & (j >= 0) & (j < S1) & (k >= 0) & (k < S2)
        off = i_b.to(tl.int64) * N + (i.to(tl.int64) * S1 + j) * S2 + k
        tl.store(
            p_out + off, tl.full((BLOCK,), fill, tl.int32).to(p_out.dtype.element_ty), mask=inside
        )


def paint_balls(
    x: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, fill: int, max_radius: int
) -> torch.Tensor:
    """Same contract as ``qgfast.reference.blobs.paint_balls``; returns a painted copy."""
    out = x.contiguous().clone()
    b, n_blobs = radii.shape
    if b == 0 or n_blobs == 0:
        return out
    spatial = x.shape[2:]
    is_3d = len(spatial) == 3
    s0, s1, s2 = spatial if is_3d else (1, *spatial)
    c3 = centres if is_3d else torch.cat([torch.zeros_like(centres[..., :1]), centres], dim=-1)
    side = 2 * max_radius + 1
    block = min(1024, triton.next_power_of_2(side ** (3 if is_3d else 2)))
    _paint_kernel[(b, n_blobs)](
        out, c3.to(torch.int32).contiguous(), radii.to(torch.int32).contiguous(), fill,
        n_blobs, s0, s1, s2, s0 * s1 * s2, IS_3D=is_3d, BLOCK=block,
    )  # fmt: skip
    return out
