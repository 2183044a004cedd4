"""Shape replacements (docs/method.md "blob"): a Gaussian blob with the foreground's centroid and
per-axis spread, thresholded to keep the original area, and a disc/ball of the same area at
the centroid. Binary semantics; an empty mask stays empty."""

from __future__ import annotations

import math

import numpy as np
import torch

from qgfast.backend import cpu_fast_path, native_extension
from qgfast.corrupt._checks import check_masks
from qgfast.corrupt.geometry import axis_coords, axis_moments


def moments(masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Foreground area [B], centroid [B, nd] and per-axis std [B, nd] (float64)."""
    count, first, second = axis_moments(masks)
    n = count.clamp_min(1)[:, None]
    mean = first / n
    var = second / n - mean * mean
    return count, mean, var.clamp_min(0).sqrt()


def centred_axes(masks: torch.Tensor, mean: torch.Tensor) -> list[torch.Tensor]:
    """Per axis a, x_a − μ_a as [B, 1, .., S_a, .., 1] (float64), to broadcast to [B, *S]."""
    return [
        g - mean[:, a].view((-1,) + (1,) * (g.dim() - 1))
        for a, g in enumerate(axis_coords(masks.shape[2:], masks.device))
    ]


def gaussian_blob(masks: torch.Tensor, spread: float = 1.0) -> torch.Tensor:
    """Voxels of the largest exp(−½ Σ ((x − μ)/(spread·σ))²) values, exactly as many as the
    mask has foreground voxels (ties at the cut broken by voxel index). Ranked by the
    exponent z = Σ ((x − μ)/(spread·σ))² itself (smallest first): the same order, without
    the ties that exp's underflow would make far from the centre. CPU tensors (unless a
    backend is forced) select in ``qgfast._native``, with the same arithmetic, bit for bit."""
    check_masks(masks)
    area, mean, std = moments(masks)
    scale = (spread * std).clamp_min(0.5)  # a one-voxel-thick axis still gets a spread
    native = native_extension()
    if native is not None and cpu_fast_path(masks):
        out = native.smallest_spread_u8(
            [masks.shape[0], *masks.shape[2:]],
            mean.contiguous().numpy(),
            scale.contiguous().numpy(),
            area.to(torch.int64).numpy(),
        )
        return torch.from_numpy(out).view(masks.shape).to(masks.dtype)
    per_sample = (-1,) + (1,) * (masks.dim() - 2)
    z = sum(
        (d / scale[:, a].view(per_sample)) ** 2 for a, d in enumerate(centred_axes(masks, mean))
    )
    keep = largest(-z.view(masks.shape[0], -1), area.to(torch.int64))  # [B, N]
    return keep.view(masks.shape).to(masks.dtype)


def largest(values: torch.Tensor, count: torch.Tensor, select: bool | None = None) -> torch.Tensor:
    """[B, N] bool: per row the ``count[b]`` largest (finite) values, ties at the cut going
    to the lower indices (what a stable descending sort would keep). The cut is the
    count-th largest value: found by selection row by row on the CPU (``select``; NumPy's
    introselect, O(N) a row and ~3x torch.kthvalue; the tied values located directly, not
    by a cumulative sum over the row), by one sort of the values elsewhere (no host round
    trip per row)."""
    n = values.shape[1]
    k = count.clamp(0, n)[:, None]
    if select is None:
        select = values.device.type == "cpu"
    if select:
        rows = values.detach().cpu().numpy()
        keep = np.zeros(rows.shape, dtype=bool)
        for b, kb in enumerate(k[:, 0].tolist()):
            if kb == 0:
                continue
            cut = np.partition(rows[b], n - kb)[n - kb]
            keep[b] = rows[b] > cut
            tied = np.flatnonzero(rows[b] == cut)
            keep[b, tied[: kb - int(np.count_nonzero(keep[b]))]] = True
        return torch.from_numpy(keep).to(values.device)
    ordered = values.sort(dim=1, descending=True).values
    cut = ordered.gather(1, (k - 1).clamp_min(0))
    cut = torch.where(k > 0, cut, math.inf)
    above = values > cut
    tie = values == cut
    room = k - above.sum(1, keepdim=True)  # how many of the tied values still fit
    return above | (tie & (tie.cumsum(1) <= room))


def circular_blob(masks: torch.Tensor) -> torch.Tensor:
    """A disc (2D) or ball (3D) at the centroid with the mask's area: r = √(A/π) or
    ∛(3A/4π)."""
    check_masks(masks)
    area, mean, _ = moments(masks)
    b, nd = masks.shape[0], masks.dim() - 2
    radius = (area / math.pi).sqrt() if nd == 2 else (3 * area / (4 * math.pi)).pow(1 / 3)
    unit = torch.eye(nd, dtype=torch.float64, device=masks.device).expand(b, nd, nd)
    return quadric_fill(masks, mean, unit, radius * radius, area > 0)


def quadric_fill(
    masks: torch.Tensor,
    mean: torch.Tensor,
    coef: torch.Tensor,
    limit: torch.Tensor,
    active: torch.Tensor,
) -> torch.Tensor:
    """0/1 in the masks' shape and dtype: with d = x − mean[b] (float64), the voxels where
    Σ_i (c_ii·d_i)·d_i + Σ_{i<j} (c_ij·d_i)·d_j ≤ limit[b], in the samples where ``active``
    (coef [B, nd, nd], only i ≤ j read; the terms summed in that order). CPU tensors
    (unless a backend is forced) fill in ``qgfast._native`` with the same arithmetic, bit
    for bit; elsewhere per-axis and per-plane terms broadcast, full size only when added."""
    b, nd = masks.shape[0], masks.dim() - 2
    native = native_extension()
    if native is not None and cpu_fast_path(masks):
        out = native.quadric_fill_u8(
            [b, *masks.shape[2:]],
            mean.contiguous().numpy(),
            coef.contiguous().numpy(),
            limit.contiguous().numpy(),
            active.contiguous().numpy(),
        )
        return torch.from_numpy(out).view(masks.shape).to(masks.dtype)
    d = centred_axes(masks, mean)  # per axis, broadcastable to [B, *S]
    per_sample = (b,) + (1,) * nd
    terms = [coef[:, i, i].view(per_sample) * d[i] * d[i] for i in range(nd)]
    terms += [
        coef[:, i, j].view(per_sample) * d[i] * d[j] for i in range(nd) for j in range(i + 1, nd)
    ]
    q = sum(terms[1:], terms[0])
    keep = (q <= limit.view(per_sample)) & active.view(per_sample)
    return keep.view(masks.shape).to(masks.dtype)
