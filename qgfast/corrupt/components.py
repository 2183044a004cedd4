"""Connected-component corruptions (docs/method.md "structure"): keep the largest component, or
drop one random component when there are at least two. Connectivity is by faces (4 in 2D,
6 in 3D), scipy.ndimage.label's default. Binary semantics.

Labelling runs on the masks' device: every foreground voxel starts with its own index + 1
and repeatedly takes the largest label among its face neighbours, each round followed by a
pointer jump (a voxel takes the label held by the voxel its label names, which lies in the
same component and is never smaller), until nothing changes (checked every 8 rounds, the one
host synchronisation); each component ends labelled by its largest voxel index + 1.
"""

from __future__ import annotations

import torch

from qgfast.backend import native_extension
from qgfast.corrupt import rng
from qgfast.corrupt._checks import check_masks
from qgfast.corrupt._fast import native_u8


def _neighbour_max(lab: torch.Tensor) -> torch.Tensor:
    """Max of each voxel and its face neighbours; lab [B, *S], 0 outside."""
    out = lab.clone()
    for axis in range(1, lab.dim()):
        n = lab.shape[axis]
        if n < 2:
            continue
        lo = lab.narrow(axis, 0, n - 1)
        hi = lab.narrow(axis, 1, n - 1)
        out.narrow(axis, 0, n - 1).copy_(torch.maximum(out.narrow(axis, 0, n - 1), hi))
        out.narrow(axis, 1, n - 1).copy_(torch.maximum(out.narrow(axis, 1, n - 1), lo))
    return out


def label_components(masks: torch.Tensor) -> torch.Tensor:
    """[B, *S] int64 labels: 0 background, and per face-connected component its largest
    C-order voxel index + 1 (not consecutive). CPU tensors use the Rust union–find of
    ``qgfast._native`` (one pass, GIL released); other devices the propagation below; both
    give identical labels."""
    check_masks(masks)
    if masks.device.type == "cpu":
        native = _native_labels(masks)
        if native is not None:
            return native
    return _propagated_labels(masks)


def _native_labels(masks: torch.Tensor) -> torch.Tensor | None:
    native = native_extension()
    if native is None:
        return None
    fg = (masks[:, 0] != 0).to(torch.uint8).numpy()
    return torch.stack([torch.from_numpy(native.label_components(sample)[0]) for sample in fg])


def _propagated_labels(masks: torch.Tensor) -> torch.Tensor:
    fg = masks[:, 0] != 0
    n = fg[0].numel()
    ids = torch.arange(1, n + 1, device=masks.device).view(fg.shape[1:]).expand_as(fg)
    lab = torch.where(fg, ids, torch.zeros_like(ids))
    b = fg.shape[0]
    while True:
        before = lab
        for _ in range(8):
            lab = torch.where(fg, _neighbour_max(lab), lab)
            flat = lab.reshape(b, -1)
            jumped = flat.gather(1, (flat - 1).clamp_min(0))
            lab = torch.where(fg, jumped.view_as(lab), lab)
        if torch.equal(lab, before):
            return lab


def _sizes(lab: torch.Tensor) -> torch.Tensor:
    """[B, N + 1] voxel count of every label (index 0: background)."""
    b = lab.shape[0]
    n = lab[0].numel()
    flat = lab.reshape(b, -1) + torch.arange(b, device=lab.device)[:, None] * (n + 1)
    return torch.bincount(flat.reshape(-1), minlength=b * (n + 1)).view(b, n + 1)


def _native_select(masks: torch.Tensor, u: torch.Tensor | None) -> torch.Tensor | None:
    """Both selections in one native pass (labels, sizes, choice) for CPU uint8 masks, or
    None where that does not apply; the same labels and rules, so the same output."""
    fast = native_u8(masks)
    if fast is None:
        return None
    native, volumes = fast
    picks = None if u is None else u.contiguous().numpy()
    return torch.from_numpy(native.select_components_u8(volumes, picks)).view(masks.shape)


def keep_largest_component(masks: torch.Tensor) -> torch.Tensor:
    """Only the largest component (ties: the one with the largest label); empty stays empty."""
    check_masks(masks)
    native = _native_select(masks, None)
    if native is not None:
        return native
    lab = label_components(masks)
    sizes = _sizes(lab)
    sizes[:, 0] = 0
    best = sizes.flip(1).argmax(1)
    best = sizes.shape[1] - 1 - best  # the largest label among equal sizes
    keep = (lab == best.view(-1, *[1] * (lab.dim() - 1))) & (lab > 0)
    return keep.unsqueeze(1).to(masks.dtype)


def drop_random_component(masks: torch.Tensor, *, seed: int = 0) -> torch.Tensor:
    """Remove one component chosen uniformly when there are at least two; else unchanged."""
    check_masks(masks)
    b = masks.shape[0]
    u = rng.uniform(
        seed,
        rng.sample_ids(b, masks.device),
        rng.STREAM_COMPONENT,
        torch.zeros(1, 1, dtype=torch.int64, device=masks.device),
    )[:, 0]
    native = _native_select(masks, u)
    if native is not None:
        return native
    lab = label_components(masks)
    sizes = _sizes(lab)
    sizes[:, 0] = 0
    present = sizes > 0
    count = present.sum(1)
    # the pick-th present label, pick uniform in [0, count)
    pick = (u * count).to(torch.int64).clamp_max((count - 1).clamp_min(0))
    rank = present.cumsum(1) - 1
    chosen = (present & (rank == pick[:, None])).float().argmax(1)
    per_sample = (-1, *[1] * (lab.dim() - 1))
    drop = (lab == chosen.view(per_sample)) & (count >= 2).view(per_sample)
    fg = (masks[:, 0] != 0) & ~drop
    return fg.unsqueeze(1).to(masks.dtype)
