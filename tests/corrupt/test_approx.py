"""Convex hull, fitted ellipse and polygon: containment and shape properties (hull and
polygon on both CPU paths: the native fill and the PyTorch reference), and the native path
equal to the reference bit for bit."""

import math

import numpy as np
import pytest
import torch

from qgfast.backend import native_extension
from qgfast.corrupt import approx


@pytest.fixture(params=["native", "reference"])
def cpu_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """CPU tensors take ``_native.shape_fill_u8`` for hull and polygon by default;
    QGFAST_BACKEND=reference forces the PyTorch reference."""
    if request.param == "reference":
        monkeypatch.setenv("QGFAST_BACKEND", "reference")
    else:
        if native_extension() is None:
            pytest.skip("qgfast._native not built")
        monkeypatch.delenv("QGFAST_BACKEND", raising=False)
    return request.param


def _l_shape() -> torch.Tensor:
    m = torch.zeros(1, 1, 30, 30, dtype=torch.uint8)
    m[0, 0, 5:25, 5:10] = 1
    m[0, 0, 20:25, 5:25] = 1
    return m


def test_convex_hull_contains_the_mask_and_fills_the_notch(cpu_path) -> None:
    m = _l_shape()
    hull = approx.convex_hull(m)
    assert (hull >= m).all()
    assert hull[0, 0, 15, 15] == 1  # inside the L's notch, under the diagonal
    assert hull[0, 0, 6, 20] == 0  # beyond the diagonal
    square = torch.zeros(1, 1, 12, 12, dtype=torch.uint8)
    square[0, 0, 2:9, 3:10] = 1
    assert torch.equal(approx.convex_hull(square), square)  # convex already


def test_fitted_ellipse_of_an_ellipse_is_itself_approximately() -> None:
    yy, xx = torch.meshgrid(torch.arange(64), torch.arange(64), indexing="ij")
    e = ((((yy - 30) / 20.0) ** 2 + ((xx - 32) / 10.0) ** 2) <= 1).to(torch.uint8)[None, None]
    fit = approx.fitted_ellipse(e)
    assert (fit != e).sum() <= 0.05 * e.sum()
    cube = torch.zeros(1, 1, 20, 20, 20, dtype=torch.uint8)
    cube[0, 0, 5:15, 5:15, 5:15] = 1
    ball = approx.fitted_ellipse(cube)
    assert ball.sum().item() == pytest.approx(1000 * 1.08, rel=0.15)  # ellipsoid of equal moments


def test_polygon_has_at_most_n_corners_and_covers_the_shape_roughly(cpu_path) -> None:
    yy, xx = torch.meshgrid(torch.arange(64), torch.arange(64), indexing="ij")
    disc = (((yy - 32) ** 2 + (xx - 32) ** 2) <= 20 * 20).to(torch.uint8)[None, None]
    tri = approx.polygon(disc, 3)
    octo = approx.polygon(disc, 8)
    assert tri.sum() < octo.sum() <= disc.sum()
    assert octo.sum() > 0.85 * disc.sum()
    assert tri[0, 0, 32, 32] == 1


def test_3d_hull_and_polygon_are_refused_and_empty_stays_empty(cpu_path) -> None:
    vol = torch.ones(1, 1, 4, 4, 4, dtype=torch.uint8)
    with pytest.raises(NotImplementedError, match="2D masks"):
        approx.convex_hull(vol)
    with pytest.raises(NotImplementedError, match="2D masks"):
        approx.polygon(vol, 5)
    empty = torch.zeros(2, 1, 8, 8, dtype=torch.uint8)
    for op in (approx.convex_hull, approx.fitted_ellipse, lambda m: approx.polygon(m, 5)):
        assert op(empty).sum() == 0


@pytest.mark.parametrize("density", [0.002, 0.02, 0.3])
def test_hull_contains_every_pixel_and_is_idempotent(density, cpu_path) -> None:
    g = torch.Generator().manual_seed(int(density * 1000))
    m = (torch.rand(6, 1, 37, 41, generator=g) < density).to(torch.uint8)
    m[0] = 0
    m[0, 0, 5, 7] = 1  # a single pixel
    m[1] = 0
    m[1, 0, 3, 2:30] = 1  # a horizontal segment (a degenerate hull)
    hull = approx.convex_hull(m)
    assert (hull >= m).all()
    assert torch.equal(approx.convex_hull(hull), hull)
    assert hull[0].sum() == 1
    assert torch.equal(hull[1], m[1])


def test_fill_polygon_of_a_triangle_counts_lattice_points() -> None:
    tri = torch.tensor([[0.0, 0.0], [0.0, 10.0], [10.0, 0.0]], dtype=torch.float64)
    filled = approx.fill_polygon(tri, (12, 12))
    # lattice points with r, c >= 0 and r + c <= 10: 66 (Pick's theorem: boundary included)
    assert filled.sum() == 66


@pytest.mark.parametrize("seed", range(4))
def test_convex_hull_equals_qhull_half_planes(seed, cpu_path) -> None:
    """Every pixel centre inside all of Qhull's facets (within 1e-9) is in the hull, and no
    other pixel."""
    spatial = pytest.importorskip("scipy.spatial")
    g = torch.Generator().manual_seed(seed)
    masks = (torch.rand(2, 1, 27, 31, generator=g) < 0.02).to(torch.uint8)
    masks[:, :, 10:14, 12:15] = 1  # never collinear
    out = approx.convex_hull(masks)
    centres = np.indices((27, 31)).reshape(2, -1).T.astype(np.float64)
    for b in range(2):
        hull = spatial.ConvexHull(np.argwhere(masks[b, 0].numpy()).astype(np.float64))
        inside = (centres @ hull.equations[:, :2].T + hull.equations[:, 2] <= 1e-9).all(1)
        np.testing.assert_array_equal(out[b, 0].numpy().reshape(-1).astype(bool), inside)


