"""Shape approximations (docs/method.md "shape approximation"): convex hull, fitted ellipse and
polygon. Binary semantics; an empty mask stays empty.

- ``fitted_ellipse`` (2D and 3D): the solid ellipse/ellipsoid with the foreground's centroid
  and covariance (a solid ellipse has variance a²/4 along a semi-axis a, an ellipsoid a²/5),
  i.e. {x : (x − μ)ᵀ Σ⁻¹ (x − μ) ≤ 4 (2D) or 5 (3D)}.
- ``convex_hull`` (2D): pixels whose centres lie in the convex hull of the foreground's
  pixel centres (Andrew's monotone chain per sample, on the CPU).
- ``polygon`` (2D): n vertices at equally spaced angles around the centroid, each at the
  farthest foreground pixel centre within half a sector of its ray, filled (even-odd rule).
  "Within half a sector" is tested as d·r ≥ |d|·cos(π/n) (d the pixel's offset from the
  centroid, r the ray's unit vector), not with atan2: +, ×, ÷ and sqrt are correctly rounded
  everywhere, so the native path reproduces the reference bit for bit.
3D hulls and polygons raise NotImplementedError: nothing in the method defines them.

Hull and polygon run per sample on the host whatever the masks' device: the batch goes
through ``qgfast._native.shape_fill_u8`` (the same arithmetic in Rust, ~20× faster on a
CPU; on a GPU one copy each way), or sample by sample through the PyTorch reference when a
backend is forced (``QGFAST_BACKEND=reference``) or the extension is not built.
"""

from __future__ import annotations

import math

import torch

from qgfast.backend import forced_backend, native_extension
from qgfast.corrupt._checks import check_masks
from qgfast.corrupt.geometry import axis_moments, cross_moments
from qgfast.corrupt.shapes import quadric_fill


def fitted_ellipse(masks: torch.Tensor) -> torch.Tensor:
    check_masks(masks)
    b, nd = masks.shape[0], masks.dim() - 2
    count, first, second = axis_moments(masks)
    cross = cross_moments(masks)
    n = count.clamp_min(1)
    mean = first / n[:, None]
    # the covariance from the exact integer moments: Σ (x_i − μ_i)(x_j − μ_j) = S_ij − F_i F_j / n
    raw = torch.empty(b, nd, nd, dtype=torch.float64, device=masks.device)
    pairs = [(i, j) for i in range(nd) for j in range(i + 1, nd)]
    for i in range(nd):
        raw[:, i, i] = second[:, i]
    for p, (i, j) in enumerate(pairs):
        raw[:, i, j] = raw[:, j, i] = cross[:, p]
    cov = (raw - first[:, :, None] * first[:, None, :] / n[:, None, None]) / n[:, None, None]
    cov = cov + 1e-3 * torch.eye(nd, dtype=cov.dtype, device=cov.device)  # one-voxel-thin shapes
    inv = torch.linalg.inv(cov)
    coef = inv * (2 - torch.eye(nd, dtype=inv.dtype, device=inv.device))  # 2·inv off the diagonal
    limit = torch.full((b,), 4.0 if nd == 2 else 5.0, dtype=torch.float64, device=masks.device)
    return quadric_fill(masks, mean, coef, limit, count > 0)


def _require_2d(masks: torch.Tensor, name: str) -> None:
    check_masks(masks)
    if masks.dim() != 4:
        raise NotImplementedError(f"{name} is defined for 2D masks (B, 1, H, W) only")


