"""The CPU fast paths of the corruption pool (``qgfast._native``: Gaussian filter, normals,
profiles and moments, shape fills, blobs, components, label counts) against the plain
PyTorch reference (``QGFAST_BACKEND=reference``), op by op and for the whole generator.

Exact everywhere except where floats are summed in another order: the Gaussian filter and
the Box–Muller normals agree to float32 rounding, so the smoothing and elastic ops may
differ on the few voxels whose value sits on the threshold or a rounding tie."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from qgfast.backend import native_extension, use_backend
from qgfast.corrupt import VQMGenerator, blobs, components, geometry, rng, shapes, smooth, warp
from qgfast.corrupt.pool import (
    blob_category_pool,
    catastrophic_pool,
    heavy_pool,
    single_pool,
)
from qgfast.losses.scores import dice_scores

pytestmark = pytest.mark.skipif(native_extension() is None, reason="needs qgfast._native")

POOL = single_pool() + single_pool("ball") + heavy_pool() + catastrophic_pool()
POOL += blob_category_pool()
ROUNDED = ("elastic", "smooth")  # ops whose fast path agrees to float32 rounding


def _masks(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    """uint8 [5, 1, *shape]: two blobby masks with several components, an ellipse, one
    voxel, and an empty one."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand((2, 1, *(max(2, s // 4) for s in shape)), generator=g)
    mode = "bilinear" if len(shape) == 2 else "trilinear"
    smooth_noise = torch.nn.functional.interpolate(coarse, size=shape, mode=mode)
    grids = torch.meshgrid(*(torch.linspace(-1, 1, n) for n in shape), indexing="ij")
    ellipse = (sum((g / (0.5 + 0.2 * a)) ** 2 for a, g in enumerate(grids)) < 1)[None, None]
    dot = torch.zeros((1, 1, *shape), dtype=torch.bool)
    dot.view(-1)[dot.numel() // 3] = True
    empty = torch.zeros_like(dot)
    parts = [smooth_noise > 0.55, ellipse, dot, empty]
    return torch.cat(parts).to(torch.uint8)


def _both(fn, *args, **kwargs):
    """fn's result on the fast path and under the forced reference."""
    fast = fn(*args, **kwargs)
    with use_backend("reference"):
        slow = fn(*args, **kwargs)
    return fast, slow


@pytest.mark.parametrize("op", POOL, ids=lambda op: op.name)
@pytest.mark.parametrize("shape", [(37, 29), (13, 11, 9)], ids=["2d", "3d"])
def test_every_op_takes_the_same_result_on_the_fast_path(op, shape):
    if len(shape) not in op.spatial_dims:
        pytest.skip(f"{op.name} is {op.spatial_dims}D only")
    masks = _masks(shape)
    fast, slow = _both(op.fn, masks, 11, max(shape) / 224)
    assert fast.dtype == slow.dtype
    assert fast.shape == slow.shape
    if op.name.startswith(ROUNDED):
        assert (fast != slow).float().mean() <= 0.01, op.name
    else:
        assert torch.equal(fast, slow), op.name


@pytest.mark.parametrize("shape", [(2, 1, 9, 13), (3, 1, 5, 7, 6), (1, 1, 2, 17), (1, 1, 70, 45)])
@pytest.mark.parametrize("kernel", [3, 9, 25])
def test_gaussian_filter_agrees_to_float_rounding(shape, kernel):
    x = torch.rand(shape, generator=torch.Generator().manual_seed(kernel))
    fast, slow = _both(smooth.gaussian_filter, x, kernel, kernel / 5)
    torch.testing.assert_close(fast, slow, rtol=0, atol=2e-6)


def test_normals_agree_to_float_rounding():
    with rng.sample_keys(torch.tensor([0, 7, 123456])):
        fast, slow = _both(warp._normal, 9, 3, rng.STREAM_ELASTIC, 4097, torch.device("cpu"))
    assert fast.dtype == slow.dtype == torch.float32
    torch.testing.assert_close(fast, slow, rtol=0, atol=5e-6)


@pytest.mark.parametrize("shape", [(37, 29), (13, 11, 9)])
def test_the_one_call_elastic_is_its_three_steps(shape):
    masks = _masks(shape)
    field = warp.elastic_displacement(masks.shape[0], shape, 3.5, 1.5, 2, torch.device("cpu"))
    grids = geometry.axis_coords(shape, torch.device("cpu"))
    steps = geometry.gather_nearest(masks, [[grids[a], field[:, a]] for a in range(len(shape))])
    assert torch.equal(warp.elastic(masks, 3.5, 1.5, seed=2), steps)


@pytest.mark.parametrize("shape", [(37, 29), (13, 11, 9)])
@pytest.mark.parametrize("kernel", [3, 11])
def test_the_one_call_smoothing_is_its_steps(shape, kernel):
    masks = _masks(shape) * 3  # any nonzero label is foreground
    blurred = smooth.gaussian_filter(
        (masks != 0).to(torch.float32), kernel, smooth.opencv_sigma(kernel)
    )
    assert torch.equal(smooth.gaussian_smooth(masks, kernel), (blurred > 0.5).to(torch.uint8))


@pytest.mark.parametrize("shape", [(37, 29), (13, 11, 9), (40,)])
def test_profiles_and_moments_are_the_same_integers(shape):
    masks = _masks(shape) if len(shape) > 1 else (torch.rand(3, 1, 40) > 0.5).to(torch.uint8)
    fast, slow = _both(geometry.axis_profiles, masks)
    fast.append(geometry.cross_moments(masks))
    with use_backend("reference"):
        slow.append(geometry.cross_moments(masks))
    for f, s in zip(fast, slow, strict=True):
        assert f.dtype == s.dtype == torch.int64
        assert torch.equal(f, s)


@pytest.mark.parametrize("shape", [(37, 29), (13, 11, 9)])
@pytest.mark.parametrize("spread", [0.3, 1.0, 1.5])
def test_gaussian_blob_keeps_exactly_the_area_on_both_paths(shape, spread):
    masks = _masks(shape)
    fast, slow = _both(shapes.gaussian_blob, masks, spread)
    assert torch.equal(fast, slow)
    assert torch.equal(fast.flatten(1).sum(1), masks.flatten(1).sum(1))


@pytest.mark.parametrize("mode", ["hole", "island"])
@pytest.mark.parametrize("elongation", [None, (0.5, 2.0)])
def test_blob_parameters_and_painting_are_the_same(mode, elongation):
    masks = _masks((31, 26, 7))
    n = torch.tensor([3, 0, 2, 5, 1])
    fast, slow = _both(blobs.blob_parameters, masks, n, (1, 4), mode, 5)
    assert all(torch.equal(f, s) for f, s in zip(fast, slow, strict=True))
    fast, slow = _both(blobs.add_blobs, masks, n, (1, 4), mode, seed=5, elongation=elongation)
    assert torch.equal(fast, slow)


def test_component_selection_is_the_same():
    masks = _masks((41, 37), seed=3)
    for fn in (components.keep_largest_component, components.drop_random_component):
        fast, slow = _both(fn, masks)
        assert torch.equal(fast, slow), fn.__name__


@pytest.mark.parametrize("classes", [1, 3])
def test_label_counts_give_the_same_dice(classes):
    g = torch.Generator().manual_seed(classes)
    target = torch.randint(0, max(2, classes), (3, 1, 19, 23), generator=g, dtype=torch.uint8)
    pred = torch.randint(0, max(2, classes), (6, 1, 19, 23), generator=g, dtype=torch.uint8)
    n = None if classes == 1 else classes
    kwargs = {"num_classes": n or 1, "repeats": 2, "validate": False}
    fast, slow = _both(lambda p, t: dice_scores(p, t, **kwargs), pred, target)
    assert torch.equal(fast, slow)
    if classes == 1:  # bool maps take the same native count
        assert torch.equal(dice_scores(pred.bool(), target.bool(), **kwargs), fast)


@pytest.mark.parametrize("shape", [(48, 40), (14, 12, 10)], ids=["2d", "3d"])
def test_the_generator_agrees_with_its_reference(shape):
    masks = _masks(shape)
    gen = VQMGenerator()
    fast, slow = _both(lambda m: gen.generate(m, k=12, seed=4), masks)
    assert torch.equal(fast.ops, slow.ops)
    differs = (fast.masks != slow.masks).flatten(1).any(1)
    rounded = [
        any(gen.op_names[i].startswith(ROUNDED) for i in row if i >= 0) for row in fast.ops.tolist()
    ]
    assert not bool(differs[~torch.tensor(rounded)].any()), "an exact op differs"
    np.testing.assert_allclose(fast.quality.numpy(), slow.quality.numpy(), atol=0.02)
