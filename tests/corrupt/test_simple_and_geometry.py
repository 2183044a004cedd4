"""Whole-mask and geometric corruptions: semantics against direct computations,
determinism per (seed, sample), 2D and 3D."""

import math

import pytest
import torch

from qgfast.corrupt import geometry, simple


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
