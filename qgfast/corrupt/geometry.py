"""Geometric corruptions (docs/method.md): shift, scale and rotation about the foreground's
centroid, and a random affine about the volume's centre, all nearest-neighbour remaps of the
label map (labels are preserved; what leaves the volume is lost, what enters is background).

The forward map of a voxel x is y = M (x − c) + c + t; each output voxel y reads the input
at round(M⁻¹ (y − c − t) + c). Per-sample parameters come from ``qgfast.corrupt.rng``. In 3D
a rotation turns about an axis drawn uniformly on the sphere.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from qgfast.backend import cpu_fast_path, native_extension
from qgfast.corrupt import rng
from qgfast.corrupt._checks import check_masks
from qgfast.corrupt._fast import native_u8
from qgfast.corrupt.blocking import blocks, take


def _draw(seed: int, b: int, device: torch.device, counters: int) -> torch.Tensor:
    """[B, counters] uniforms of the affine stream."""
    ids = rng.sample_ids(b, device)
    return rng.uniform(seed, ids, rng.STREAM_AFFINE, torch.arange(counters, device=device)[None, :])


def axis_view(batch: int, nd: int, axis: int, size: int) -> tuple[int, ...]:
    """The shape [batch, 1, .., size, .., 1] of a per-axis quantity broadcast to [B, *S]."""
    return (batch, *(size if b == axis else 1 for b in range(nd)))


def axis_coords(spatial: tuple[int, ...], device: torch.device) -> list[torch.Tensor]:
    """Per axis a, the coordinates 0..S_a − 1 (float64) shaped ``axis_view(1, ...)``:
    separable coordinate arithmetic stays on small tensors until it meets another axis."""
    nd = len(spatial)
    return [
        torch.arange(s, device=device, dtype=torch.float64).view(axis_view(1, nd, a, s))
        for a, s in enumerate(spatial)
    ]


def axis_moments(masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Foreground count [B], Σ x_a [B, nd] and Σ x_a² [B, nd] over the foreground (float64),
    from each axis's profile (the count per coordinate), not a pass per voxel and axis."""
    spatial = masks.shape[2:]
    first, second = [], []
    for profile, size in zip(axis_profiles(masks), spatial, strict=True):
        profile = profile.to(torch.float64)  # [B, S_a]: integers, so the products are exact
        x = torch.arange(size, device=masks.device, dtype=torch.float64)
        first.append(profile @ x)
        second.append(profile @ (x * x))
    count = profile.sum(1)  # every axis's profile sums to the count; the last one will do
    return count, torch.stack(first, 1), torch.stack(second, 1)


def cross_moments(masks: torch.Tensor) -> torch.Tensor:
    """[B, pairs] int64: Σ x_i·x_j over the foreground for the axis pairs (0, 1), (0, 2),
    (1, 2) that exist; ``qgfast._native`` counts them in one pass on a CPU (the same
    integers)."""
    b, spatial = masks.shape[0], masks.shape[2:]
    nd = len(spatial)
    if (fast := native_u8(masks)) is not None:
        native, volumes = fast
        return torch.from_numpy(native.cross_moments_u8(volumes))
    fg = (masks.reshape(b, *spatial) != 0).to(torch.int64)
    grids = [g.to(torch.int64) for g in axis_coords(spatial, masks.device)]
    sums = []
    for i in range(nd):
        for j in range(i + 1, nd):
            # Σ over the plane (i, j) of its count times x_i·x_j (int64: exact)
            others = [1 + a for a in range(nd) if a not in (i, j)]
            plane = fg.sum(others, keepdim=True) if others else fg
            sums.append((plane * grids[i] * grids[j]).flatten(1).sum(1))
    if not sums:
        return torch.zeros(b, 0, dtype=torch.int64, device=masks.device)
    return torch.stack(sums, 1)


