"""The benchmark's baseline providers compute the same morphology as qgfast (a benchmark
of a different operation would be meaningless)."""

import numpy as np
import pytest
import torch

from qgfast.bench.bench_corrupt import _providers, blob_masks


@pytest.mark.parametrize("shape", ["ball", "cube"])
@pytest.mark.parametrize("size", [(2, 1, 12, 10, 9), (3, 1, 20, 17)], ids=["3D", "2D"])
def test_every_provider_agrees_with_the_reference(shape, size) -> None:
    pytest.importorskip("scipy")
    masks = blob_masks(size, torch.device("cpu"), fraction=0.3)
    providers = _providers(torch.device("cpu"), shape)
    assert "scipy" in providers
    for erode in (True, False):
        want = providers["reference"](masks, 2, erode)
        for name, fn in providers.items():
            got = fn(masks, 2, erode)
            got = torch.from_numpy(np.stack(got)).unsqueeze(1) if isinstance(got, list) else got
            assert torch.equal(got.to(torch.uint8), want), (name, erode)


def test_blob_masks_cover_about_the_requested_fraction() -> None:
    masks = blob_masks((2, 1, 32, 32, 32), torch.device("cpu"), fraction=0.1)
    assert 0.07 < masks.float().mean().item() < 0.13


def test_authors_style_generator_scores_its_own_masks() -> None:
    pytest.importorskip("scipy")
    from qgfast.bench import authors_style_generator

    masks = blob_masks((3, 1, 40, 36), torch.device("cpu"), fraction=0.3)[:, 0].numpy().astype(bool)
    out, dice = authors_style_generator.generate(masks, k=20, seed=1)
    assert out.shape == (60, 40, 36)
    for j in range(60):
        p, t = out[j], masks[j // 20]
        denom = p.sum() + t.sum()
        assert dice[j] == pytest.approx(1.0 if denom == 0 else 2 * (p & t).sum() / denom)
    assert (dice == 1).any()
    assert (dice < 1).any()
