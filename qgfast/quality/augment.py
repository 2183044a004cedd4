"""Image augmentation for predictor training (docs/quality.md, "Augmentation").

Without it the predictor sees each training image exactly as stored every epoch (only the
corruptions vary) and memorises small training sets. ``augment_batch`` draws, per sample:
- spatial transforms applied identically to the image and its ground truth *before* the
  corrupted masks and their quality targets are made from that ground truth: flips per
  axis, a rot90 in the first two spatial axes (square planes only), and a small rotation
  (about the last axis in 3D) with isotropic scaling (bilinear for the image, nearest for
  the labels);
- intensity transforms on the image only: contrast and brightness (in units of the
  image's own spread, so they suit any normalisation), gamma (on the image rescaled to
  [0, 1] and mapped back), Gaussian blur (``qgfast.corrupt.smooth.gaussian_filter``, the
  corruption engine's filter) and Gaussian noise; colour images get the contrast and
  brightness per channel too (colour jitter).

Every draw comes from a CPU ``torch.Generator`` seeded by the caller, so a batch augments
the same on any device; the tensors themselves are transformed where they are (GPU when
the batch is there).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from qgfast.corrupt.smooth import gaussian_filter


@dataclass(frozen=True)
class Augment:
    """Probabilities and ranges of one augmentation level (``LEVELS``)."""

    flip: float = 0.5  # per spatial axis
    rot90: float = 0.5
    affine: float = 0.3  # probability of a rotation + scale
    max_degrees: float = 15.0
    scale: tuple[float, float] = (0.9, 1.1)
    intensity: float = 0.8  # probability of the contrast/brightness/gamma group
    contrast: tuple[float, float] = (0.8, 1.25)
    brightness: float = 0.1  # shift in units of the image's standard deviation
    colour: float = 0.05  # extra per-channel contrast spread for multi-channel images
    gamma: tuple[float, float] = (0.8, 1.25)
    blur: float = 0.1
    blur_sigma: tuple[float, float] = (0.5, 1.0)
    noise: float = 0.15
    noise_std: float = 0.05  # in units of the image's standard deviation

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


LEVELS: dict[str, Augment | None] = {
    "none": None,
    "light": Augment(),
    "strong": Augment(
        affine=0.6,
        max_degrees=30.0,
        scale=(0.8, 1.25),
        contrast=(0.65, 1.5),
        brightness=0.2,
        colour=0.1,
        gamma=(0.7, 1.5),
        blur=0.2,
        blur_sigma=(0.5, 1.5),
        noise=0.3,
        noise_std=0.1,
    ),
}


def level(name: str) -> Augment | None:
    if name not in LEVELS:
        raise ValueError(f"augment must be one of {list(LEVELS)}, got {name!r}")
    return LEVELS[name]


def _uniform(gen: torch.Generator, n: int, lo: float, hi: float) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=gen)


def _log_uniform(gen: torch.Generator, n: int, lo: float, hi: float) -> torch.Tensor:
    return torch.exp(_uniform(gen, n, math.log(lo), math.log(hi)))


def _spatial(images, labels, aug: Augment, gen: torch.Generator):
    b, nd = images.shape[0], images.dim() - 2
    for axis in range(nd):
        flip = (torch.rand(b, generator=gen) < aug.flip).to(images.device)
        if flip.any():
            view = (-1,) + (1,) * (nd + 1)
            images = torch.where(flip.view(view), images.flip(axis + 2), images)
            labels = torch.where(flip.view(view), labels.flip(axis + 2), labels)
    if images.shape[2] == images.shape[3]:
        turn = (torch.rand(b, generator=gen) < aug.rot90).to(images.device)
        if turn.any():
            view = (-1,) + (1,) * (nd + 1)
            images = torch.where(turn.view(view), images.rot90(1, (2, 3)), images)
            labels = torch.where(turn.view(view), labels.rot90(1, (2, 3)), labels)
    warp = torch.rand(b, generator=gen) < aug.affine
    angle = _uniform(gen, b, -aug.max_degrees, aug.max_degrees) * math.pi / 180
    zoom = _log_uniform(gen, b, *aug.scale)
    if warp.any():
        theta = torch.zeros(b, nd, nd + 1)
        theta[:, range(nd), range(nd)] = 1.0
        # rotate the last two axes (the in-plane axes of a 2D image; about axis 0 in 3D)
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        i, j = nd - 2, nd - 1
        theta[:, i, i], theta[:, i, j], theta[:, j, i], theta[:, j, j] = cos, -sin, sin, cos
        if nd == 3:
            theta[:, 0, 0] = 1.0 / zoom
        theta[~warp] = torch.eye(nd, nd + 1)
        theta = theta.to(images.device, images.dtype)
        size = list(images.shape)
        grid = F.affine_grid(theta, size, align_corners=False)
        moved = F.grid_sample(
            images, grid, mode="bilinear", padding_mode="border", align_corners=False
        )
        labels_f = F.grid_sample(
            labels.to(images.dtype), grid, mode="nearest", padding_mode="zeros", align_corners=False
        )
        images = moved
        labels = labels_f.round().to(labels.dtype)
    return images, labels


def _intensity(images, aug: Augment, gen: torch.Generator):
    b, c = images.shape[:2]
    dims = tuple(range(2, images.dim()))
    view = (b, 1) + (1,) * len(dims)
    dev, dt = images.device, images.dtype
    mean = images.mean(dims, keepdim=True)
    std = images.std(dims, keepdim=True).clamp_min(1e-6)
    on = (torch.rand(b, generator=gen) < aug.intensity).to(dt)
    contrast = _log_uniform(gen, b, *aug.contrast)
    per_channel = 1 + aug.colour * (2 * torch.rand(b, c, generator=gen) - 1) * (c > 1)
    shift = aug.brightness * (2 * torch.rand(b, generator=gen) - 1)
    gamma = _log_uniform(gen, b, *aug.gamma)
    blur_on = torch.rand(b, generator=gen) < aug.blur
    sigma = _uniform(gen, b, *aug.blur_sigma)
    noise_on = (torch.rand(b, generator=gen) < aug.noise).to(dt)
    noise = torch.randn(images.shape, generator=gen).to(dev, dt)

    def col(t):
        return t.to(dev, dt).view(view)

    scale = 1 + col(on) * (
        col(contrast) * per_channel.to(dev, dt).view(b, c, *(1,) * len(dims)) - 1
    )
    x = mean + (images - mean) * scale + col(on * shift) * std
    # gamma on the image rescaled to [0, 1], mapped back to its own range
    lo = x.amin(dims, keepdim=True)
    hi = x.amax(dims, keepdim=True)
    unit = ((x - lo) / (hi - lo).clamp_min(1e-6)).clamp(0, 1)
    g = 1 + col(on) * (col(gamma) - 1)
    x = lo + unit.pow(g) * (hi - lo)
    for i in torch.nonzero(blur_on).flatten().tolist():
        s = float(sigma[i])
        size = 2 * math.ceil(2 * s) + 1
        x[i] = gaussian_filter(x[i : i + 1].reshape(c, 1, *x.shape[2:]), size, s).reshape(
            x[i].shape
        )
    return x + col(noise_on) * aug.noise_std * std * noise


def augment_batch(
    images: torch.Tensor, labels: torch.Tensor, aug: Augment | None, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(images [B, C, *S] float, labels [B, 1, *S] int) augmented per sample (see the module
    docstring); ``aug=None`` returns them unchanged."""
    if aug is None:
        return images, labels
    if images.dim() not in (4, 5) or labels.shape[0] != images.shape[0]:
        raise ValueError(
            f"augment_batch needs images [B, C, *S] (2D or 3D) and labels [B, 1, *S], got "
            f"{tuple(images.shape)} and {tuple(labels.shape)}"
        )
    if labels.shape[2:] != images.shape[2:]:
        raise ValueError(
            f"images and labels differ in size: {tuple(images.shape)} vs {tuple(labels.shape)}"
        )
    gen = torch.Generator().manual_seed(int(seed))
    images, labels = _spatial(images, labels, aug, gen)
    return _intensity(images, aug, gen), labels