def axis_profiles(masks: torch.Tensor) -> list[torch.Tensor]:
    """Per axis a, the foreground count at every coordinate [B, S_a] (int64). CPU tensors
    (unless a backend is forced) count in one pass in ``qgfast._native``; the counts are
    integers, so both paths agree exactly."""
    b, spatial = masks.shape[0], masks.shape[2:]
    if (fast := native_u8(masks)) is not None:
        native, volumes = fast
        return [torch.from_numpy(p) for p in native.axis_profiles_u8(volumes)]
    fg = (masks.reshape(b, *spatial) != 0).to(torch.int64)
    nd = len(spatial)
    return [fg.sum([d + 1 for d in range(nd) if d != a]) if nd > 1 else fg for a in range(nd)]


def centroid(masks: torch.Tensor) -> torch.Tensor:
    """[B, nd] mean foreground coordinate (the volume's centre for an empty mask)."""
    spatial = masks.shape[2:]
    count, first, _ = axis_moments(masks)
    centre = torch.tensor([(s - 1) / 2 for s in spatial], device=masks.device, dtype=torch.float64)
    mean = first / count.clamp_min(1)[:, None]
    return torch.where(count[:, None] > 0, mean, centre)


def gather_nearest(masks: torch.Tensor, coords: Sequence[Sequence[torch.Tensor]]) -> torch.Tensor:
    """output[b, x] = masks[b, round(src(b, x))], 0 where that falls outside. The source
    coordinate along axis a is the sum, in order, of the float64 terms ``coords[a]``, each
    broadcastable to [B, *S]: a separable or affine map passes small per-axis terms and
    nothing full-size exists beyond one block (``blocking``) of the output at a time.

    CPU tensors (unless ``QGFAST_BACKEND=reference``): a separable map gathers one NumPy
    ``take`` per axis; any other map of uint8 masks runs in one pass in ``qgfast._native``.
    Both are bit-identical to the blocked torch gather below (tested)."""
    b, spatial = masks.shape[0], masks.shape[2:]
    if cpu_fast_path(masks):
        if _separable(coords, len(spatial)):
            return _gather_separable(masks, coords)
        native = _native_gather(masks, coords)
        if native is not None:
            return native
    flat = masks.reshape(b, -1)
    out = torch.empty((b, *spatial), dtype=masks.dtype, device=masks.device)
    for part in blocks(spatial[0], b * math.prod(spatial[1:]), masks.device):
        linear, valid = torch.zeros((), dtype=torch.int64, device=masks.device), True
        stride = 1
        for a in reversed(range(len(spatial))):
            idx = _rounded_source([take(t, 1, part) for t in coords[a]])
            valid = (idx >= 0) & (idx <= spatial[a] - 1) & valid
            linear = idx.clamp_(0, spatial[a] - 1).to(torch.int64).mul_(stride) + linear
            stride *= spatial[a]
        shape = (b, part.stop - part.start, *spatial[1:])
        picked = flat.gather(1, linear.expand(shape).reshape(b, -1)).view(shape)
        out[:, part] = picked.mul_(torch.as_tensor(valid).expand(shape))
    return out.view(masks.shape)


def _rounded_source(terms: Sequence[torch.Tensor]) -> torch.Tensor:
    """round(t0 + t1 + ...): the terms summed left to right (the order fixes the float result,
    which the native gather reproduces), rounded half to even."""
    return torch.round(sum(terms[1:], terms[0]))


def _separable(coords: Sequence[Sequence[torch.Tensor]], nd: int) -> bool:
    """True when the source coordinate along every axis a depends on the output's
    coordinate along a alone (shifts, scalings, grid distortion): no term varies along
    another spatial axis."""
    return all(
        t.dim() == nd + 1 and all(t.shape[1 + d] == 1 for d in range(nd) if d != a)
        for a in range(nd)
        for t in coords[a]
    )


