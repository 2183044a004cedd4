"""add_blobs: holes on foreground, islands on background, ball and ellipsoid shapes,
per-sample counts, determinism per (seed, sample) independent of batch composition, both
backends equal."""

import pytest
import torch

from qgfast.corrupt import add_blobs
from qgfast.corrupt.blobs import blob_axes, blob_parameters


def _masks(size=(3, 1, 20, 18, 12)) -> torch.Tensor:
    """A box of foreground in the middle of each sample."""
    m = torch.zeros(size, dtype=torch.uint8)
    box = (slice(4, 15), slice(3, 14), slice(2, 10))[: len(size) - 2]
    m[(..., *box)] = 1
    return m


def test_holes_are_centred_on_foreground_and_islands_on_background(backend) -> None:
    masks = _masks()
    centres, radii = blob_parameters(masks, 4, (1, 3), "hole", seed=7)
    for b in range(3):
        for c in centres[b]:
            assert masks[b, 0][tuple(c.tolist())] == 1
    assert ((radii >= 1) & (radii <= 3)).all()
    centres, _ = blob_parameters(masks, 4, (1, 3), "island", seed=7)
    for b in range(3):
        for c in centres[b]:
            assert masks[b, 0][tuple(c.tolist())] == 0
    holes = add_blobs(masks, 4, (1, 3), "hole", seed=7)
    islands = add_blobs(masks, 4, (1, 3), "island", seed=7, value=2)
    assert (holes <= masks).all()  # holes only remove
    assert holes.sum() < masks.sum()
    assert ((islands == masks) | (islands == 2)).all()  # islands only add the value
    assert (islands == 2).any()


def test_blobs_are_balls_of_the_drawn_radius(backend) -> None:
    masks = torch.ones(1, 1, 31, 31, 31, dtype=torch.uint8)
    out = add_blobs(masks, 1, (4, 4), "hole", seed=3)
    centres, _ = blob_parameters(masks, 1, (4, 4), "hole", seed=3)
    c = centres[0, 0]
    grid = torch.stack(torch.meshgrid(*[torch.arange(31)] * 3, indexing="ij"))
    ball = ((grid - c.view(3, 1, 1, 1)) ** 2).sum(0) <= 16
    assert torch.equal(out[0, 0] == 0, ball)


def test_ellipsoids_have_the_drawn_semi_axes(backend) -> None:
    """Σ (d_a / r_a)² ≤ 1 in floating point, against the semi-axes blob_axes drew."""
    for spatial in [(41, 41, 41), (45, 45)]:
        masks = torch.ones(2, 1, *spatial, dtype=torch.uint8)
        out = add_blobs(masks, 1, (5, 5), "hole", seed=4, elongation=(0.4, 2.0))
        centres, radii = blob_parameters(masks, 1, (5, 5), "hole", seed=4)
        axes = blob_axes(radii, len(spatial), (0.4, 2.0), seed=4)
        assert (axes > 0).all()
        assert len({tuple(a) for a in axes[:, 0].tolist()}) > 1  # really stretched
        grid = torch.stack(torch.meshgrid(*[torch.arange(s) for s in spatial], indexing="ij"))
        view = (len(spatial),) + (1,) * len(spatial)
        for b in range(2):
            d = (grid - centres[b, 0].view(view)).double() / axes[b, 0].double().view(view)
            assert torch.equal(out[b, 0] == 0, (d**2).sum(0) <= 1)


def test_both_backends_paint_the_same(monkeypatch) -> None:
    for size in [(3, 1, 20, 18, 12), (4, 1, 25, 19)]:
        for elongation in (None, (0.3, 2.5)):
            masks = _masks(size)
            n = torch.tensor([0, 3, 5, 1][: size[0]])
            kw = {"seed": 11, "elongation": elongation}
            monkeypatch.setenv("QGFAST_BACKEND", "triton")
            got = add_blobs(masks, n, (0, 4), "hole", **kw)
            monkeypatch.setenv("QGFAST_BACKEND", "reference")
            want = add_blobs(masks, n, (0, 4), "hole", **kw)
            assert torch.equal(got, want), (size, elongation)
            assert torch.equal(got[0], masks[0])  # n = 0: untouched


def test_same_seed_same_output_regardless_of_batch_size(backend) -> None:
    masks = _masks()
    full = add_blobs(masks, 3, (1, 3), "hole", seed=5)
    first_two = add_blobs(masks[:2], 3, (1, 3), "hole", seed=5)
    assert torch.equal(full[:2], first_two)
    assert not torch.equal(full, add_blobs(masks, 3, (1, 3), "hole", seed=6))


def test_nothing_to_centre_on_means_no_blob(backend) -> None:
    empty = torch.zeros(2, 1, 9, 9, dtype=torch.uint8)
    assert torch.equal(add_blobs(empty, 3, (1, 2), "hole"), empty)
    full = torch.ones(2, 1, 9, 9, dtype=torch.bool)
    assert torch.equal(add_blobs(full, 3, (1, 2), "island"), full)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n": -1, "radius_range": (1, 2)}, ValueError, "n must be >= 0"),
        ({"n": 1, "radius_range": (3, 2)}, ValueError, "0 <= lo <= hi"),
        ({"n": 1, "radius_range": (1, 50)}, ValueError, "larger than the volume"),
        ({"n": 1, "radius_range": (1, 2), "mode": "crater"}, ValueError, "mode must be"),
        ({"n": 1.5, "radius_range": (1, 2)}, TypeError, "n must be an int"),
        ({"n": 1, "radius_range": (1, 2), "elongation": (0, 2)}, ValueError, "0 < lo <= hi"),
    ],
)
def test_bad_arguments(kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        add_blobs(_masks(), **kwargs)
