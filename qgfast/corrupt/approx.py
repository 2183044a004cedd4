"""Shape approximations (METHOD.md "shape approximation"): convex hull, fitted ellipse and
polygon. Binary semantics; an empty mask stays empty.

- ``fitted_ellipse`` (2D and 3D): the solid ellipse/ellipsoid with the foreground's centroid
  and covariance (a solid ellipse has variance a²/4 along a semi-axis a, an ellipsoid a²/5),
  i.e. {x : (x − μ)ᵀ Σ⁻¹ (x − μ) ≤ 4 (2D) or 5 (3D)}.
- ``convex_hull`` (2D): pixels whose centres lie in the convex hull of the foreground's
  pixel centres (Andrew's monotone chain per sample, on the CPU).
- ``polygon`` (2D): n vertices at equally spaced angles around the centroid, each at the
  farthest foreground pixel centre within half a sector of its ray, filled (even-odd rule).
3D hulls and polygons raise NotImplementedError: nothing in the method defines them.
"""

from __future__ import annotations

import math

import torch

from qgfast.corrupt.geometry import _coords
from qgfast.corrupt.morphology import _check_masks
from qgfast.corrupt.shapes import _moments


def fitted_ellipse(masks: torch.Tensor) -> torch.Tensor:
    _check_masks(masks)
    pts, area, mean, _ = _moments(masks)
    b, nd = masks.shape[0], masks.dim() - 2
    w = (masks.reshape(b, -1) != 0).to(torch.float64)
    d = pts[None] - mean[:, None]  # [B, N, nd]
    cov = torch.einsum("bn,bni,bnj->bij", w, d, d) / area.clamp_min(1)[:, None, None]
    cov = cov + 1e-3 * torch.eye(nd, dtype=cov.dtype, device=cov.device)  # one-voxel-thin shapes
    m2 = torch.einsum("bni,bij,bnj->bn", d, torch.linalg.inv(cov), d)
    keep = (m2 <= (4.0 if nd == 2 else 5.0)) & (area[:, None] > 0)
    return keep.view(masks.shape).to(masks.dtype)


def _require_2d(masks: torch.Tensor, name: str) -> None:
    _check_masks(masks)
    if masks.dim() != 4:
        raise NotImplementedError(f"{name} is defined for 2D masks (B, 1, H, W) only")


def _cross(o: tuple[float, float], a: tuple[float, float], b: tuple[float, float]) -> float:
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def _hull(points: torch.Tensor) -> torch.Tensor:
    """Convex hull vertices (counter-clockwise) of [P, 2] float pixel centres. Only each
    row's two extreme pixels can be hull vertices, so the chain runs over at most 2·H
    points."""
    rows = points[:, 0]
    extremes = []
    for r in rows.unique().tolist():
        xs = points[rows == r, 1]
        extremes += [(r, xs.min().item()), (r, xs.max().item())]
    pts = sorted(set(extremes))
    if len(pts) <= 2:
        return torch.tensor(pts, dtype=torch.float64)
    lower: list[tuple[float, float]] = []
    for p in pts:
        while len(lower) >= 2 and _cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    upper: list[tuple[float, float]] = []
    for p in reversed(pts):
        while len(upper) >= 2 and _cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    return torch.tensor(lower[:-1] + upper[:-1], dtype=torch.float64)


def _inside_polygon(pts: torch.Tensor, poly: torch.Tensor) -> torch.Tensor:
    """Even-odd rule for [N, 2] points against polygon vertices [V, 2], all edges at once;
    points on an edge count as inside (so a hull always contains its own points)."""
    if poly.shape[0] == 0:
        return torch.zeros(pts.shape[0], dtype=torch.bool)
    y, x = pts[:, 0:1], pts[:, 1:2]  # [N, 1] against edges [1, V]
    y0, x0 = poly[:, 0][None], poly[:, 1][None]
    y1, x1 = poly.roll(-1, 0)[:, 0][None], poly.roll(-1, 0)[:, 1][None]
    eps = 1e-9
    cross = (x1 - x0) * (y - y0) - (y1 - y0) * (x - x0)
    within = (y >= torch.minimum(y0, y1) - eps) & (y <= torch.maximum(y0, y1) + eps)
    within &= (x >= torch.minimum(x0, x1) - eps) & (x <= torch.maximum(x0, x1) + eps)
    on_edge = (within & (cross.abs() < eps)).any(1)
    dy = torch.where(y1 == y0, torch.ones_like(y1), y1 - y0)
    crosses = ((y0 > y) != (y1 > y)) & (x < (x1 - x0) * (y - y0) / dy + x0)
    return (crosses.sum(1) % 2 == 1) | on_edge


def _per_sample(masks: torch.Tensor, vertices_of) -> torch.Tensor:
    out = torch.zeros_like(masks)
    grid = _coords(masks.shape[2:], torch.device("cpu"))
    for b in range(masks.shape[0]):
        fg = (masks[b, 0] != 0).cpu()
        pts = fg.nonzero().to(torch.float64)
        if pts.shape[0] == 0:
            continue
        inside = _inside_polygon(grid, vertices_of(pts))
        out[b, 0] = inside.view(fg.shape).to(device=masks.device, dtype=masks.dtype)
    return out


def convex_hull(masks: torch.Tensor) -> torch.Tensor:
    _require_2d(masks, "convex_hull")
    return _per_sample(masks, _hull)


def polygon(masks: torch.Tensor, vertices: int) -> torch.Tensor:
    _require_2d(masks, "polygon")
    if vertices < 3:
        raise ValueError(f"a polygon needs >= 3 vertices, got {vertices}")

    def star(pts: torch.Tensor) -> torch.Tensor:
        centre = pts.mean(0)
        d = pts - centre
        angle = torch.atan2(d[:, 1], d[:, 0])
        radius = d.norm(dim=1)
        corners = []
        for k in range(vertices):
            target = -math.pi + 2 * math.pi * k / vertices
            diff = torch.remainder(angle - target + math.pi, 2 * math.pi) - math.pi
            near = diff.abs() <= math.pi / vertices
            if near.any():
                i = torch.where(near, radius, torch.full_like(radius, -1)).argmax()
                corners.append(pts[i])
        return torch.stack(corners) if corners else centre[None]

    return _per_sample(masks, star)