def _gather_separable(
    masks: torch.Tensor, coords: Sequence[Sequence[torch.Tensor]]
) -> torch.Tensor:
    """``gather_nearest`` of a separable map on the CPU: per sample, one NumPy ``take`` per
    axis with that axis's [S_a] source indices, then the slabs whose source falls outside
    set to 0. No full-size coordinate or index tensor exists (the blocked path builds
    float64 coordinates voxel by voxel: ~8x slower). uint8 masks gather in one native pass
    over the output rows when the extension is built (the same indices: bit for bit)."""
    b, spatial = masks.shape[0], masks.shape[2:]
    nd = len(spatial)
    sources, outside = [], []
    for a, size in enumerate(spatial):
        src = _rounded_source(coords[a]).expand(axis_view(b, nd, a, size)).reshape(b, size)
        outside.append(((src < 0) | (src > size - 1)).numpy())
        sources.append(src.clamp(0, size - 1).to(torch.int64).numpy())
    volumes = masks.reshape(b, *spatial).contiguous().numpy()
    native = native_extension()
    if native is not None and volumes.dtype == np.uint8:
        indices = [np.where(o, -1, i) for o, i in zip(outside, sources, strict=True)]
        return torch.from_numpy(native.gather_separable_u8(volumes, indices)).view(masks.shape)
    out = np.empty((b, *spatial), dtype=volumes.dtype)
    for i in range(b):
        v = volumes[i]
        for a in range(nd):
            v = v.take(sources[a][i], axis=a)
        for a in range(nd):
            v[(slice(None),) * a + (outside[a][i],)] = 0
        out[i] = v
    return torch.from_numpy(out).view(masks.shape)


def _native_gather(
    masks: torch.Tensor, coords: Sequence[Sequence[torch.Tensor]]
) -> torch.Tensor | None:
    """``gather_nearest`` of uint8 masks through ``qgfast._native.gather_nearest_u8`` (one
    pass, the same float64 arithmetic: bit-identical), or None where it does not apply:
    other dtypes, a leading float32 term (the torch sum would start in float32), terms of
    fewer dims, or no extension."""
    nd = masks.dim() - 2
    if masks.dtype != torch.uint8 or any(terms[0].dtype != torch.float64 for terms in coords):
        return None
    terms = [t for axis in coords for t in axis]
    if any(t.dtype not in (torch.float64, torch.float32) or t.dim() != nd + 1 for t in terms):
        return None
    if math.prod(masks.shape[2:]) >= 2**31:  # the extension indexes a sample with 32 bits
        return None
    native = native_extension()
    if native is None:
        return None
    b, spatial = masks.shape[0], masks.shape[2:]
    volumes = masks.reshape(b, *spatial).contiguous().numpy()
    axes = [[t.contiguous().numpy() for t in terms] for terms in coords]
    return torch.from_numpy(native.gather_nearest_u8(volumes, axes)).view(masks.shape)


def remap(
    masks: torch.Tensor, matrix: torch.Tensor, centre: torch.Tensor, shift: torch.Tensor
) -> torch.Tensor:
    """Apply y = M (x − c) + c + t per sample. matrix [B, nd, nd], centre and shift [B, nd]."""
    check_masks(masks)
    b, nd = masks.shape[0], masks.dim() - 2
    inv = torch.linalg.inv(matrix.to(torch.float64))
    # x = M⁻¹ (y − c − t) + c = M⁻¹ y + (c − M⁻¹ (c + t)), summed axis by axis
    offset = centre - (inv @ (centre + shift)[..., None])[..., 0]
    view = (b,) + (1,) * nd
    grids = axis_coords(masks.shape[2:], masks.device)
    used = (inv != 0).any(0).tolist()  # [a][j]: terms zero in every sample are left out,
    # so a diagonal map (shift, scale) stays separable
    coords = [
        [offset[:, a].view(view)]
        + [inv[:, a, j].view(view) * grids[j] for j in range(nd) if used[a][j]]
        for a in range(nd)
    ]
    return gather_nearest(masks, coords)


def _eye(b: int, nd: int, device: torch.device) -> torch.Tensor:
    return torch.eye(nd, dtype=torch.float64, device=device).expand(b, nd, nd).clone()


