"""Procedural datasets whose image content predicts mask quality.

- ``lesion2d``: dermoscopy-like RGB images — skin tone with shading, pores and hairs, a
  vignette, and an irregular pigmented lesion (Fourier-perturbed outline, one or two lobes,
  fuzzy border, darker core, network texture); binary mask = where the lesion's opacity
  exceeds one half, so the visible boundary and the label agree.
- ``cardiac2d``: one-channel short-axis cine-MR-like slices, the hard benchmark of the
  predictor (docs/quality.md): the label is the left-ventricular myocardium, drawn by an
  annotator's convention the image only partly shows (a smooth endocardial contour that
  leaves papillary muscles and trabeculae in the cavity; an epicardial border against
  liver and chest wall of the same intensity), and the images vary as scans do: anatomy
  size, shape and position, window and gamma, coil bias, texture, blur, Rician noise and
  phase-encoding ghosts.
- ``organ3d``: MR-like volumes — a body ellipsoid, an organ (label 1) with a nested
  structure (label 2) and, in most cases, an adjacent organ (label 3) of low contrast;
  every outline is deformed by smooth noise; multiplicative bias field and Rician noise.

Written nnU-Net style (``imagesTr``/``labelsTr`` + ``dataset.json``) as PNG or NIfTI so the
readers are exercised. Each case is generated from (seed, index) alone: case i is the same
whatever ``n``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

KINDS = ("lesion2d", "cardiac2d", "organ3d")
# What makes a lesion2d case hard (``hard_fraction``): each is what real dermoscopy throws
# at a segmenter, and what makes a teacher's pseudolabels vary in quality.
HARD_LESION = (
    "low contrast (lesion darkness 0.05-0.25 of the easy range's top)",
    "fuzzy border (twice the border softness)",
    "atypical shape (three lobes, outline waviness x1.8)",
    "dense thick hair (8 extra hairs, 1.8x as wide)",
    "a bright gel-bubble ring over skin or lesion",
)


def _smooth_noise(shape: Sequence[int], cell: float, gen: torch.Generator) -> torch.Tensor:
    """Zero-mean, unit-ish smooth noise: a coarse random grid (one value per ``cell``
    voxels) interpolated up to ``shape``."""
    coarse = [max(2, math.ceil(s / cell) + 1) for s in shape]
    grid = torch.randn(1, 1, *coarse, generator=gen)
    mode = "bilinear" if len(shape) == 2 else "trilinear"
    return F.interpolate(grid, size=tuple(shape), mode=mode, align_corners=True)[0, 0]


def _uniform(gen: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=gen))


def _case_generator(seed: int, index: int) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + index) % (2**63))


def lesion_case(
    size: int, gen: torch.Generator, hard: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """One dermoscopy-like case: (RGB uint8 [size, size, 3], mask uint8 [size, size] 0/1).

    hard: the kind of case a segmenter gets wrong (see ``HARD_LESION``): a faint, fuzzy
    lesion of atypical shape (three lobes, a strongly wavy outline), dense thick hair and a
    bright gel-bubble ring. An easy case draws exactly what it drew before this option.
    """
    coords = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    # skin: a tone between light and dark, slow shading, pores, vignette
    t = _uniform(gen, 0.0, 1.0)
    tone = torch.tensor([0.93 - 0.2 * t, 0.78 - 0.22 * t, 0.68 - 0.22 * t])
    shading = 1 + 0.08 * _smooth_noise((size, size), size / 3, gen)
    pores = 0.025 * _smooth_noise((size, size), max(2.0, size / 64), gen)
    skin = tone.view(3, 1, 1) * (shading + pores)
    # lesion: union of lobes with Fourier-perturbed radius
    depth = torch.full((size, size), -10.0)
    lobes = 1 if _uniform(gen, 0, 1) < 0.7 else 2
    for lobe in range(3 if hard else lobes):
        cy, cx = 0.5 + _uniform(gen, -0.12, 0.12), 0.5 + _uniform(gen, -0.12, 0.12)
        r0 = _uniform(gen, 0.13, 0.33) * (0.7 if lobe else 1.0)
        theta = torch.atan2(yy - cy, xx - cx)
        radius = torch.ones_like(theta)
        for k in range(2, 8):
            amp = _uniform(gen, 0.0, 0.22) / k**0.7 * (1.8 if hard else 1.0)
            radius = radius + amp * torch.cos(k * theta + _uniform(gen, 0, 2 * math.pi))
        dist = torch.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
        depth = torch.maximum(depth, (r0 * radius.clamp_min(0.3) - dist) / r0)
    depth = depth + 0.06 * _smooth_noise((size, size), size / 14, gen)
    softness = _uniform(gen, 0.02, 0.09) * (2.0 if hard else 1.0)
    alpha = torch.sigmoid(depth / softness)
    mask = (alpha > 0.5).to(torch.uint8)
    darkness = _uniform(gen, 0.15, 1.0)  # some lesions are faint: harder cases
    if hard:
        darkness = 0.05 + 0.2 * darkness
    brown = torch.tensor([0.55, 0.36, 0.25]) * (1 - 0.55 * darkness)
    network = 1 + 0.18 * _smooth_noise((size, size), max(2.0, size / 24), gen)
    core = 1 - 0.35 * darkness * depth.clamp(0, 0.6) / 0.6
    lesion = brown.view(3, 1, 1) * network * core
    img = skin * (1 - alpha) + lesion * alpha
    # hairs: dark quadratic Bézier curves drawn over everything
    hairs = int(_uniform(gen, 0, 1) ** 2 * 7)
    for _ in range(hairs + (8 if hard else 0)):
        p = torch.rand(3, 2, generator=gen) * 1.4 - 0.2
        s = torch.linspace(0, 1, 4 * size)[:, None]
        curve = (1 - s) ** 2 * p[0] + 2 * s * (1 - s) * p[1] + s**2 * p[2]
        pix = torch.stack([yy.flatten(), xx.flatten()], 1)
        near = torch.cdist(pix, curve).min(1).values.view(size, size)
        width = _uniform(gen, 0.6, 1.6) / size * (1.8 if hard else 1.0)
        img = img * (1 - 0.75 * torch.exp(-((near / width) ** 2))[None])
    if hard:  # a gel bubble: a bright ring with a darker rim, anywhere in the field
        by, bx, br = _uniform(gen, 0.2, 0.8), _uniform(gen, 0.2, 0.8), _uniform(gen, 0.08, 0.2)
        ring = torch.exp(-(((torch.sqrt((yy - by) ** 2 + (xx - bx) ** 2) - br) / 0.012) ** 2))
        img = img * (1 - 0.35 * ring)[None] + 0.5 * ring[None]
    vignette = 1 - 0.6 * ((yy - 0.5) ** 2 + (xx - 0.5) ** 2 - 0.18).clamp_min(0)
    img = img * vignette + 0.015 * torch.randn(3, size, size, generator=gen)
    rgb = (img.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0)
    return rgb.numpy(), mask.numpy()


def _ellipse_level(yy, xx, centre, radii, angle):
    """1 − (normalised radius)² of a rotated ellipse: > 0 inside."""
    dy, dx = yy - centre[0], xx - centre[1]
    c, s = math.cos(angle), math.sin(angle)
    u, v = (c * dx + s * dy) / radii[1], (-s * dx + c * dy) / radii[0]
    return 1 - u**2 - v**2


def _fourier_radius(theta, base, wobble, gen, orders=range(1, 5)):
    radius = torch.full_like(theta, base)
    for k in orders:
        amp = base * _uniform(gen, 0.0, wobble) / k
        radius = radius + amp * torch.cos(k * theta + _uniform(gen, 0, 2 * math.pi))
    return radius


def cardiac_case(size: int, gen: torch.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One short-axis MR-like slice: (uint8 [size, size], myocardium mask uint8 0/1).

    What a predictor cannot read off edges alone (and so may memorise instead): the label's
    endocardial contour is smooth and runs outside the dark papillary muscles and
    trabeculae, which the image shows inside the bright cavity; along much of the
    epicardium the neighbour (liver, chest-wall muscle, right-ventricular wall) has the
    myocardium's intensity, so the border there is the annotator's, not an edge.
    """
    # the field of view is cropped round the heart, as cardiac datasets are
    fov = _uniform(gen, 0.55, 0.75)
    coords = 0.5 + fov * ((torch.arange(size, dtype=torch.float32) + 0.5) / size - 0.5)
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    myo_i = _uniform(gen, 0.22, 0.38)
    # torso: an ellipse of muscle-like tissue with a bright subcutaneous fat rim, air outside
    body_angle = _uniform(gen, -0.3, 0.3)
    body = _ellipse_level(yy, xx, (0.5, 0.5), (_uniform(gen, 0.36, 0.44), 0.47), body_angle)
    inner = _ellipse_level(yy, xx, (0.5, 0.5), (0.36 * 0.9, 0.47 * 0.9), body_angle)
    img = torch.full((size, size), 0.02)
    img = torch.where(body > 0, _uniform(gen, 0.75, 0.95), img)  # fat rim
    img = torch.where(inner > 0, myo_i * _uniform(gen, 0.9, 1.15), img)
    # lungs: two dark lobes behind and beside the heart
    for side in (-1, 1):
        lung = _ellipse_level(
            yy + 0.04 * _smooth_noise((size, size), size / 4, gen),
            xx,
            (0.45 + _uniform(gen, -0.05, 0.05), 0.5 + side * _uniform(gen, 0.18, 0.24)),
            (_uniform(gen, 0.14, 0.22), _uniform(gen, 0.08, 0.13)),
            _uniform(gen, -0.5, 0.5),
        )
        img = torch.where((lung > 0) & (inner > 0), _uniform(gen, 0.03, 0.1), img)
    # liver: under the heart, of myocardial intensity
    liver = _ellipse_level(
        yy, xx, (_uniform(gen, 0.74, 0.82), _uniform(gen, 0.3, 0.45)), (0.18, 0.26), 0.3
    )
    img = torch.where((liver > 0) & (inner > 0), myo_i * _uniform(gen, 0.95, 1.1), img)
    # left ventricle: cavity radius and wall thickness vary around the ring
    cy, cx = 0.5 + _uniform(gen, -0.06, 0.06), 0.52 + _uniform(gen, -0.06, 0.06)
    dy, dx = yy - cy, xx - cx
    theta, dist = torch.atan2(dy, dx), torch.sqrt(dy**2 + dx**2)
    stretch = _uniform(gen, 0.85, 1.15)
    dist = dist * (1 + (stretch - 1) * torch.cos(2 * (theta - _uniform(gen, 0, math.pi))))
    r_endo = _fourier_radius(theta, _uniform(gen, 0.06, 0.13), 0.12, gen)
    r_epi = r_endo + _fourier_radius(theta, _uniform(gen, 0.03, 0.055), 0.3, gen)
    myo = (dist >= r_endo) & (dist < r_epi)
    cavity = dist < r_endo
    # right ventricle: a bright crescent wrapped round one side, its thin wall myocardial
    rv_angle = math.pi + _uniform(gen, -0.6, 0.6)
    rv_gap = (theta - rv_angle + math.pi) % (2 * math.pi) - math.pi
    rv_span = _uniform(gen, 0.7, 1.2)
    rv_depth = _uniform(gen, 0.04, 0.09)
    rv = (rv_gap.abs() < rv_span) & (dist >= r_epi + 0.012)
    rv = rv & (dist < r_epi + 0.012 + rv_depth * torch.cos(rv_gap / rv_span * math.pi / 2))
    blood = _uniform(gen, 0.7, 0.95)
    img = torch.where(
        (dist < r_epi + 0.012 + rv_depth + 0.012) & (rv_gap.abs() < rv_span + 0.15), myo_i, img
    )  # the RV wall wraps the crescent
    img = torch.where(rv, blood * _uniform(gen, 0.9, 1.0), img)
    img = torch.where(myo, myo_i, img)
    img = torch.where(cavity, blood, img)
    # epicardial fat: bright arcs on part of the border (elsewhere no edge at all)
    for _ in range(int(_uniform(gen, 0, 3.99))):
        centre, span = _uniform(gen, -math.pi, math.pi), _uniform(gen, 0.3, 0.9)
        gap = ((theta - centre + math.pi) % (2 * math.pi) - math.pi).abs()
        arc = (gap < span) & (dist >= r_epi) & (dist < r_epi + _uniform(gen, 0.008, 0.02))
        img = torch.where(arc, _uniform(gen, 0.7, 0.9), img)
    # papillary muscles and trabeculae: dark, in the cavity, not in the label
    for _ in range(2 + int(_uniform(gen, 0, 1.99))):
        a = _uniform(gen, -math.pi, math.pi)
        rr = float(r_endo.mean()) * _uniform(gen, 0.55, 0.85)
        pr = float(r_endo.mean()) * _uniform(gen, 0.15, 0.3)
        pap = (yy - cy - rr * math.sin(a)) ** 2 + (xx - cx - rr * math.cos(a)) ** 2 < pr**2
        img = torch.where(pap & cavity, myo_i * _uniform(gen, 0.9, 1.2), img)
    trabeculae = cavity & (dist > r_endo * 0.8)
    trabeculae = trabeculae & (_smooth_noise((size, size), max(2.0, size / 40), gen) > 0.6)
    img = torch.where(trabeculae, myo_i * 1.2, img)
    # acquisition: partial-volume blur, texture, coil bias, window/gamma, ghosts, Rician noise
    blur = _uniform(gen, 0.5, 1.5) * size / 128
    ks = 2 * math.ceil(3 * blur) + 1
    taps = torch.exp(-((torch.arange(ks) - ks // 2) ** 2) / (2 * blur**2))
    taps = (taps / taps.sum()).view(1, 1, 1, -1)
    x = img[None, None]
    x = F.conv2d(F.pad(x, (ks // 2, ks // 2, 0, 0), mode="replicate"), taps)
    x = F.conv2d(F.pad(x, (0, 0, ks // 2, ks // 2), mode="replicate"), taps.transpose(2, 3))
    img = x[0, 0] * (1 + 0.08 * _smooth_noise((size, size), max(2.0, size / 20), gen))
    img = img * torch.exp(0.35 * _smooth_noise((size, size), size / 1.5, gen))
    ghost = _uniform(gen, 0.0, 0.12)
    img = img + ghost * torch.roll(img, int(_uniform(gen, 0.15, 0.35) * size), dims=1)
    sigma = _uniform(gen, 0.015, 0.05)
    img = torch.sqrt(
        (img + sigma * torch.randn(size, size, generator=gen)) ** 2
        + (sigma * torch.randn(size, size, generator=gen)) ** 2
    )
    img = (img / _uniform(gen, 0.8, 1.2)).clamp(0, 1) ** _uniform(gen, 0.75, 1.35)
    gray = (img * 255).round().to(torch.uint8)
    return gray.numpy(), myo.to(torch.uint8).numpy()


def organ_case(shape: Sequence[int], gen: torch.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One MR-like case: (int16 volume [*shape], labels uint8 [*shape] in 0..3)."""
    axes = [torch.linspace(-1, 1, s) for s in shape]
    grid = torch.stack(torch.meshgrid(*axes, indexing="ij"))  # [3, *shape]

    def blob(centre, radii, wobble):
        rel = (grid - torch.tensor(centre).view(3, 1, 1, 1)) / torch.tensor(radii).view(3, 1, 1, 1)
        level = 1 - (rel**2).sum(0)
        return level + wobble * _smooth_noise(shape, max(shape) / 4, gen) > 0

    body = blob((0, 0, 0), (0.9, 0.75, 1.1), 0.08)
    c1 = (_uniform(gen, -0.2, 0.2), _uniform(gen, -0.15, 0.15), _uniform(gen, -0.1, 0.1))
    r1 = tuple(_uniform(gen, 0.35, 0.55) for _ in range(3))
    organ = blob(c1, r1, 0.25) & body
    c2 = tuple(c + _uniform(gen, -0.3, 0.3) * r for c, r in zip(c1, r1, strict=True))
    nested = blob(c2, tuple(r * _uniform(gen, 0.3, 0.5) for r in r1), 0.3) & organ
    labels = organ.to(torch.uint8) + nested.to(torch.uint8)  # 1 organ, 2 nested structure
    tissue, organ_i, nested_i = 0.35, _uniform(gen, 0.55, 0.7), _uniform(gen, 0.8, 0.95)
    if _uniform(gen, 0, 1) < 0.5:  # a dark lesion instead of a bright one
        nested_i = _uniform(gen, 0.15, 0.25)
    intensity = torch.where(body, tissue, 0.02)
    intensity = torch.where(organ, organ_i, intensity)
    intensity = torch.where(nested, nested_i, intensity)
    if _uniform(gen, 0, 1) < 0.75:  # an adjacent organ, low contrast against tissue
        angle = _uniform(gen, 0, 2 * math.pi)
        r3 = tuple(_uniform(gen, 0.14, 0.22) for _ in range(3))
        reach = 0.8 * (r1[0] + r3[0])
        c3 = (c1[0] + reach * math.cos(angle), c1[1] + reach * math.sin(angle), c1[2])
        adjacent = blob(c3, r3, 0.2) & body & ~organ
        labels = torch.where(adjacent, 3, labels).to(torch.uint8)
        intensity = torch.where(adjacent, tissue + _uniform(gen, 0.1, 0.16), intensity)
    texture = 1 + 0.06 * _smooth_noise(shape, 3, gen)
    bias = torch.exp(0.25 * _smooth_noise(shape, max(shape) / 1.5, gen))
    clean = intensity * texture * bias
    sigma = 0.035
    noisy = torch.sqrt(
        (clean + sigma * torch.randn(shape, generator=gen)) ** 2
        + (sigma * torch.randn(shape, generator=gen)) ** 2
    )  # Rician: the magnitude of complex Gaussian noise, as in MR
    volume = (noisy * 1000).round().clamp(-32768, 32767).to(torch.int16)
    return volume.numpy(), labels.numpy()


def make_synthetic_dataset(
    kind: str = "lesion2d",
    n: int = 64,
    path: str | Path = "synthetic",
    seed: int = 0,
    size: int | Sequence[int] | None = None,
    hard_fraction: float = 0.0,
) -> Path:
    """Write ``n`` cases of ``kind`` under ``path`` (nnU-Net layout); returns ``path``.

    size: lesion2d / cardiac2d side (default 128) or organ3d shape (default 64×64×48, voxels
    1.5×1.5×2 mm). hard_fraction (lesion2d): the share of cases drawn hard (``HARD_LESION``);
    which cases are hard depends on (seed, index) alone, and dataset.json lists them under
    "hard_cases". Existing case files of the same names are overwritten.
    """
    if not 0.0 <= hard_fraction <= 1.0:
        raise ValueError(f"hard_fraction must be in [0, 1], got {hard_fraction}")
    if hard_fraction and kind != "lesion2d":
        raise ValueError("hard_fraction applies to lesion2d only")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    root = Path(path)
    (root / "imagesTr").mkdir(parents=True, exist_ok=True)
    (root / "labelsTr").mkdir(parents=True, exist_ok=True)
    if kind == "lesion2d":
        from PIL import Image

        side = 128 if size is None else int(size if isinstance(size, int) else size[0])
        if side < 16:
            raise ValueError(f"lesion2d size must be >= 16, got {side}")
        hard_cases = []
        for i in range(n):
            pick = torch.rand((), generator=_case_generator(seed + 7919, i))
            hard = bool(pick < hard_fraction)
            rgb, mask = lesion_case(side, _case_generator(seed, i), hard=hard)
            Image.fromarray(rgb).save(root / "imagesTr" / f"lesion_{i:04d}_0000.png")
            Image.fromarray(mask).save(root / "labelsTr" / f"lesion_{i:04d}.png")
            if hard:
                hard_cases.append(f"lesion_{i:04d}")
        meta = {
            "channel_names": {"0": "R", "1": "G", "2": "B"},
            "labels": {"background": 0, "lesion": 1},
            "file_ending": ".png",
        }
        if hard_fraction:
            meta["hard_fraction"] = hard_fraction
            meta["hard_cases"] = hard_cases
    elif kind == "cardiac2d":
        from PIL import Image

        side = 128 if size is None else int(size if isinstance(size, int) else size[0])
        if side < 16:
            raise ValueError(f"cardiac2d size must be >= 16, got {side}")
        for i in range(n):
            gray, mask = cardiac_case(side, _case_generator(seed, i))
            Image.fromarray(gray, mode="L").save(root / "imagesTr" / f"heart_{i:04d}_0000.png")
            Image.fromarray(mask).save(root / "labelsTr" / f"heart_{i:04d}.png")
        meta = {
            "channel_names": {"0": "cine MR"},
            "labels": {"background": 0, "myocardium": 1},
            "file_ending": ".png",
        }
    else:
        from qgfast.data.nifti import write_nifti

        shape = (
            (64, 64, 48)
            if size is None
            else tuple(size)
            if not isinstance(size, int)
            else (size,) * 3
        )
        if len(shape) != 3 or min(shape) < 8:
            raise ValueError(f"organ3d shape must be 3 sides >= 8, got {shape}")
        affine = np.diag([1.5, 1.5, 2.0, 1.0])
        for i in range(n):
            volume, labels = organ_case(shape, _case_generator(seed, i))
            write_nifti(root / "imagesTr" / f"organ_{i:04d}_0000.nii.gz", volume, affine)
            write_nifti(root / "labelsTr" / f"organ_{i:04d}.nii.gz", labels, affine)
        meta = {
            "channel_names": {"0": "MR"},
            "labels": {"background": 0, "organ": 1, "nested": 2, "adjacent": 3},
            "file_ending": ".nii.gz",
        }
    meta |= {"numTraining": n, "name": f"qgfast synthetic {kind}", "seed": seed}
    (root / "dataset.json").write_text(json.dumps(meta, indent=2) + "\n")
    return root
