"""Triton erosion/dilation of label maps by balls or cubes (chord decomposition).

Two sweeps, each one launch for the whole batch (per-sample radii included):

1. ``_runs_kernel``: for every voxel and every half-length h = 0..R_MAX, the max (and, for
   erosion, the min) of the label over [k − h, k + h] along the last axis, with 0 outside
   the volume, built incrementally (two loads per h, from cache) and written as planes
   runs[h] (B·N each).
2. ``_chords_kernel``: a ball of radius r is the union of chords along the last axis at
   offsets (di, dj) of the leading axes with half-length h = ⌊√(r² − di² − dj²)⌋ (a cube:
   every offset in [−r, r]², h = r). Each output voxel reduces runs[h] at its ~π r² chord
   offsets (3D; 2r + 1 in 2D) — one lookup per chord instead of one per ball voxel.

Output: dilation = where(x == 0, max, x); erosion = where(min == max, x, 0) — exactly the
reference semantics (``qgfast.reference.morphology``). Offsets are int64.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

_BIG = tl.constexpr(2**31 - 1)  # identity of min for int32 accumulators


@triton.jit
def _runs_kernel(
    p_x, p_rmax, p_rmin, N, S2, R_MAX, PLANE,
    WITH_MIN: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    i_n = tl.program_id(0)
    i_b = tl.program_id(1)
    o_n = i_n * BLOCK + tl.arange(0, BLOCK)
    m_n = o_n < N
    k = o_n % S2
    base = i_b.to(tl.int64) * N + o_n.to(tl.int64)
    b_x = tl.load(p_x + base, mask=m_n, other=0).to(tl.int32)
    b_max = b_x
    b_min = b_x
    tl.store(p_rmax + base, b_x.to(p_rmax.dtype.element_ty), mask=m_n)
    if WITH_MIN:
        tl.store(p_rmin + base, b_x.to(p_rmin.dtype.element_ty), mask=m_n)
    for h in range(1, R_MAX + 1):
        # outside the volume counts as 0 (scipy's border_value=0)
        b_r = tl.load(p_x + base + h, mask=m_n & (k + h < S2), other=0).to(tl.int32)
        b_l = tl.load(p_x + base - h, mask=m_n & (k - h >= 0), other=0).to(tl.int32)
        b_max = tl.maximum(b_max, tl.maximum(b_r, b_l))
        tl.store(p_rmax + h * PLANE + base, b_max.to(p_rmax.dtype.element_ty), mask=m_n)
        if WITH_MIN:
            b_min = tl.minimum(b_min, tl.minimum(b_r, b_l))
            tl.store(p_rmin + h * PLANE + base, b_min.to(p_rmin.dtype.element_ty), mask=m_n)


@triton.jit
def _chords_kernel(
    p_x, p_rmax, p_rmin, p_radius, p_out, N, S0, S1, S2, R_MAX, PLANE,
    ERODE: tl.constexpr, BALL: tl.constexpr, IS_3D: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    i_n = tl.program_id(0)
    i_b = tl.program_id(1)
    o_n = i_n * BLOCK + tl.arange(0, BLOCK)
    m_n = o_n < N
    k = o_n % S2
    j = (o_n // S2) % S1
    i = o_n // (S2 * S1)
    r = tl.load(p_radius + i_b)
    base_b = i_b.to(tl.int64) * N
    b_x = tl.load(p_x + base_b + o_n.to(tl.int64), mask=m_n, other=0).to(tl.int32)
    b_max = tl.zeros_like(b_x)
    b_min = tl.full(b_x.shape, _BIG, tl.int32)
    if IS_3D:
        di_lo = -R_MAX
        di_hi = R_MAX + 1
    else:
        di_lo = 0
        di_hi = 1
    for di in range(di_lo, di_hi):
        for dj in range(-R_MAX, R_MAX + 1):
            # per-voxel blocks (not scalars): the chord test then masks loads directly
            zero = tl.zeros_like(o_n)
            if BALL:
                rest = zero + (r * r - di * di - dj * dj)
                chord = rest >= 0
                # exact ⌊√rest⌋ for the small integers involved: rest + 0.5 < (h + 1)²
                h = tl.sqrt(tl.maximum(rest, 0).to(tl.float32) + 0.5).to(tl.int32)
            else:
                h = zero + r
                chord = (zero + di <= h) & (zero + di >= -h) & (zero + dj <= h) & (zero + dj >= -h)
            ii = i + di
            jj = j + dj
            inside = m_n & chord & (ii >= 0) & (ii < S0) & (jj >= 0) & (jj < S1)
            off = base_b + (ii.to(tl.int64) * S1 + jj) * S2 + k + h.to(tl.int64) * PLANE
            b_v = tl.load(p_rmax + off, mask=inside, other=0).to(tl.int32)
            b_max = tl.maximum(b_max, b_v)
            if ERODE:
                b_w = tl.load(p_rmin + off, mask=inside, other=0).to(tl.int32)
                b_min = tl.minimum(b_min, tl.where(chord, b_w, _BIG))
    b_out = tl.where(b_min == b_max, b_x, 0) if ERODE else tl.where(b_x == 0, b_max, b_x)
    tl.store(p_out + base_b + o_n.to(tl.int64), b_out.to(p_out.dtype.element_ty), mask=m_n)


def morph(x: torch.Tensor, radius: torch.Tensor, shape: str, erode: bool) -> torch.Tensor:
    """Erosion or dilation of label maps x [B, 1, *S] (integer, 2D or 3D) by per-sample
    radii [B] (int32 on x's device); validated by the caller."""
    b = x.shape[0]
    if b > 65535:  # CUDA's limit on the second grid axis, which indexes the sample
        raise ValueError(f"batch of {b} exceeds 65535 samples per launch; split it into chunks")
    spatial = x.shape[2:]
    s0, s1, s2 = (1, *spatial) if len(spatial) == 2 else spatial
    n = s0 * s1 * s2
    xc = x.contiguous()
    r_max = int(radius.max().item()) if b else 0
    plane = b * n
    rmax = torch.empty((r_max + 1, b, n), dtype=x.dtype, device=x.device)
    rmin = torch.empty_like(rmax) if erode else rmax
    block = min(1024, triton.next_power_of_2(n))
    grid = (triton.cdiv(n, block), b)
    _runs_kernel[grid](xc, rmax, rmin, n, s2, r_max, plane, WITH_MIN=erode, BLOCK=block)
    out = torch.empty_like(xc)
    _chords_kernel[grid](
        xc, rmax, rmin, radius, out, n, s0, s1, s2, r_max, plane,
        ERODE=erode, BALL=shape == "ball", IS_3D=len(spatial) == 3, BLOCK=block,
    )  # fmt: skip
    return out
