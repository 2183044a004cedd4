"""Erosion, dilation, opening and closing of batched label maps (binary or multi-class).

Semantics (``qgfast.reference.morphology``): scipy.ndimage's binary morphology with
``border_value=0`` on binary masks, exactly; on multi-class maps a class shrinks to where
its whole structuring element is that class, and grows into background only (the larger
label wins a contested voxel). Structuring elements: ``"ball"`` (skimage ``disk``/``ball``,
x² + y² [+ z²] ≤ r²) or ``"cube"`` (side 2r + 1). Radius: an int, or a (B,) integer tensor
of per-sample radii, 0 meaning identity.

Backend (``qgfast.backend``): the Triton kernels (``qgfast.kernels.morphology``, one launch
pair for the whole batch whatever the per-sample radii) for CUDA tensors; for CPU tensors
the same chord decomposition on bit-packed rows (``qgfast.corrupt.morphology_packed``, 64
voxels a word, up to ``MAX_PLANES`` classes), cubes of uint8 maps as separable running
minima/maxima in ``qgfast._native``; the PyTorch reference (one call per distinct
radius) elsewhere, for label maps with more classes, and whenever
``QGFAST_BACKEND=reference`` is set.
"""

from __future__ import annotations

import torch

from qgfast.backend import cpu_fast_path, select_backend
from qgfast.corrupt import morphology_packed as packed
from qgfast.corrupt._checks import check_masks
from qgfast.corrupt._fast import native_u8
from qgfast.reference import morphology as reference

_SHAPES = ("ball", "cube")


def _radii(radius: int | torch.Tensor, masks: torch.Tensor) -> list[int]:
    """Per-sample radii as Python ints, validated."""
    b = masks.shape[0]
    if isinstance(radius, torch.Tensor):
        if radius.is_floating_point() or radius.shape != (b,):
            raise ValueError(
                f"radius tensor must be integer with shape ({b},), "
                f"got {radius.dtype} {tuple(radius.shape)}"
            )
        values = [int(v) for v in radius.tolist()]
    elif isinstance(radius, int) and not isinstance(radius, bool):
        values = [radius] * b
    else:
        raise TypeError(
            f"radius must be an int or a (B,) integer tensor, got {type(radius).__name__}"
        )
    largest = max(masks.shape[2:])
    for v in values:
        if v < 0:
            raise ValueError(f"radius must be >= 0, got {v}")
        if v > largest:
            raise ValueError(f"radius {v} is larger than the volume {tuple(masks.shape[2:])}")
    return values


def _apply(
    masks: torch.Tensor, radius: int | torch.Tensor, shape: str, erode: bool
) -> torch.Tensor:
    check_masks(masks)
    if shape not in _SHAPES:
        raise ValueError(f"shape must be one of {_SHAPES}, got {shape!r}")
    radii = _radii(radius, masks)
    x = masks.to(torch.uint8) if masks.dtype == torch.bool else masks
    if select_backend(x) == "triton":
        from qgfast.kernels.morphology import morph

        r = torch.tensor(radii, dtype=torch.int32, device=x.device)
        return morph(x, r, shape, erode).to(masks.dtype)
    groups = sorted(set(radii))
    if len(groups) == 1:
        return _one_radius(x, groups[0], shape, erode).to(masks.dtype)
    out = torch.empty_like(x)
    for r in groups:  # one batched call per distinct radius
        idx = torch.tensor([i for i, v in enumerate(radii) if v == r], device=x.device)
        out[idx] = _one_radius(x[idx], r, shape, erode)
    return out.to(masks.dtype)


def _one_radius(x: torch.Tensor, radius: int, shape: str, erode: bool) -> torch.Tensor:
    """Off CUDA: the bit-packed path on CPU unless the reference is forced or x holds more
    classes than it takes, else the reference. Cube footprints of uint8 maps go through
    ``qgfast._native`` instead: separable running minima and maxima, the same result."""
    if shape == "cube" and (fast := native_u8(x)) is not None:
        native, volumes = fast
        return torch.from_numpy(native.morph_cube_u8(volumes, radius, erode)).view(x.shape)
    if cpu_fast_path(x):
        result = (packed.erode if erode else packed.dilate)(x, radius, shape)  # type: ignore[arg-type]
        if result is not None:
            return result
    return (reference.erode if erode else reference.dilate)(x, radius, shape)  # type: ignore[arg-type]


def erode(masks: torch.Tensor, radius: int | torch.Tensor, *, shape: str = "ball") -> torch.Tensor:
    """Erosion of masks [B, 1, *S] by ``radius`` (int or [B]); same dtype out."""
    return _apply(masks, radius, shape, erode=True)


def dilate(masks: torch.Tensor, radius: int | torch.Tensor, *, shape: str = "ball") -> torch.Tensor:
    """Dilation of masks [B, 1, *S] by ``radius`` (int or [B]); same dtype out."""
    return _apply(masks, radius, shape, erode=False)


def opening(
    masks: torch.Tensor, radius: int | torch.Tensor, *, shape: str = "ball"
) -> torch.Tensor:
    """Dilation of the erosion (scipy ``binary_opening``): removes parts thinner than the SE."""
    return dilate(erode(masks, radius, shape=shape), radius, shape=shape)


def closing(
    masks: torch.Tensor, radius: int | torch.Tensor, *, shape: str = "ball"
) -> torch.Tensor:
    """Erosion of the dilation (scipy ``binary_closing``, border 0): fills gaps narrower
    than the SE; the 0 border also erodes foreground touching the volume's edge."""
    return erode(dilate(masks, radius, shape=shape), radius, shape=shape)
