"""Fused segmentation statistics vs the PyTorch reference, by the tolerance rule (values and
gradients), over every activation × target × cross-entropy mode, odd 2D/3D shapes, masks,
class weights, repeats, low precision and strided inputs."""

import pytest
import torch

from qgfast.losses._stats import SegStatsFunction
from qgfast.reference.seg_stats import Stats, StatsSpec
from qgfast.reference.seg_stats import seg_stats as reference_stats
from qgfast.testing import assert_matches_reference

pytest.importorskip("triton")
from qgfast.kernels.seg_stats import seg_stats_forward

SHAPES = [(3, 2, 17, 23, 9), (2, 1, 13, 11), (1, 5, 7, 3, 5)]

# (act, target, ce, squared)
MODES = [
    ("softmax", "labels", "softmax", False),
    ("softmax", "dense", "softmax", True),
    ("sigmoid", "labels", "none", False),
    ("none", "dense", "none", True),
    ("sigmoid", "dense", "bce", False),
    ("hard", "dense_hard", "none", False),
    ("labels", "labels", "none", False),
]


def _inputs(shape, spec: StatsSpec, device, dtype=torch.float32, repeats=1):
    b, c, *s = shape
    bt = b // repeats
    if spec.act == "labels":
        x = torch.randint(
            0, max(c, 2) if c > 1 else 2, (b, 1, *s), device=device, dtype=torch.uint8
        )
    else:
        x = (2 * torch.randn(b, c, *s, device=device)).to(dtype)
    if spec.target == "labels":
        t = torch.randint(0, max(c, 2) if c > 1 else 2, (bt, 1, *s), device=device)
    else:
        t = torch.rand(bt, c, *s, device=device)
        t = t / t.sum(1, keepdim=True) if c > 1 else t
    return x, t


def _spec_for(mode, c, repeats=1):
    act, target, ce, squared = mode
    if ce == "bce" and c != 1:
        pytest.skip("bce needs C = 1")
    if ce == "softmax" and c == 1:
        pytest.skip("softmax CE needs C >= 2")
    # D is asked for whenever the mode is not squared-without-ce, so both kernel paths run
    diff = not (squared and ce == "none")
    return StatsSpec(
        act=act, target=target, num_classes=c, ce=ce, squared=squared, repeats=repeats, diff=diff
    )


def _check(x, t, spec, mask=None, cw=None):
    def kernel(x, t):
        if spec.differentiable and x.requires_grad:
            return SegStatsFunction.apply(x, t, mask, cw, spec)
        return tuple(seg_stats_forward(x, t, spec, mask, cw))

    def reference(x, t):
        m = None if mask is None else mask.to(x.dtype if x.is_floating_point() else torch.float32)
        return tuple(reference_stats(x, t, spec, m, cw))

    assert_matches_reference(
        kernel, reference, [x, t], grad=spec.differentiable, differentiable=[0]
    )


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("mode", MODES, ids=lambda m: "-".join(str(v) for v in m))
def test_matches_reference(device, shape, mode) -> None:
    spec = _spec_for(mode, shape[1])
    x, t = _inputs(shape, spec, device)
    _check(x, t, spec)


@pytest.mark.parametrize("mode", MODES[:5], ids=lambda m: "-".join(str(v) for v in m))
def test_voxel_mask_and_class_weights(device, mode) -> None:
    shape = (2, 3, 9, 5, 3) if mode[2] != "bce" else (2, 1, 9, 5, 3)
    spec = _spec_for(mode, shape[1])
    x, t = _inputs(shape, spec, device)
    mask = torch.rand(shape[0], *shape[2:], device=device)
    mask[0, :4] = 0  # a masked-out slab
    cw = torch.rand(shape[1], device=device) + 0.25 if spec.ce != "none" else None
    _check(x, t, spec, mask=mask, cw=cw)


