"""Whole-mask and geometric corruptions: semantics against direct computations,
determinism per (seed, sample), 2D and 3D."""

import math

import numpy as np
import pytest
import torch

from qgfast.corrupt import blocking, geometry, simple


def _box(size=(2, 1, 21, 17, 13), lo=(5, 4, 3), hi=(14, 11, 9)) -> torch.Tensor:
    m = torch.zeros(size, dtype=torch.uint8)
    m[(..., *[slice(a, b) for a, b in zip(lo, hi, strict=True)][: len(size) - 2])] = 1
    return m


def test_invert_empty_full() -> None:
    m = _box()
    assert torch.equal(simple.invert(m), 1 - m)
    assert simple.empty(m).sum() == 0
    assert simple.full(m).sum() == m.numel()


def test_bernoulli_noise_rate_and_determinism() -> None:
    m = _box((3, 1, 40, 40, 10))
    a = simple.bernoulli_noise(m, 0.3, seed=1)
    assert abs(a.float().mean().item() - 0.3) < 0.02
    assert torch.equal(a, simple.bernoulli_noise(m, 0.3, seed=1))
    assert torch.equal(a[:1], simple.bernoulli_noise(m[:1], 0.3, seed=1))
    assert not torch.equal(a[0], a[1])  # samples differ


def test_bounding_box_of_two_blobs() -> None:
    m = torch.zeros(1, 1, 10, 12, dtype=torch.uint8)
    m[0, 0, 2, 3] = 1
    m[0, 0, 6, 9] = 1
    box = simple.bounding_box(m)
    want = torch.zeros_like(m)
    want[0, 0, 2:7, 3:10] = 1
    assert torch.equal(box, want)
    assert simple.bounding_box(torch.zeros_like(m)).sum() == 0


@pytest.mark.parametrize("size", [(3, 1, 30, 26), (2, 1, 20, 18, 16)])
def test_rectangle_dropout_removes_one_box(size) -> None:
    m = torch.ones(size, dtype=torch.uint8)
    out = simple.rectangle_dropout(m, (0.2, 0.3), seed=4)
    for b in range(size[0]):
        hole = (out[b, 0] == 0).nonzero()
        lo, hi = hole.min(0).values, hole.max(0).values
        extent = (hi - lo + 1).tolist()
        assert math.prod(extent) == len(hole)  # a full box
        for e, s in zip(extent, size[2:], strict=True):
            assert 0.2 * s - 1 <= e <= 0.3 * s + 1


def test_shift_moves_the_box_by_the_drawn_offset() -> None:
    m = _box()
    out = geometry.shift(m, 0.1, seed=3)
    for b in range(2):
        before = m[b, 0].nonzero().float().mean(0)
        after = out[b, 0].nonzero().float().mean(0)
        delta = after - before
        assert (delta.abs() <= torch.tensor(m.shape[2:]) * 0.1 + 0.5).all()
        assert out[b].sum() == m[b].sum()  # nothing left the volume


def test_scale_changes_area_about_the_centroid() -> None:
    m = _box((1, 1, 64, 64), lo=(22, 22), hi=(42, 42))
    up = geometry.scale(m, (1.5, 1.5))
    assert up.sum().item() == pytest.approx(m.sum().item() * 2.25, rel=0.1)
    torch.testing.assert_close(geometry.centroid(up), geometry.centroid(m), atol=0.6, rtol=0)


@pytest.mark.parametrize("size", [(2, 1, 48, 40), (2, 1, 32, 30, 28)])
def test_rotation_preserves_volume_and_centroid(size) -> None:
    m = _box(size, lo=(12, 11, 10), hi=(30, 26, 18))
    out = geometry.rotate(m, 30.0, seed=2)
    assert torch.equal(geometry.rotate(m, 30.0, seed=2), out)
    for b in range(2):
        assert out[b].sum().item() == pytest.approx(m[b].sum().item(), rel=0.08)
    torch.testing.assert_close(geometry.centroid(out), geometry.centroid(m), atol=0.8, rtol=0)


def test_rotation_by_zero_and_identity_affine_are_identity() -> None:
    m = _box()
    assert torch.equal(geometry.rotate(m, 0.0), m)
    assert torch.equal(geometry.random_affine(m, (1.0, 1.0), 0.0, 0.0), m)


def test_geometry_preserves_labels() -> None:
    m = _box((1, 1, 30, 30), lo=(5, 5), hi=(20, 20)) * 3
    out = geometry.random_affine(m, seed=9)
    assert set(out.unique().tolist()) <= {0, 3}


def test_exact_quarter_turn_in_2d() -> None:
    m = torch.zeros(1, 1, 5, 5, dtype=torch.uint8)
    m[0, 0, 2, 2:5] = 1  # a bar from the centre to the right
    matrix = geometry._rotation(torch.tensor([math.pi / 2], dtype=torch.float64), None, 2)
    centre = torch.tensor([[2.0, 2.0]], dtype=torch.float64)
    out = geometry.remap(m, matrix, centre, torch.zeros(1, 2, dtype=torch.float64))
    want = torch.zeros_like(m)
    want[0, 0, 0:3, 2] = 1  # y = M (x − c) + c with M = [[0, −1], [1, 0]]: (0, +2) → (−2, 0)
    assert torch.equal(out, want)


