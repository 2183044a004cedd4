"""Elastic and grid distortion keep labels and roughly the area, are deterministic, and
reduce to the identity at zero strength; the cross-image swap picks an area-close partner."""

import math

import numpy as np
import pytest
import torch

from qgfast.corrupt import blocking, rng, warp


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


def _nearest_oracle(masks: np.ndarray, src: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """masks [B, *S]; src [B, nd, *S] source coordinates → (gathered, decided) where decided
    marks voxels whose coordinates are not within 1e-6 of a rounding tie (a different but
    equally exact evaluation order may round those either way)."""
    idx = np.rint(src).astype(np.int64)
    spatial = np.array(masks.shape[1:]).reshape(1, -1, *[1] * (masks.ndim - 1))
    inside = ((idx >= 0) & (idx < spatial)).all(1)
    clipped = np.clip(idx, 0, spatial - 1)
    batch = np.arange(masks.shape[0]).reshape(-1, *[1] * (masks.ndim - 1))
    out = masks[(batch, *np.moveaxis(clipped, 1, 0))] * inside
    decided = (np.abs(np.abs(src - np.floor(src)) - 0.5) > 1e-6).all(1)
    return out, decided


def test_normals_are_standard_and_their_halves_independent() -> None:
    z = warp._normal(4, 3, rng.STREAM_ELASTIC, 60_001, torch.device("cpu")).double()
    assert z.shape == (3, 60_001)
    assert abs(float(z.mean())) < 0.01
    assert abs(float(z.std()) - 1) < 0.01
    half = 30_001  # R cos θ for the first pairs, R sin θ for the same pairs after them
    corr = torch.corrcoef(torch.stack([z[:, :30_000].flatten(), z[:, half:].flatten()]))[0, 1]
    assert abs(float(corr)) < 0.02
    assert float((z.abs() > 3).double().mean()) == pytest.approx(0.0027, abs=0.001)


@pytest.mark.parametrize("block", [None, 50])  # whole, or a few rows at a time as on volumes
@pytest.mark.parametrize("spatial", [(31, 26), (13, 11, 9)])
def test_elastic_is_the_smoothed_noise_then_a_nearest_remap(spatial, block, monkeypatch) -> None:
    ndi = pytest.importorskip("scipy.ndimage")
    if block:
        monkeypatch.setattr(blocking, "CPU_BLOCK", block)
    b, nd, alpha, sigma = 2, len(spatial), 6.0, 2.0
    field = warp.elastic_displacement(b, spatial, alpha, sigma, 5, torch.device("cpu"))
    noise = alpha * warp._normal(5, b, rng.STREAM_ELASTIC, nd * math.prod(spatial), "cpu")
    noise = noise.view(b, nd, *spatial).double().numpy()
    k = 2 * math.ceil(3 * sigma) + 1
    want = ndi.gaussian_filter(noise, (0, 0, *[sigma] * nd), mode="mirror", truncate=k // 2 / sigma)
    np.testing.assert_allclose(field.numpy(), want, atol=1e-5)

    g = torch.Generator().manual_seed(0)
    masks = (torch.rand(b, 1, *spatial, generator=g) < 0.4).to(torch.uint8) * 3
    out = warp.elastic(masks, alpha, sigma, seed=5)[:, 0].numpy()
    src = np.indices(spatial)[None] + field.double().numpy()
    expected, decided = _nearest_oracle(masks[:, 0].numpy(), src)
    assert decided.mean() > 0.99
    np.testing.assert_array_equal(out[decided], expected[decided])


def test_normals_drawn_block_by_block_equal_the_whole_draw(monkeypatch) -> None:
    whole = warp._normal(2, 3, rng.STREAM_ELASTIC, 1001, torch.device("cpu"))
    monkeypatch.setattr(blocking, "CPU_BLOCK", 16)
    assert torch.equal(warp._normal(2, 3, rng.STREAM_ELASTIC, 1001, torch.device("cpu")), whole)
