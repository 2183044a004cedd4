"""Whole-mask corruptions of the pool (docs/method.md): invert, empty, full, Bernoulli noise,
rectangle (box) dropout and bounding box. Binary semantics: any nonzero label is
foreground and the outputs are 0/1 in the input's dtype. Randomness comes from the
counter-based ``qgfast.corrupt.rng`` (per seed and sample index); the ops are plain
elementwise torch on any device — one or two memory passes, nothing to fuse."""

from __future__ import annotations

import torch

from qgfast.corrupt import rng
from qgfast.corrupt._checks import check_masks
from qgfast.corrupt.geometry import axis_profiles


def _fg(masks: torch.Tensor) -> torch.Tensor:
    check_masks(masks)
    return masks != 0


def invert(masks: torch.Tensor) -> torch.Tensor:
    """Foreground ↔ background."""
    return (~_fg(masks)).to(masks.dtype)


def empty(masks: torch.Tensor) -> torch.Tensor:
    check_masks(masks)
    return torch.zeros_like(masks)


def full(masks: torch.Tensor) -> torch.Tensor:
    check_masks(masks)
    return torch.ones_like(masks)


def bernoulli_noise(masks: torch.Tensor, p: float = 0.5, *, seed: int = 0) -> torch.Tensor:
    """Every voxel foreground with probability ``p``, independently (the mask is replaced)."""
    check_masks(masks)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be in [0, 1], got {p}")
    b = masks.shape[0]
    voxels = torch.arange(masks[0].numel(), device=masks.device)[None, :]
    coin = rng.below(seed, rng.sample_ids(b, masks.device), rng.STREAM_NOISE, voxels, p)
    return coin.view(masks.shape).to(masks.dtype)


def _outer_and(per_axis: list[torch.Tensor]) -> torch.Tensor:
    """[B, *S] bool from per-axis [B, S_a] bool vectors: true where every axis's is (one
    full-size pass, the per-axis work stays on the small vectors)."""
    nd = len(per_axis)
    out = None
    for a, v in enumerate(per_axis):
        shaped = v.view(v.shape[0], *(v.shape[1] if d == a else 1 for d in range(nd)))
        out = shaped if out is None else out & shaped
    assert out is not None
    return out


def rectangle_dropout(
    masks: torch.Tensor, side_range: tuple[float, float] = (0.1, 0.3), *, seed: int = 0
) -> torch.Tensor:
    """One axis-aligned box per sample, sides uniform in ``side_range`` of each axis'
    size, at a uniform position inside the volume, set to background."""
    fg = _fg(masks)
    lo, hi = side_range
    if not 0.0 < lo <= hi <= 1.0:
        raise ValueError(f"side_range must satisfy 0 < lo <= hi <= 1, got {side_range}")
    b, spatial = masks.shape[0], masks.shape[2:]
    ids = rng.sample_ids(b, masks.device)
    counters = torch.arange(2 * len(spatial), device=masks.device)[None, :]
    u = rng.uniform(seed, ids, rng.STREAM_BOX, counters)  # side, position per axis
    inside = []
    for a, size in enumerate(spatial):
        side = torch.clamp((lo + (hi - lo) * u[:, 2 * a : 2 * a + 1]) * size, min=1).round()
        side = side.to(torch.int64)
        start = ((size - side + 1) * u[:, 2 * a + 1 : 2 * a + 2]).to(torch.int64)
        start = start.clamp(0, size - 1)
        grid = torch.arange(size, device=masks.device)[None, :]
        inside.append((grid >= start) & (grid < start + side))  # [B, S_a]
    return (fg[:, 0] & ~_outer_and(inside)).unsqueeze(1).to(masks.dtype)


def bounding_box(masks: torch.Tensor) -> torch.Tensor:
    """The foreground's axis-aligned bounding box, filled; an empty mask stays empty."""
    check_masks(masks)
    inside = []
    for profile in axis_profiles(masks):  # [B, S_a] foreground counts
        present = profile > 0
        size = present.shape[1]
        idx = torch.arange(size, device=masks.device)[None, :]
        first = torch.where(present, idx, size).amin(1, keepdim=True)
        last = torch.where(present, idx, -1).amax(1, keepdim=True)
        inside.append((idx >= first) & (idx <= last))  # empty: first > last, nothing inside
    return _outer_and(inside).unsqueeze(1).to(masks.dtype)
