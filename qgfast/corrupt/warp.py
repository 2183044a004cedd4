"""Non-rigid corruptions (docs/method.md "boundary"): elastic deformation and grid distortion,
nearest-neighbour remaps that keep labels; and the cross-image swap.

- elastic: per-voxel displacement N(0, α²) on every axis, smoothed by a Gaussian of σ,
  output(x) = input(round(x + d(x))).
- grid distortion: each axis is cut into ``steps`` equal cells whose lengths are scaled by
  factors uniform in [1 − limit, 1 + limit]; the source coordinate along the axis follows
  the piecewise-linear map between the scaled and the regular cell boundaries (separable).
- cross-image swap: a sample's mask is replaced by the mask of another sample in the batch
  whose foreground area is among the closest ``fraction`` of the others.
"""

from __future__ import annotations

import math

import torch

from qgfast.backend import cpu_fast_path, native_extension
from qgfast.corrupt import rng
from qgfast.corrupt._checks import check_masks
from qgfast.corrupt._fast import native_u8
from qgfast.corrupt.blocking import blocks
from qgfast.corrupt.geometry import axis_coords, axis_view, gather_nearest
from qgfast.corrupt.smooth import _taps, gaussian_filter


def _normal(seed: int, b: int, stream: int, count: int, device: torch.device) -> torch.Tensor:
    """[B, count] standard normals (float32): Box–Muller, each pair of counter-based
    uniforms giving two (R cos θ and R sin θ).

    On a CPU (unless a backend is forced) ``qgfast._native`` draws them in one vectorised
    pass (the hash, a polynomial logarithm and sine/cosine); they agree with the torch
    passes below to float32 rounding (tested), not bit for bit."""
    ids = rng.sample_ids(b, device)
    native = native_extension()
    if native is not None and cpu_fast_path(ids):
        seed32 = seed & 0xFFFFFFFF
        return torch.from_numpy(native.counter_normals(seed32, stream, ids[:, 0].numpy(), count))
    pairs = (count + 1) // 2
    out = torch.empty(b, 2 * pairs, dtype=torch.float32, device=device)
    for part in blocks(pairs, b, device):  # block by block: the transforms run in the cache
        c = torch.arange(part.start, part.stop, device=device)[None, :]
        u1 = rng.uniform(seed, ids, stream, 2 * c).clamp_min_(2.0**-32).to(torch.float32)
        theta = rng.uniform(seed, ids, stream, 2 * c + 1).to(torch.float32).mul_(2 * math.pi)
        radius = u1.log_().mul_(-2).sqrt_()
        torch.mul(radius, theta.cos(), out=out[:, part])
        torch.mul(radius, theta.sin_(), out=out[:, pairs + part.start : pairs + part.stop])
    return out[:, :count]


def elastic_displacement(
    b: int, spatial: tuple[int, ...], alpha: float, sigma: float, seed: int, device: torch.device
) -> torch.Tensor:
    """[B, nd, *S] float32: N(0, α²) per voxel and axis, Gaussian-smoothed with σ (kernel
    side 2·⌈3σ⌉ + 1, reflect-101 borders)."""
    nd, n = len(spatial), math.prod(spatial)
    noise = _normal(seed, b, rng.STREAM_ELASTIC, nd * n, device).mul_(alpha)
    k = 2 * math.ceil(3 * sigma) + 1
    return gaussian_filter(noise.reshape(b * nd, 1, *spatial), k, sigma).view(b, nd, *spatial)


