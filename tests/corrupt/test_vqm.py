"""The VQM generator: category and op frequencies follow the configured weights (chi-square),
determinism independent of batch size, quality targets equal an independent Dice, chained
ops distinct and blob-free, the weak-model hook, 3D pools, clear errors."""

import numpy as np
import pytest
import torch

from qgfast.corrupt.pool import BLOB_OPS, CATEGORIES
from qgfast.corrupt.vqm import VQMGenerator

stats = pytest.importorskip("scipy.stats")


def _discs(b=4, size=48) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    return torch.stack(
        [(((yy - 22 - i) ** 2 + (xx - 24) ** 2) <= (8 + 2 * i) ** 2) for i in range(b)]
    ).to(torch.uint8)[:, None]


def _category_of(gen: VQMGenerator, row: list[int]) -> str:
    first = gen.op_names[row[0]]
    if first in ("identity", "cross_image"):
        return first
    if sum(i >= 0 for i in row) > 1:
        return "chained"
    for category, pool in gen.pools.items():
        if any(op.name == first for op in pool):
            return category
    raise AssertionError(first)


def test_category_frequencies_match_the_weights() -> None:
    gen = VQMGenerator(chain_lengths=(2, 3))
    n = 20000
    rows = gen.plan(torch.arange(n), spatial_dims=2, seed=3).tolist()
    names = list(CATEGORIES)
    counts = np.array([sum(_category_of(gen, r) == c for r in rows) for c in names])
    expected = np.array([CATEGORIES[c] for c in names]) * n
    assert stats.chisquare(counts, expected).pvalue > 1e-3, dict(zip(names, counts, strict=True))


def test_single_op_frequencies_match_the_pool_weights_in_3d() -> None:
    gen = VQMGenerator(categories={"single": 1.0})
    n = 20000
    rows = gen.plan(torch.arange(n), spatial_dims=3, seed=5)[:, 0].tolist()
    pool = [op for op in gen.pools["single"] if 3 in op.spatial_dims]
    counts = np.array([rows.count(gen.op_names.index(op.name)) for op in pool])
    weights = np.array([op.weight for op in pool])
    assert stats.chisquare(counts, weights / weights.sum() * n).pvalue > 1e-3
    assert "convex_hull" not in {op.name for op in pool}  # 2D-only ops leave a 3D pool


def test_chained_ops_are_distinct_and_never_blobs() -> None:
    gen = VQMGenerator(categories={"chained": 1.0})
    rows = gen.plan(torch.arange(3000), spatial_dims=2, seed=1).tolist()
    lengths = set()
    for row in rows:
        used = [gen.op_names[i] for i in row if i >= 0]
        lengths.add(len(used))
        assert len(set(used)) == len(used)
        assert not set(used) & set(BLOB_OPS)
    assert lengths == {2, 3}


