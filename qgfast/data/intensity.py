"""Intensity normalisation: one vocabulary and one implementation for every place that
prepares images (the streams, ``CaseDataset``, inference).

Volumes (3D; ``VolumeStream``'s ``normalisation``): statistics of each whole channel,
``VOLUME_NORMALISATIONS``:
- "zscore": (v − mean) / std over all voxels;
- "zscore-nonzero": mean and std over the nonzero voxels (MR; all voxels when none is);
- "percentile": clamp to the ``clip`` percentiles (nearest rank), then z-score;
- "window": clamp to the fixed ``window`` [lo, hi] and map it to [0, 1];
- "none": the voxels as nibabel gives them.
std is numpy's population std of the (clamped) voxels that count, floored at 1e-6. The
stream computes these in Rust (``rust/src/volume/channel.rs``); ``normalise_volume`` is the
same arithmetic in numpy, its reference.

2D images (``ImageStream``'s ``normalisation``): values in [0, 1] (8-bit / 255), then
``IMAGE_NORMALISATIONS``:
- "imagenet": per channel (v − mean) / std with ImageNet's statistics (``imagenet_stats``);
- "per-image": each channel z-scored over itself (population std, floored at 1e-6);
- "none": left in [0, 1].
"""

from __future__ import annotations

import math

import numpy as np
import torch

VOLUME_NORMALISATIONS = ("zscore", "zscore-nonzero", "percentile", "window", "none")
IMAGE_NORMALISATIONS = ("imagenet", "per-image", "none")

# torchvision's ImageNet statistics (RGB), which its pretrained weights expect.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def imagenet_stats(channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) per channel: channel i takes ImageNet's channel i mod 3 (grey: the red
    channel's, as the Rust stream applies them: the same rule everywhere, so a predictor
    trained on ``CaseDataset`` sees what a stream feeds it)."""
    if channels < 1:
        raise ValueError(f"channels must be >= 1, got {channels}")
    return (
        tuple(IMAGENET_MEAN[i % 3] for i in range(channels)),
        tuple(IMAGENET_STD[i % 3] for i in range(channels)),
    )


def _nearest_rank(q: float, n: int) -> int:
    return math.floor(q / 100.0 * (n - 1) + 0.5)  # Rust's round(): half away from zero


def normalise_volume(
    image: np.ndarray,
    mode: str,
    clip: tuple[float, float] = (0.5, 99.5),
    window: tuple[float, float] = (-1000.0, 1000.0),
) -> np.ndarray:
    """[C, *S] voxels → float32, each channel as ``VolumeStream(normalisation=mode)`` maps
    it: (clamp(v, lo, hi) − mean) / std with numpy's population std (floored at 1e-6) of
    the clamped voxels that count (all, or the nonzero ones for "zscore-nonzero" when any
    is nonzero); "percentile" clamps to nearest-rank percentiles first; "window" maps
    [lo, hi] to [0, 1]."""
    if mode not in VOLUME_NORMALISATIONS:
        raise ValueError(
            f"volume normalisation must be one of {VOLUME_NORMALISATIONS}, got {mode!r}"
        )
    out = np.empty(image.shape, np.float32)
    for c, channel in enumerate(image):
        v = channel.astype(np.float64)
        if mode == "none":
            out[c] = v
            continue
        if mode == "window":
            lo, hi = float(np.float32(window[0])), float(np.float32(window[1]))
            out[c] = (np.clip(v, lo, hi) - lo) / max(hi - lo, 1e-6)
            continue
        lo, hi = -np.inf, np.inf
        if mode == "percentile":
            flat = np.sort(channel.astype(np.float32), axis=None)
            if flat.size:
                lo = float(flat[_nearest_rank(clip[0], flat.size)])
                hi = float(flat[_nearest_rank(clip[1], flat.size)])
            else:
                lo = hi = 0.0
        clamped = np.clip(v, lo, hi)
        keep = clamped
        if mode == "zscore-nonzero" and (v != 0).any():
            keep = clamped[v != 0]
        mean = keep.mean() if keep.size else 0.0
        std = max(float(np.sqrt(((keep - mean) ** 2).mean())), 1e-6) if keep.size else 1.0
        out[c] = (clamped - mean) / std
    return out


def normalise_image(x: torch.Tensor, mode: str) -> torch.Tensor:
    """[..., C, H, W] float in [0, 1] → normalised as ``ImageStream(normalisation=mode)``."""
    if mode == "none":
        return x
    if mode == "imagenet":
        c = x.shape[-3]
        mean, std = imagenet_stats(c)
        shape = (c, 1, 1)
        return (x - x.new_tensor(mean).view(shape)) / x.new_tensor(std).view(shape)
    if mode == "per-image":
        flat = x.flatten(-2)
        mean = flat.mean(-1, keepdim=True)
        std = flat.std(-1, unbiased=False, keepdim=True).clamp_min(1e-6)
        return ((flat - mean) / std).view_as(x)
    raise ValueError(f"image normalisation must be one of {IMAGE_NORMALISATIONS}, got {mode!r}")