def _rotation(angle: torch.Tensor, u: torch.Tensor, nd: int) -> torch.Tensor:
    """[B, nd, nd] rotations by ``angle`` (radians); in 3D about the axis drawn from u [B, 2]."""
    c, s = torch.cos(angle), torch.sin(angle)
    if nd == 2:
        return torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)
    z = 2 * u[:, 0] - 1  # uniform axis on the sphere
    phi = 2 * math.pi * u[:, 1]
    rxy = torch.sqrt((1 - z * z).clamp_min(0))
    k = torch.stack([rxy * torch.cos(phi), rxy * torch.sin(phi), z], -1)  # [B, 3]
    zero = torch.zeros_like(angle)
    kx = torch.stack(
        [
            torch.stack([zero, -k[:, 2], k[:, 1]], -1),
            torch.stack([k[:, 2], zero, -k[:, 0]], -1),
            torch.stack([-k[:, 1], k[:, 0], zero], -1),
        ],
        -2,
    )
    eye = _eye(angle.shape[0], 3, angle.device)
    return eye + s[:, None, None] * kx + (1 - c)[:, None, None] * (kx @ kx)  # Rodrigues


def shift(masks: torch.Tensor, max_fraction: float, *, seed: int = 0) -> torch.Tensor:
    """Translate by t_a uniform in [−f, f] · size_a on every axis."""
    check_masks(masks)
    b, spatial = masks.shape[0], masks.shape[2:]
    u = _draw(seed, b, masks.device, len(spatial))
    sizes = torch.tensor(spatial, dtype=torch.float64, device=masks.device)
    t = (2 * u - 1) * max_fraction * sizes
    zero = torch.zeros_like(t)
    return remap(masks, _eye(b, len(spatial), masks.device), zero, t)


def scale(masks: torch.Tensor, factor_range: tuple[float, float], *, seed: int = 0) -> torch.Tensor:
    """Isotropic scaling about the centroid by a factor uniform in ``factor_range``."""
    check_masks(masks)
    lo, hi = factor_range
    if not 0 < lo <= hi:
        raise ValueError(f"factor_range must satisfy 0 < lo <= hi, got {factor_range}")
    b, nd = masks.shape[0], masks.dim() - 2
    u = _draw(seed, b, masks.device, 1)[:, 0]
    f = lo + (hi - lo) * u
    matrix = f[:, None, None] * _eye(b, nd, masks.device)
    return remap(
        masks, matrix, centroid(masks), torch.zeros(b, nd, dtype=torch.float64, device=masks.device)
    )


def rotate(masks: torch.Tensor, max_degrees: float, *, seed: int = 0) -> torch.Tensor:
    """Rotation about the centroid by an angle uniform in [−max, max] degrees."""
    check_masks(masks)
    b, nd = masks.shape[0], masks.dim() - 2
    u = _draw(seed, b, masks.device, 3)
    angle = (2 * u[:, 0] - 1) * math.radians(max_degrees)
    matrix = _rotation(angle, u[:, 1:], nd)
    return remap(
        masks, matrix, centroid(masks), torch.zeros(b, nd, dtype=torch.float64, device=masks.device)
    )


def random_affine(
    masks: torch.Tensor,
    scale_range: tuple[float, float] = (0.9, 1.1),
    max_shift: float = 0.1,
    max_degrees: float = 15.0,
    *,
    seed: int = 0,
) -> torch.Tensor:
    """Scale, rotation and shift together, about the volume's centre (docs/method.md defaults)."""
    check_masks(masks)
    b, spatial = masks.shape[0], masks.shape[2:]
    nd = len(spatial)
    u = _draw(seed, b, masks.device, 4 + nd)
    lo, hi = scale_range
    f = lo + (hi - lo) * u[:, 0]
    angle = (2 * u[:, 1] - 1) * math.radians(max_degrees)
    matrix = f[:, None, None] * _rotation(angle, u[:, 2:4], nd)
    sizes = torch.tensor(spatial, dtype=torch.float64, device=masks.device)
    t = (2 * u[:, 4:] - 1) * max_shift * sizes
    centre = ((sizes - 1) / 2).expand(b, nd)
    return remap(masks, matrix, centre, t)
