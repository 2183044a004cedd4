"""Elastic and grid distortion keep labels and roughly the area, are deterministic, and
reduce to the identity at zero strength; the cross-image swap picks an area-close partner."""

import pytest
import torch

from qgfast.corrupt import warp


def _disc(b=2, size=48, r=12) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    d = (((yy - 24) ** 2 + (xx - 24) ** 2) <= r * r).to(torch.uint8)
    return d.expand(b, 1, size, size).clone()


def test_zero_strength_is_identity() -> None:
    m = _disc()
    assert torch.equal(warp.elastic(m, 0.0, 4.0), m)
    assert torch.equal(warp.grid_distortion(m, 5, 0.0), m)


@pytest.mark.parametrize("op", ["elastic", "grid"])
def test_deformations_change_the_boundary_but_keep_labels_and_area(op) -> None:
    m = _disc() * 2
    if op == "elastic":
        out = warp.elastic(m, 60.0, 5.0, seed=1)
        again = warp.elastic(m, 60.0, 5.0, seed=1)
    else:
        out = warp.grid_distortion(m, 5, 0.4, seed=1)
        again = warp.grid_distortion(m, 5, 0.4, seed=1)
    assert torch.equal(out, again)
    assert set(out.unique().tolist()) <= {0, 2}
    assert (out != m).any()
    assert out[0].sum().item() == pytest.approx(m[0].sum().item(), rel=0.35)
    assert not torch.equal(out[0], out[1])  # each sample its own deformation


def test_3d_elastic_runs_and_is_deterministic() -> None:
    m = torch.zeros(1, 1, 16, 14, 12, dtype=torch.uint8)
    m[..., 4:12, 3:11, 2:10] = 1
    a = warp.elastic(m, 30.0, 3.0, seed=2)
    assert torch.equal(a, warp.elastic(m, 30.0, 3.0, seed=2))
    assert a.sum() > 0


def test_cross_image_swap_picks_the_closest_area() -> None:
    m = torch.zeros(5, 1, 10, 10, dtype=torch.uint8)
    for i, area in enumerate([10, 12, 40, 41, 80]):
        m[i, 0].view(-1)[:area] = 1
    out = warp.cross_image_swap(m, fraction=0.2)  # top = 1: the single closest other
    areas = out.sum((1, 2, 3)).tolist()
    assert areas == [12, 10, 41, 40, 41]
    assert torch.equal(warp.cross_image_swap(m[:1]), m[:1])