def _chain(points: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """One monotone chain of Andrew's algorithm: only left turns kept (integer arithmetic)."""
    chain: list[tuple[int, int]] = []
    for p in points:
        while len(chain) >= 2:
            (oy, ox), (ay, ax) = chain[-2], chain[-1]
            if (ay - oy) * (p[1] - ox) - (ax - ox) * (p[0] - oy) > 0:
                break
            chain.pop()
        chain.append(p)
    return chain


def _hull(fg: torch.Tensor) -> torch.Tensor:
    """Convex hull vertices (counter-clockwise) of the pixel centres of fg [H, W] (bool,
    non-empty). Only each row's two extreme pixels can be hull vertices, so the chain runs
    over at most 2·H points, already in (row, column) order."""
    rows = fg.any(1).nonzero()[:, 0]
    w = fg.shape[1]
    spans = fg[rows].to(torch.uint8)
    left = spans.argmax(1)
    right = w - 1 - spans.flip(1).argmax(1)
    pts: list[tuple[int, int]] = []
    for r, a, z in zip(rows.tolist(), left.tolist(), right.tolist(), strict=True):
        pts.append((r, a))
        if z != a:
            pts.append((r, z))
    if len(pts) <= 2:
        return torch.tensor(pts, dtype=torch.float64)
    lower, upper = _chain(pts), _chain(pts[::-1])
    return torch.tensor(lower[:-1] + upper[:-1], dtype=torch.float64)


def fill_polygon(poly: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """[H, W] bool: pixel centres inside polygon [V, 2] (row, col) by the even-odd rule,
    scanline by scanline (O(H·V + H·W·V/2) small ops), with the boundary included: vertices,
    horizontal edges and pixels within 1e-9 of a span's ends — so a hull always contains the
    points it was built from."""
    h, w = shape
    out = torch.zeros(shape, dtype=torch.bool)
    if poly.shape[0] == 0:
        return out
    y = torch.arange(h, dtype=torch.float64)[:, None]  # [H, 1] against edges [1, V]
    y0, x0 = poly[:, 0][None], poly[:, 1][None]
    nxt = poly.roll(-1, 0)
    y1, x1 = nxt[:, 0][None], nxt[:, 1][None]
    crosses = (y0 > y) != (y1 > y)  # half-open: each crossing of row y counted once
    dy = torch.where(y1 == y0, torch.ones_like(y1), y1 - y0)
    xs = torch.where(crosses, x0 + (x1 - x0) * (y - y0) / dy, torch.full_like(y0 + y, math.inf))
    xs = xs.sort(1).values  # [H, V], real crossings first
    pairs = int(crosses.sum(1).max()) // 2  # the most any row has (a convex one: 1)
    starts, ends = xs[:, 0 : 2 * pairs : 2], xs[:, 1 : 2 * pairs : 2]  # [H, P]
    x = torch.arange(w, dtype=torch.float64)[None, :, None]  # [1, W, 1]
    eps = 1e-9
    inside = (
        (x >= starts[:, None] - eps) & (x <= ends[:, None] + eps) & ends[:, None].isfinite()
    ).any(-1)
    out |= inside
    for (ya, xa), (yb, xb) in zip(poly.tolist(), nxt.tolist(), strict=True):
        if ya == yb and 0 <= ya < h:  # horizontal edges: on the boundary
            lo, hi = math.ceil(min(xa, xb) - eps), math.floor(max(xa, xb) + eps)
            out[int(ya), max(lo, 0) : min(hi, w - 1) + 1] = True
    for r, c in poly.tolist():
        if float(r).is_integer() and float(c).is_integer() and 0 <= r < h and 0 <= c < w:
            out[int(r), int(c)] = True
    return out


def _per_sample(masks: torch.Tensor, vertices_of, rays=None, cos_half=0.0) -> torch.Tensor:
    # Both paths work on the host: the reference moves each sample there (vertices and fill
    # are per-sample host work), the native fill takes the batch in one round trip (on a
    # GPU: one copy each way instead of one per sample). Forcing a backend keeps the
    # reference.
    native = native_extension() if forced_backend() is None else None
    if native is not None:
        fg = (masks[:, 0] != 0).to(torch.uint8).cpu().numpy()
        filled = torch.from_numpy(native.shape_fill_u8(fg, rays, cos_half))
        return filled.to(device=masks.device, dtype=masks.dtype).view(masks.shape)
    out = torch.zeros_like(masks)
    for b in range(masks.shape[0]):
        fg = (masks[b, 0] != 0).cpu()
        if not fg.any():
            continue
        inside = fill_polygon(vertices_of(fg), tuple(fg.shape))
        out[b, 0] = inside.to(device=masks.device, dtype=masks.dtype)
    return out


def convex_hull(masks: torch.Tensor) -> torch.Tensor:
    _require_2d(masks, "convex_hull")
    return _per_sample(masks, _hull)


def _rays(vertices: int) -> tuple[list[tuple[float, float]], float]:
    """Unit vectors (row, column) of the rays at angles −π + 2πk/n from the row axis, and
    cos(π/n), the cosine of half a sector."""
    angles = [-math.pi + 2 * math.pi * k / vertices for k in range(vertices)]
    return [(math.cos(t), math.sin(t)) for t in angles], math.cos(math.pi / vertices)


def polygon(masks: torch.Tensor, vertices: int) -> torch.Tensor:
    _require_2d(masks, "polygon")
    if vertices < 3:
        raise ValueError(f"a polygon needs >= 3 vertices, got {vertices}")

    rays, cos_half = _rays(vertices)
    ray = torch.tensor(rays, dtype=torch.float64)  # [V, 2]

    def star(fg: torch.Tensor) -> torch.Tensor:
        at = fg.nonzero()  # [N, 2] int64, row-major
        centre = at.sum(0).to(torch.float64) / at.shape[0]  # exact sums, one division
        d = at.to(torch.float64) - centre
        radius = (d[:, 0] * d[:, 0] + d[:, 1] * d[:, 1]).sqrt()
        dot = d[:, 0:1] * ray[None, :, 0] + d[:, 1:2] * ray[None, :, 1]  # [N, V]
        near = dot >= radius[:, None] * cos_half
        farthest = torch.where(near, radius[:, None], -1.0).argmax(0)  # first of the farthest
        corners = at[farthest[near.any(0)]].to(torch.float64)
        return corners if len(corners) else centre[None]

    return _per_sample(masks, star, rays, cos_half)