def test_quality_is_the_hard_dice_and_identity_scores_one() -> None:
    gen = VQMGenerator()
    masks = _discs()
    out = gen.generate(masks, k=6, seed=2)
    assert out.masks.shape == (24, 1, 48, 48)
    assert out.masks.dtype == masks.dtype
    for j in range(24):
        p, t = out.masks[j, 0].numpy().astype(bool), masks[j // 6, 0].numpy().astype(bool)
        denom = p.sum() + t.sum()
        want = 1.0 if denom == 0 else 2 * (p & t).sum() / denom
        assert out.quality[j].item() == pytest.approx(want, abs=1e-6)
        if gen.op_names[out.ops[j, 0]] == "identity":
            assert torch.equal(out.masks[j], masks[j // 6])


def test_same_seed_same_copies_whatever_the_batch_size() -> None:
    gen = VQMGenerator()
    masks = _discs()
    full = gen.generate(masks, k=5, seed=9)
    again = gen.generate(masks, k=5, seed=9)
    assert torch.equal(full.masks, again.masks)
    assert torch.equal(full.ops, again.ops)
    first = gen.generate(masks[:1], k=5, seed=9)
    # cross-image copies depend on the other samples; every other copy must agree
    same = full.ops[:5, 0] != gen.op_names.index("cross_image")
    assert torch.equal(first.masks[same], full.masks[:5][same])
    assert not torch.equal(full.masks, gen.generate(masks, k=5, seed=10).masks)


def test_weak_model_hook() -> None:
    def model(images: torch.Tensor) -> torch.Tensor:  # predicts the left half
        logits = -torch.ones(images.shape[0], 1, *images.shape[2:])
        logits[..., : images.shape[-1] // 2] = 1.0
        return logits

    gen = VQMGenerator(weak_models=[model], p_weak=1.0)
    masks = _discs(2)
    images = torch.randn(2, 3, 48, 48)
    out = gen.generate(masks, images=images, k=3, seed=0)
    assert (out.ops[:, 0] == gen.op_names.index("weak_model")).all()
    assert (out.masks[..., :24] == 1).all()
    assert (out.masks[..., 24:] == 0).all()
    without_images = gen.generate(masks, k=3, seed=0)  # no images: the hook stays off
    assert not (without_images.ops[:, 0] == gen.op_names.index("weak_model")).any()


def test_3d_generation_runs() -> None:
    m = torch.zeros(2, 1, 24, 22, 20, dtype=torch.uint8)
    m[0, 0, 6:18, 5:16, 4:15] = 1
    m[1, 0, 8:14, 8:14, 8:14] = 1
    out = VQMGenerator().generate(m, k=4, seed=1)
    assert out.masks.shape == (8, 1, 24, 22, 20)
    assert ((out.quality >= 0) & (out.quality <= 1)).all()


def test_errors() -> None:
    with pytest.raises(ValueError, match="unknown categories"):
        VQMGenerator({"sneaky": 1.0})
    with pytest.raises(ValueError, match="needs weak_models"):
        VQMGenerator(p_weak=0.1)
    labels = torch.full((1, 1, 8, 8), 2, dtype=torch.uint8)
    with pytest.raises(ValueError, match="pass num_classes for label maps"):
        VQMGenerator().generate(labels)
    with pytest.raises(ValueError, match="num_classes=2"):
        VQMGenerator().generate(labels, num_classes=2)
    with pytest.raises(TypeError, match="integer or bool"):
        VQMGenerator().generate(torch.rand(1, 1, 8, 8))
    with pytest.raises(ValueError, match="k must be >= 1"):
        VQMGenerator().generate(_discs(1), k=0)


@pytest.mark.gpu
def test_paper_setting_on_gpu() -> None:
    masks = _discs(32, 224 // 2).repeat_interleave(1, 0)
    masks = torch.nn.functional.interpolate(masks.float(), size=(224, 224)).to(torch.uint8).cuda()
    gen = VQMGenerator()
    out = gen.generate(masks, k=50, seed=0)
    assert out.masks.is_cuda
    assert out.masks.shape == (1600, 1, 224, 224)
    p = out.masks.bool().flatten(1)
    t = masks.bool().repeat_interleave(50, 0).flatten(1)
    inter = (p & t).sum(1).double()
    denom = (p.sum(1) + t.sum(1)).double()
    want = torch.where(denom > 0, 2 * inter / denom.clamp_min(1), torch.ones_like(denom))
    torch.testing.assert_close(out.quality.double(), want, atol=1e-6, rtol=0)
    cpu_ops = gen.plan(torch.arange(1600), 2, 0)
    assert torch.equal(out.ops.cpu(), cpu_ops)  # the same draws on every device


def test_label_maps_corrupt_one_class_per_copy_with_per_class_targets() -> None:
    discs = _discs(3)
    labels = discs.clone()
    labels[:, :, 20:30, :] *= 2  # a second class across the middle band
    labels[0, 0, :4, :4] = 3  # a third, small class in one sample
    gen = VQMGenerator(categories={"single": 1.0})
    out = gen.generate(labels, k=8, seed=4, num_classes=4)
    assert out.quality.shape == (24, 3)
    for j in range(24):
        got, gt = out.masks[j, 0], labels[j // 8, 0]
        changed = (got != gt).nonzero()
        if len(changed):
            # one class moved: some class c is on one side of every changed voxel
            before, after = gt[tuple(changed.T)], got[tuple(changed.T)]
            assert any(((before == c) | (after == c)).all() for c in range(1, 4))
        for c in range(1, 4):
            p, t = got == c, gt == c
            denom = (p.sum() + t.sum()).item()
            want = 1.0 if denom == 0 else 2 * (p & t).sum().item() / denom
            assert out.quality[j, c - 1].item() == pytest.approx(want, abs=1e-6)