@pytest.mark.parametrize("spatial", [(25, 21), (11, 10, 9)])
def test_fitted_ellipse_equals_the_covariance_computed_from_the_points(spatial) -> None:
    """Pixels with (x − μ)ᵀ (Σ + 10⁻³ I)⁻¹ (x − μ) ≤ 4 (2D) or 5 (3D), Σ the points'
    covariance (numpy, population normalisation); pixels within 1e-9 of the cut skipped."""
    g = torch.Generator().manual_seed(8)
    masks = (torch.rand(2, 1, *spatial, generator=g) < 0.25).to(torch.uint8)
    out = approx.fitted_ellipse(masks)
    nd = len(spatial)
    grid = np.indices(spatial).reshape(nd, -1).T.astype(np.float64)
    for b in range(2):
        pts = np.argwhere(masks[b, 0].numpy()).astype(np.float64)
        cov = np.cov(pts.T, bias=True) + 1e-3 * np.eye(nd)
        d = grid - pts.mean(0)
        m2 = np.einsum("ni,ij,nj->n", d, np.linalg.inv(cov), d)
        cut = 4.0 if nd == 2 else 5.0
        decided = np.abs(m2 - cut) > 1e-9
        got = out[b, 0].numpy().reshape(-1).astype(bool)
        np.testing.assert_array_equal(got[decided], (m2 <= cut)[decided])


def _test_masks() -> torch.Tensor:
    """Random masks of every density, blobs, thin lines, single pixels, a full and an empty
    sample, at an odd size (uint8; a few values other than 1)."""
    g = torch.Generator().manual_seed(3)
    h, w = 29, 34
    masks = [(torch.rand(1, h, w, generator=g) < p).to(torch.uint8) for p in (0.003, 0.05, 0.5)]
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    for cy, cx, r in ((14.3, 16.8, 9.0), (3.0, 30.0, 6.5), (28.0, 0.0, 12.0)):
        masks.append((((yy - cy) ** 2 + (xx - cx) ** 2) <= r * r).to(torch.uint8)[None] * 3)
    line = torch.zeros(1, h, w, dtype=torch.uint8)
    line[0, 4:25, 7] = 1
    line[0, 20, 7:30] = 1
    diagonal = torch.eye(h, w, dtype=torch.uint8)[None]
    single = torch.zeros(1, h, w, dtype=torch.uint8)
    single[0, 11, 19] = 1
    full = torch.full((1, h, w), 255, dtype=torch.uint8)
    empty = torch.zeros(1, h, w, dtype=torch.uint8)
    masks += [line, diagonal, single, full, empty]
    return torch.stack(masks)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
@pytest.mark.parametrize("op", ["hull", 3, 4, 5, 8, 13])
def test_native_fill_equals_the_reference_bit_for_bit(op, device, monkeypatch) -> None:
    """Masks on either device take the native fill (one host round trip) unless a backend is
    forced; the result comes back on the masks' device."""
    if native_extension() is None:
        pytest.skip("qgfast._native not built")
    masks = _test_masks().to(device)

    def run() -> torch.Tensor:
        return approx.convex_hull(masks) if op == "hull" else approx.polygon(masks, op)

    monkeypatch.setenv("QGFAST_BACKEND", "reference")
    want = run()
    monkeypatch.delenv("QGFAST_BACKEND")
    got = run()
    assert got.dtype == want.dtype == torch.uint8
    assert got.device == want.device == masks.device
    assert torch.equal(got, want)
    assert int(want[:-1].sum()) > 0
    assert want[-1].sum() == 0
    # other integer dtypes take the same path and keep theirs
    for dtype in (torch.int64, torch.bool):
        other = masks.to(dtype)
        out = approx.convex_hull(other) if op == "hull" else approx.polygon(other, op)
        assert out.dtype == dtype
        assert torch.equal(out, want.to(dtype))


def test_polygon_sector_test_matches_the_angle_definition() -> None:
    """d·r ≥ |d|·cos(π/n) is the angle test |angle(d) − angle(r)| ≤ π/n: checked against
    atan2 on every offset of a grid whose angle is not within 1e-9 of a sector's edge."""
    for n in (3, 5, 8):
        rays, cos_half = approx._rays(n)
        d = torch.stack(
            torch.meshgrid(torch.arange(-9.0, 10.0), torch.arange(-9.0, 10.0), indexing="ij"), -1
        ).reshape(-1, 2).to(torch.float64) + torch.tensor([0.25, -0.4], dtype=torch.float64)
        angle = torch.atan2(d[:, 1], d[:, 0])
        ray = torch.tensor(rays, dtype=torch.float64)
        target = torch.atan2(ray[:, 1], ray[:, 0])
        diff = torch.remainder(angle[:, None] - target[None] + math.pi, 2 * math.pi) - math.pi
        decided = (diff.abs() - math.pi / n).abs() > 1e-9
        radius = d.norm(dim=1)
        near = d @ ray.T >= radius[:, None] * cos_half
        assert torch.equal(near[decided], (diff.abs() <= math.pi / n)[decided])
