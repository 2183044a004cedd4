"""Whole-mask corruptions of the pool (docs/method.md): invert, empty, full, Bernoulli noise,
rectangle (box) dropout and bounding box. Binary semantics: any nonzero label is
foreground and the outputs are 0/1 in the input's dtype. Randomness comes from the
counter-based ``qgfast.corrupt.rng`` (per seed and sample index); the ops are plain
elementwise torch on any device — one or two memory passes, nothing to fuse."""

from __future__ import annotations

import torch

from qgfast.corrupt import rng
from qgfast.corrupt._checks import check_masks


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
    u = rng.uniform(seed, rng.sample_ids(b, masks.device), rng.STREAM_NOISE, voxels)
    return (u < p).view(masks.shape).to(masks.dtype)


def _axes_grid(masks: torch.Tensor) -> list[torch.Tensor]:
    """Coordinate of each spatial axis, shaped to broadcast against masks[:, 0]."""
    spatial = masks.shape[2:]
    out = []
    for a, size in enumerate(spatial):
        shape = [1] * (len(spatial) + 1)
        shape[a + 1] = size
        out.append(torch.arange(size, device=masks.device).view(shape))
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
    inside = torch.ones_like(fg[:, 0])
    view = (b,) + (1,) * len(spatial)
    for a, (size, grid) in enumerate(zip(spatial, _axes_grid(masks), strict=True)):
        u_side = rng.uniform(seed, ids, rng.STREAM_BOX, torch.tensor([2 * a], device=masks.device))
        u_pos = rng.uniform(
            seed, ids, rng.STREAM_BOX, torch.tensor([2 * a + 1], device=masks.device)
        )
        side = torch.clamp((lo + (hi - lo) * u_side) * size, min=1).round().to(torch.int64)
        start = ((size - side + 1) * u_pos).to(torch.int64).clamp(0, size - 1)
        inside &= (grid >= start.view(view)) & (grid < (start + side).view(view))
    return (fg[:, 0] & ~inside).unsqueeze(1).to(masks.dtype)


def bounding_box(masks: torch.Tensor) -> torch.Tensor:
    """The foreground's axis-aligned bounding box, filled; an empty mask stays empty."""
    fg = _fg(masks)[:, 0]
    b, spatial = fg.shape[0], fg.shape[1:]
    box = fg.flatten(1).any(1).view((b,) + (1,) * len(spatial))
    for a, grid in enumerate(_axes_grid(masks)):
        other = tuple(d + 1 for d in range(len(spatial)) if d != a)
        present = fg.any(dim=other) if other else fg  # [B, size_a]
        size = spatial[a]
        idx = torch.arange(size, device=fg.device)
        first = torch.where(present, idx, size).amin(1)
        last = torch.where(present, idx, -1).amax(1)
        view = (b,) + (1,) * len(spatial)
        box = box & (grid >= first.view(view)) & (grid <= last.view(view))
    return box.unsqueeze(1).to(masks.dtype)
