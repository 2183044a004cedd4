"""``add_blobs``: holes (balls set to background, centred on random foreground voxels) and
islands (balls set to a label, centred on random background voxels), per-sample counts and
radii, optionally stretched into axis-aligned ellipsoids (``elongation``), deterministic
per (seed, sample index).

Centres: the k-th candidate voxel with k = ⌊u · #candidates⌋ (one cumulative count and a
search per sample, on the masks' device, no host synchronisation). A sample without a
candidate voxel gets no blob. Painting: the Triton kernel (``qgfast.kernels.blobs``) gives
each blob one program that walks only the blob's bounding box, so work is proportional to
blob volume; the PyTorch reference paints with distance masks. Both use the same exact
integer inside test, so they agree voxel for voxel.
"""

from __future__ import annotations

import math

import torch

from qgfast.backend import select_backend
from qgfast.corrupt import rng
from qgfast.corrupt._checks import check_masks
from qgfast.corrupt._fast import native_u8
from qgfast.reference import blobs as reference


def _counts(n: int | torch.Tensor, batch: int, device: torch.device) -> torch.Tensor:
    if isinstance(n, torch.Tensor):
        if n.is_floating_point() or n.shape != (batch,):
            raise ValueError(
                f"n must be an int or an integer ({batch},) tensor, got {tuple(n.shape)}"
            )
        counts = n.to(device=device, dtype=torch.int64)
    elif isinstance(n, int) and not isinstance(n, bool):
        counts = torch.full((batch,), n, dtype=torch.int64, device=device)
    else:
        raise TypeError(f"n must be an int or a (B,) integer tensor, got {type(n).__name__}")
    if bool((counts < 0).any()):
        raise ValueError("n must be >= 0")
    return counts


def blob_parameters(
    masks: torch.Tensor,
    n: int | torch.Tensor,
    radius_range: tuple[int, int],
    mode: str,
    seed: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Centres [B, n_max, nd] (int64 voxel coordinates) and radii [B, n_max] (int64, −1 for
    no blob) of the blobs ``add_blobs`` paints."""
    b = masks.shape[0]
    spatial = masks.shape[2:]
    counts = _counts(n, b, masks.device)
    n_max = int(n) if isinstance(n, int) else int(counts.max().item()) if b else 0
    lo, hi = radius_range
    if not (0 <= lo <= hi):
        raise ValueError(f"radius_range must be (lo, hi) with 0 <= lo <= hi, got {radius_range}")
    if hi > max(spatial):
        raise ValueError(f"radius {hi} is larger than the volume {tuple(spatial)}")
    samples = rng.sample_ids(b, masks.device)
    blobs = torch.arange(n_max, device=masks.device)[None, :]
    u = rng.uniform(seed, samples, rng.STREAM_BLOB_CENTRE, blobs)
    linear, total = _kth_candidates(masks, mode == "hole", u)
    coords = []
    for size in reversed(spatial):
        coords.append(linear % size)
        linear = linear // size
    centres = torch.stack(coords[::-1], dim=-1)
    v = rng.uniform(seed, samples, rng.STREAM_BLOB_RADIUS, blobs)
    radii = lo + (v * (hi - lo + 1)).to(torch.int64).clamp_max(hi - lo)
    active = (blobs < counts[:, None]) & (total > 0)
    return centres, torch.where(active, radii, torch.full_like(radii, -1))


def _kth_candidates(
    masks: torch.Tensor, hole: bool, u: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sample and blob, the linear index of candidate k = min(⌊u·total⌋, total − 1)
    (candidates: foreground voxels for holes, background for islands; the last voxel where
    there is none) [B, n], and the candidate totals [B, 1]. CPU uint8 masks (unless a
    backend is forced) count in one pass in ``qgfast._native``: the same integers."""
    b = masks.shape[0]
    if b and (fast := native_u8(masks)) is not None:
        native, volumes = fast
        linear, total = native.kth_candidates_u8(volumes, hole, u.contiguous().numpy())
        return torch.from_numpy(linear), torch.from_numpy(total)[:, None]
    flat = masks.reshape(b, -1)
    candidates = (flat != 0) if hole else (flat == 0)
    cum = candidates.to(torch.int64).cumsum(1)  # [B, N]
    total = cum[:, -1:]  # [B, 1]
    k = torch.minimum((u * total).to(torch.int64), (total - 1).clamp_min(0))  # [B, n]
    linear = torch.searchsorted(cum, k + 1)  # first index whose count reaches k + 1
    return linear.clamp_max(flat.shape[1] - 1), total


def blob_axes(
    radii: torch.Tensor, nd: int, elongation: tuple[float, float] | None, seed: int
) -> torch.Tensor:
    """Integer semi-axes [B, n, nd]: the radius on every axis (a ball), or with
    ``elongation`` = (lo, hi) the radius times a factor uniform in [lo, hi] drawn per blob
    and axis, rounded (an axis-aligned ellipsoid). −1 on every axis where there is no blob."""
    axes = radii[..., None].expand(*radii.shape, nd)
    if elongation is None:
        return axes.contiguous()
    b, n = radii.shape
    samples = rng.sample_ids(b, radii.device)
    counter = torch.arange(n * nd, device=radii.device).view(1, n, nd)
    u = rng.uniform(seed, samples.view(b, 1, 1), rng.STREAM_BLOB_SHAPE, counter)
    lo, hi = elongation
    stretched = torch.round(axes.to(torch.float64) * (lo + (hi - lo) * u)).to(torch.int64)
    return torch.where(axes >= 0, stretched, axes)


def add_blobs(
    masks: torch.Tensor,
    n: int | torch.Tensor,
    radius_range: tuple[int, int],
    mode: str = "hole",
    *,
    seed: int = 0,
    value: int = 1,
    elongation: tuple[float, float] | None = None,
) -> torch.Tensor:
    """Masks [B, 1, *S] with ``n`` (int or [B]) balls of radii uniform in ``radius_range``
    (inclusive) set to 0 (``mode="hole"``, centred on foreground) or to ``value``
    (``mode="island"``, centred on background). ``elongation=(lo, hi)`` stretches each
    blob into an axis-aligned ellipsoid/ellipse whose semi-axes are the radius times factors
    uniform in [lo, hi] (per blob and axis, 0 < lo <= hi). Same dtype out; the input is not
    modified."""
    check_masks(masks)
    if mode not in ("hole", "island"):
        raise ValueError(f"mode must be 'hole' or 'island', got {mode!r}")
    if elongation is not None and not (0 < elongation[0] <= elongation[1]):
        raise ValueError(f"elongation must be (lo, hi) with 0 < lo <= hi, got {elongation}")
    centres, radii = blob_parameters(masks, n, radius_range, mode, seed)
    axes = blob_axes(radii, masks.dim() - 2, elongation, seed)
    fill = 0 if mode == "hole" else value
    x = masks.to(torch.uint8) if masks.dtype == torch.bool else masks
    if select_backend(x) == "triton":
        from qgfast.kernels.blobs import paint_blobs

        stretch = 1.0 if elongation is None else max(1.0, elongation[1])
        max_axis = math.ceil(radius_range[1] * stretch)
        out = paint_blobs(x, centres, axes, fill, max_axis=max_axis)
    elif (fast := native_u8(x)) is not None:
        # each blob's box walked in Rust, the reference's integer test: bit for bit
        native, volumes = fast
        painted = native.paint_blobs_u8(volumes, centres.numpy(), axes.numpy(), fill)
        out = torch.from_numpy(painted).view(x.shape)
    else:
        out = reference.paint_blobs(x, centres, axes, fill)
    return out.to(masks.dtype)
