"""Triton painting of balls and axis-aligned ellipsoids into label maps: one program per
(sample, blob) walking only the blob's bounding box, so the work is proportional to the
blobs' volume, not the masks'. Overlapping blobs write the same fill value, so their order
does not matter. The inside test is the reference's exact integer form (int64); walking
only the box gives the reference's |d_a| ≤ r_a."""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _paint_kernel(
    p_out, p_centres, p_axes, fill, N_BLOBS, S0, S1, S2, N,
    IS_3D: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    i_b = tl.program_id(0)
    i_j = tl.program_id(1)
    blob = i_b.to(tl.int64) * N_BLOBS + i_j
    r0 = tl.load(p_axes + blob * 3).to(tl.int32)
    r1 = tl.load(p_axes + blob * 3 + 1).to(tl.int32)
    r2 = tl.load(p_axes + blob * 3 + 2).to(tl.int32)
    c0 = tl.load(p_centres + blob * 3).to(tl.int32)
    c1 = tl.load(p_centres + blob * 3 + 1).to(tl.int32)
    c2 = tl.load(p_centres + blob * 3 + 2).to(tl.int32)
    present = r1 >= 0  # the padded axis 0 of a 2D blob is 0, never -1
    r0 = tl.maximum(r0, 0)
    r1 = tl.maximum(r1, 0)
    r2 = tl.maximum(r2, 0)
    s0 = 2 * r0 + 1
    s1 = 2 * r1 + 1
    s2 = 2 * r2 + 1
    # q = max(r², 1): a zero semi-axis (and 2D's padded axis 0) leaves the others' ellipse
    q0 = tl.maximum(r0 * r0, 1).to(tl.int64)
    q1 = tl.maximum(r1 * r1, 1).to(tl.int64)
    q2 = tl.maximum(r2 * r2, 1).to(tl.int64)
    volume = tl.where(present, s0 * s1 * s2, 0)  # no blob, no work
    for start in range(0, volume, BLOCK):
        o = start + tl.arange(0, BLOCK)
        dk = o % s2 - r2
        dj = (o // s2) % s1 - r1
        di = o // (s1 * s2) - r0
        i = c0 + di
        j = c1 + dj
        k = c2 + dk
        lhs = (di * di).to(tl.int64) * q1 * q2 + (dj * dj).to(tl.int64) * q0 * q2
        lhs += (dk * dk).to(tl.int64) * q0 * q1
        inside = (o < volume) & (lhs <= q0 * q1 * q2)
        inside = inside & (i >= 0) & (i < S0) & (j >= 0) & (j < S1) & (k >= 0) & (k < S2)
        off = i_b.to(tl.int64) * N + (i.to(tl.int64) * S1 + j) * S2 + k
        tl.store(
            p_out + off, tl.full((BLOCK,), fill, tl.int32).to(p_out.dtype.element_ty), mask=inside
        )


def paint_blobs(
    x: torch.Tensor, centres: torch.Tensor, axes: torch.Tensor, fill: int, max_axis: int
) -> torch.Tensor:
    """Same contract as ``qgfast.reference.blobs.paint_blobs``; returns a painted copy.
    ``max_axis`` bounds every semi-axis (it sizes the block)."""
    out = x.contiguous().clone()
    b, n_blobs = axes.shape[:2]
    if b == 0 or n_blobs == 0:
        return out
    spatial = x.shape[2:]
    is_3d = len(spatial) == 3
    s0, s1, s2 = spatial if is_3d else (1, *spatial)
    if not is_3d:  # a leading axis of size 1 and semi-axis 0
        centres = torch.cat([torch.zeros_like(centres[..., :1]), centres], dim=-1)
        axes = torch.cat([torch.zeros_like(axes[..., :1]), axes], dim=-1)
    side = 2 * max_axis + 1
    block = min(1024, triton.next_power_of_2(side ** (3 if is_3d else 2)))
    _paint_kernel[(b, n_blobs)](
        out, centres.to(torch.int32).contiguous(), axes.to(torch.int32).contiguous(), fill,
        n_blobs, s0, s1, s2, s0 * s1 * s2, IS_3D=is_3d, BLOCK=block,
    )  # fmt: skip
    return out