@pytest.mark.parametrize("diagonal", [False, True])  # diagonal M: the separable CPU path
@pytest.mark.parametrize("block", [None, 40])  # whole, or a few rows at a time as on volumes
@pytest.mark.parametrize("spatial", [(23, 17), (11, 9, 7)])
def test_remap_equals_the_formula_evaluated_per_voxel(
    spatial, block, diagonal, monkeypatch
) -> None:
    """y = M (x − c) + c + t: every output voxel reads the input at round(M⁻¹ (y − c − t) + c)
    (numpy, voxel by voxel), 0 outside; voxels within 1e-6 of a rounding tie are skipped."""
    if block:
        monkeypatch.setattr(blocking, "CPU_BLOCK", block)
    b, nd = 3, len(spatial)
    g = torch.Generator().manual_seed(1)
    masks = torch.randint(0, 4, (b, 1, *spatial), generator=g, dtype=torch.uint8)
    matrix = torch.eye(nd, dtype=torch.float64) + 0.4 * torch.randn(b, nd, nd, generator=g).double()
    if diagonal:
        matrix = torch.diag_embed(matrix.diagonal(dim1=1, dim2=2))
    centre = torch.rand(b, nd, generator=g).double() * torch.tensor(spatial)
    shift = 3 * torch.randn(b, nd, generator=g).double()
    out = geometry.remap(masks, matrix, centre, shift)[:, 0].numpy()
    ys = np.indices(spatial).reshape(nd, -1).T  # [N, nd]
    for i in range(b):
        inv = np.linalg.inv(matrix[i].numpy())
        c, t = centre[i].numpy(), shift[i].numpy()
        src = (ys - c - t) @ inv.T + c
        idx = np.rint(src).astype(np.int64)
        inside = ((idx >= 0) & (idx < np.array(spatial))).all(1)
        clipped = np.clip(idx, 0, np.array(spatial) - 1)
        want = masks[i, 0].numpy()[tuple(clipped.T)] * inside
        decided = (np.abs(np.abs(src - np.floor(src)) - 0.5) > 1e-6).all(1)
        assert decided.mean() > 0.99
        np.testing.assert_array_equal(out[i].reshape(-1)[decided], want[decided])


def test_separable_and_full_coordinates_gather_the_same() -> None:
    g = torch.Generator().manual_seed(2)
    masks = torch.randint(0, 3, (2, 1, 9, 8, 7), generator=g, dtype=torch.uint8)
    coords = [  # per-axis sources, partly outside the volume
        torch.rand(2, *[s if a == d else 1 for d in range(3)], generator=g).double() * 12 - 2
        for a, s in enumerate((9, 8, 7))
    ]
    full = [[c.expand(2, 9, 8, 7).contiguous()] for c in coords]
    split = [[c / 2, c / 2] for c in coords]  # terms are summed
    want = geometry.gather_nearest(masks, full)
    assert torch.equal(geometry.gather_nearest(masks, [[c] for c in coords]), want)
    assert torch.equal(geometry.gather_nearest(masks, split), want)


@pytest.mark.parametrize("spatial", [(13, 10), (7, 6, 5)])
def test_centroid_and_moments_equal_direct_sums(spatial) -> None:
    from qgfast.corrupt.shapes import moments

    g = torch.Generator().manual_seed(3)
    masks = (torch.rand(3, 1, *spatial, generator=g) < 0.3).to(torch.uint8) * 2
    masks[2] = 0  # empty: the centre of the volume, zero spread
    area, mean, std = moments(masks)
    cen = geometry.centroid(masks)
    for i in range(3):
        pts = np.argwhere(masks[i, 0].numpy() != 0).astype(np.float64)
        assert area[i].item() == len(pts)
        if len(pts):
            np.testing.assert_allclose(mean[i].numpy(), pts.mean(0), rtol=1e-12)
            np.testing.assert_allclose(std[i].numpy(), pts.std(0), rtol=1e-9, atol=1e-12)
            np.testing.assert_allclose(cen[i].numpy(), pts.mean(0), rtol=1e-12)
        else:
            np.testing.assert_allclose(cen[i].numpy(), (np.array(spatial) - 1) / 2)


@pytest.mark.parametrize("spatial", [(17, 13), (9, 8, 7)])
def test_native_gather_equals_the_torch_gather(spatial, monkeypatch) -> None:
    """Elastic-like coordinates (a float64 grid plus a float32 field, partly outside the
    volume, with exact half-integer ties) and affine-like ones (a per-sample offset plus
    per-axis products): the Rust one-pass gather equals the torch blocked gather bit for bit."""
    pytest.importorskip("qgfast._native")
    b, nd = 3, len(spatial)
    g = torch.Generator().manual_seed(5)
    masks = torch.randint(0, 4, (b, 1, *spatial), generator=g, dtype=torch.uint8)
    grids = geometry.axis_coords(spatial, masks.device)
    field = (4 * torch.randn(b, nd, *spatial, generator=g)).round() / 2  # many .5 ties
    elastic = [[grids[a], field[:, a]] for a in range(nd)]
    view = (b,) + (1,) * nd
    inv = torch.randn(b, nd, nd, generator=g).double()
    offset = 3 * torch.randn(b, nd, generator=g).double()
    affine = [
        [offset[:, a].view(view)] + [inv[:, a, j].view(view) * grids[j] for j in range(nd)]
        for a in range(nd)
    ]
    for coords in (elastic, affine):
        monkeypatch.delenv("QGFAST_BACKEND", raising=False)
        native = geometry._native_gather(masks, coords)
        assert native is not None
        monkeypatch.setenv("QGFAST_BACKEND", "reference")
        assert torch.equal(native, geometry.gather_nearest(masks, coords))
    assert geometry._native_gather(masks.to(torch.int64), elastic) is None  # torch path