@pytest.mark.parametrize("act", ["hard", "labels", "none"])
def test_repeats_score_many_predictions_against_one_target(device, act) -> None:
    spec = StatsSpec(act=act, target="labels", num_classes=3, repeats=3)
    x, t = _inputs((6, 3, 11, 7), spec, device, repeats=3)
    _check(x, t, spec)
    # the same as repeating the target explicitly
    got = seg_stats_forward(x, t, spec)
    spec1 = StatsSpec(act=act, target="labels", num_classes=3)
    want = seg_stats_forward(x, t.repeat_interleave(3, 0), spec1)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("mode", [MODES[0], MODES[4]], ids=["softmax-ce", "bce"])
def test_low_precision_logits_accumulate_in_fp32(device, dtype, mode) -> None:
    shape = (2, 4, 15, 9) if mode[2] == "softmax" else (2, 1, 15, 9)
    spec = _spec_for(mode, shape[1])
    x, t = _inputs(shape, spec, device, dtype=dtype)
    _check(x, t, spec)
    stats = seg_stats_forward(x, t, spec)
    assert all(s.dtype == torch.float32 for s in stats)


def test_channels_last_and_sliced_inputs_are_read_in_place(device) -> None:
    spec = StatsSpec(act="softmax", target="dense", num_classes=3, ce="softmax")
    x = torch.randn(2, 3, 9, 14, device=device).to(memory_format=torch.channels_last)
    t = torch.softmax(torch.randn(2, 3, 9, 14, device=device), 1)
    _check(x, t, spec)
    big = torch.randn(2, 5, 9, 14, device=device)
    _check(big[:, 1:4], t, spec)  # channel slice: strided, not copied
    grad_x = x.clone().requires_grad_()
    stats = SegStatsFunction.apply(grad_x, t, None, None, spec)
    stats[0].sum().backward()
    assert grad_x.grad.shape == x.shape


def test_empty_and_full_masks(device) -> None:
    spec = StatsSpec(act="labels", target="labels", num_classes=2)
    empty = torch.zeros(2, 1, 7, 5, dtype=torch.uint8, device=device)
    full = torch.ones_like(empty)
    stats = seg_stats_forward(empty, full, spec)
    torch.testing.assert_close(stats.I, torch.zeros(2, 2, device=device))
    torch.testing.assert_close(stats.P[:, 0], torch.full((2,), 35.0, device=device))
    torch.testing.assert_close(stats.G[:, 1], torch.full((2,), 35.0, device=device))
    _check(empty, full, spec)


def test_zero_gradient_inputs_give_zero_dx(device) -> None:
    spec = StatsSpec(act="softmax", target="labels", num_classes=3, ce="softmax")
    x, t = _inputs((2, 3, 5, 5), spec, device)
    x.requires_grad_()
    stats = Stats(*SegStatsFunction.apply(x, t, None, None, spec))
    (0.0 * stats.ce_sum.sum() + 0.0 * stats.I.sum()).backward()
    assert torch.count_nonzero(x.grad) == 0


@pytest.mark.gpu
def test_more_than_2_pow_31_elements_use_int64_offsets() -> None:
    # 2 × 2 × 1024³ + a bit: element offsets beyond 2^31 in the second sample.
    spec = StatsSpec(act="sigmoid", target="labels", num_classes=1)
    n = 2**30 + 17
    x = torch.zeros(2, 1, n, device="cuda", dtype=torch.bfloat16)
    t = torch.zeros(2, 1, n, device="cuda", dtype=torch.uint8)
    t[1, 0, -5:] = 1
    stats = seg_stats_forward(x, t, spec)
    assert stats.G[1, 0].item() == 5.0
    torch.testing.assert_close(
        stats.P[1, 0], torch.tensor(n * 0.5, device="cuda"), rtol=1e-5, atol=0
    )
    torch.testing.assert_close(stats.I[1, 0], torch.tensor(2.5, device="cuda"))
