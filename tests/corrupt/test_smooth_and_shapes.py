"""Smoothing, jagged band and blob shapes against direct computations (OpenCV-style blur via
scipy's Gaussian with the same kernel, area matching, band confinement)."""

import math

import numpy as np
import pytest
import torch

from qgfast.corrupt import shapes, smooth


def _disc(size=64, r=15, centre=(30, 34)) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    return (((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2) <= r * r).to(torch.uint8)[None, None]


@pytest.mark.parametrize("shape", [(23, 19), (9, 14, 11)])
@pytest.mark.parametrize("matrix_max", [smooth.MATRIX_MAX, 0])  # dense product / convolution
def test_gaussian_filter_matches_scipy_reflect_with_truncated_kernel(
    shape, matrix_max, monkeypatch
) -> None:
    ndi = pytest.importorskip("scipy.ndimage")
    monkeypatch.setattr(smooth, "MATRIX_MAX", matrix_max)
    x = torch.rand(2, 1, *shape, dtype=torch.float64)
    k, sigma = 11, smooth.opencv_sigma(11)
    got = smooth.gaussian_filter(x, k, sigma).numpy()
    # scipy 'mirror' is OpenCV's reflect-101; truncate so the radius is k // 2
    for b in range(2):
        want = ndi.gaussian_filter(x[b, 0].numpy(), sigma, mode="mirror", truncate=(k // 2) / sigma)
        np.testing.assert_allclose(got[b, 0], want, rtol=1e-10, atol=1e-12)


def test_opencv_sigma_formula() -> None:
    assert smooth.opencv_sigma(11) == pytest.approx(2.0)
    assert smooth.opencv_sigma(15) == pytest.approx(2.6)


def test_smoothing_rounds_corners_but_keeps_a_disc() -> None:
    square = torch.zeros(1, 1, 40, 40, dtype=torch.uint8)
    square[..., 10:30, 10:30] = 1
    out = smooth.gaussian_smooth(square, 15)
    assert out[0, 0, 10, 10] == 0  # corner rounded off
    assert out[0, 0, 20, 20] == 1
    disc = _disc()
    assert (smooth.gaussian_smooth(disc, 11) != disc).sum() <= 0.02 * disc.sum()


def test_jagged_band_changes_only_the_band() -> None:
    disc = _disc()
    out = smooth.jagged_band(disc, 5, seed=1)
    inner = torch.zeros_like(disc)
    inner[..., 13:48, 17:52] = 1
    grid = torch.meshgrid(torch.arange(64), torch.arange(64), indexing="ij")
    d = ((grid[0] - 30) ** 2 + (grid[1] - 34) ** 2).float().sqrt()
    far = (d < 15 - 3) | (d > 15 + 3)
    assert torch.equal(out[0, 0][far], disc[0, 0][far])
    changed = (out != disc).sum().item()
    assert changed > 20
    assert torch.equal(out, smooth.jagged_band(disc, 5, seed=1))


@pytest.mark.parametrize("nd", [2, 3])
def test_circular_blob_matches_area_and_centroid(nd) -> None:
    size = (1, 1, 40, 36) if nd == 2 else (1, 1, 30, 28, 26)
    m = torch.zeros(size, dtype=torch.uint8)
    m[(..., *[slice(5, 5 + s // 2) for s in size[2:]])] = 1
    out = shapes.circular_blob(m)
    assert out.sum().item() == pytest.approx(m.sum().item(), rel=0.08)
    assert shapes.circular_blob(torch.zeros_like(m)).sum() == 0


def test_gaussian_blob_keeps_area_and_spread_widens_it() -> None:
    m = torch.zeros(2, 1, 48, 48, dtype=torch.uint8)
    m[0, 0, 10:20, 5:40] = 1  # elongated along x
    m[1, 0, 20:30, 20:30] = 1
    out = shapes.gaussian_blob(m)
    assert out.sum((1, 2, 3)).tolist() == m.sum((1, 2, 3)).tolist()
    ys, xs = out[0, 0].nonzero().T
    assert (xs.max() - xs.min()) > 2 * (ys.max() - ys.min())  # follows the spread
    wider = shapes.gaussian_blob(m, spread=1.2)
    assert wider.sum() == out.sum()
    assert math.isclose(float(shapes.gaussian_blob(torch.zeros_like(m)).sum()), 0.0)


@pytest.mark.parametrize("select", [True, False])  # the CPU's selection, the GPU's sort
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_largest_keeps_what_a_stable_descending_sort_keeps(select, dtype) -> None:
    g = torch.Generator().manual_seed(6)
    values = torch.randint(0, 9, (5, 41), generator=g).to(dtype)  # many ties
    values[2, ::3] = values[2, 0]  # a tie group larger than the room left at the cut
    count = torch.tensor([0, 1, 17, 40, 41])
    got = shapes.largest(values, count, select=select)
    order = values.argsort(dim=1, descending=True, stable=True)
    want = torch.zeros_like(got)
    for b in range(5):
        want[b, order[b, : count[b]]] = True
    assert torch.equal(got, want)