def elastic(masks: torch.Tensor, alpha: float, sigma: float, *, seed: int = 0) -> torch.Tensor:
    """Elastic deformation: output(x) = input(round(x + d(x))) with d from
    ``elastic_displacement``."""
    check_masks(masks)
    b, spatial = masks.shape[0], masks.shape[2:]
    if (fast := native_u8(masks)) is not None:
        # the same three native steps as below (noise, filter, remap) in one call
        native, volumes = fast
        ids = rng.sample_ids(b, masks.device)[:, 0].numpy()
        taps = _taps(2 * math.ceil(3 * sigma) + 1, sigma, torch.float32, masks.device).numpy()
        out = native.elastic_u8(volumes, alpha, taps, seed & 0xFFFFFFFF, rng.STREAM_ELASTIC, ids)
        return torch.from_numpy(out).view(masks.shape)
    field = elastic_displacement(b, spatial, alpha, sigma, seed, masks.device)
    grids = axis_coords(spatial, masks.device)
    return gather_nearest(masks, [[grids[a], field[:, a]] for a in range(len(spatial))])


def grid_distortion(
    masks: torch.Tensor, steps: int, limit: float, *, seed: int = 0
) -> torch.Tensor:
    """Grid distortion with ``steps`` cells per axis and cell-length factors in 1 ± limit."""
    check_masks(masks)
    if steps < 1 or not 0 <= limit < 1:
        raise ValueError(f"need steps >= 1 and 0 <= limit < 1, got {steps}, {limit}")
    b, spatial = masks.shape[0], masks.shape[2:]
    nd = len(spatial)
    u = rng.uniform(
        seed,
        rng.sample_ids(b, masks.device),
        rng.STREAM_GRID,
        torch.arange(nd * steps, device=masks.device)[None],
    ).view(b, nd, steps)
    coords = []
    for a, size in enumerate(spatial):
        cell = size / steps
        lengths = cell * (1 + limit * (2 * u[:, a] - 1))  # [B, steps]
        src_nodes = torch.cat([torch.zeros_like(lengths[:, :1]), lengths.cumsum(1)], 1)
        src_nodes = src_nodes * (size / src_nodes[:, -1:])  # rescaled to cover the axis
        x = torch.arange(size, device=masks.device, dtype=torch.float64)
        cell_idx = (x / cell).floor().clamp_max(steps - 1).to(torch.int64)
        frac = x / cell - cell_idx
        lo = src_nodes.gather(1, cell_idx.expand(b, -1))
        hi = src_nodes.gather(1, (cell_idx + 1).expand(b, -1))
        coords.append([(lo + frac * (hi - lo)).view(axis_view(b, nd, a, size))])  # separable
    return gather_nearest(masks, coords)


def cross_image_partners(
    masks: torch.Tensor, sources: torch.Tensor, fraction: float, seed: int
) -> torch.Tensor:
    """For each entry of ``sources`` (indices into the batch), the index of another sample
    whose foreground area is among the closest ``fraction`` of the others (at least one),
    drawn per key of ``rng.sample_ids``. Needs a batch of at least two."""
    b = masks.shape[0]
    area = (masks.reshape(b, -1) != 0).sum(1).to(torch.float64)
    gap = (area[:, None] - area[None, :]).abs()
    gap.fill_diagonal_(math.inf)
    order = gap.argsort(dim=1, stable=True)[:, : b - 1]  # the others, closest first
    top = max(1, math.ceil(fraction * (b - 1)))
    keys = rng.sample_ids(sources.shape[0], masks.device)
    zero = torch.zeros(1, 1, dtype=torch.int64, device=masks.device)
    u = rng.uniform(seed, keys, rng.STREAM_SWAP, zero)[:, 0]
    pick = (u * top).to(torch.int64).clamp_max(top - 1)
    return order[sources].gather(1, pick[:, None])[:, 0]


def cross_image_swap(masks: torch.Tensor, fraction: float = 0.2, *, seed: int = 0) -> torch.Tensor:
    """Each sample takes the mask of another sample whose foreground area is among the
    closest ``fraction`` of the others (at least one); a batch of one is returned unchanged."""
    check_masks(masks)
    b = masks.shape[0]
    if b < 2:
        return masks.clone()
    sources = torch.arange(b, device=masks.device)
    return masks[cross_image_partners(masks, sources, fraction, seed)].clone()
