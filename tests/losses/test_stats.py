"""The CPU counting path of the segmentation statistics (two label maps) equals the
reference's float sums, and is the one taken on CPU unless the reference is forced."""

import pytest
import torch

from qgfast.losses import _stats
from qgfast.reference import seg_stats as reference
from qgfast.reference.seg_stats import StatsSpec


def _maps(c: int, k: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    size = (3, 1, 7, 10, 5)
    target = torch.randint(0, max(c, 2), size).to(dtype)
    pred = torch.randint(0, max(c, 2), (3 * k, *size[1:])).to(dtype)
    pred[0] = target[0]  # a perfect candidate
    pred[1] = 0  # an empty one
    return pred, target


@pytest.mark.parametrize("c", [1, 2, 4])
@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("dtype", [torch.uint8, torch.int64, torch.bool])
def test_counts_equal_the_reference_sums(monkeypatch, c, k, dtype) -> None:
    if dtype == torch.bool and c > 2:
        pytest.skip("a bool map holds two classes")
    monkeypatch.delenv("QGFAST_BACKEND", raising=False)
    pred, target = _maps(c, k, dtype)
    for squared, diff in ((False, False), (True, True), (False, True)):
        spec = StatsSpec(
            act="labels", target="labels", num_classes=c, repeats=k, squared=squared, diff=diff
        )
        got = _stats._count_labels(pred, target, spec)
        want = reference.seg_stats(pred, target, spec)
        for name, a, b in zip(got._fields, got, want, strict=True):
            assert a.dtype == b.dtype == torch.float32, name
            assert torch.equal(a, b), (name, squared, diff)


def test_non_contiguous_maps() -> None:
    pred, target = _maps(3, 2, torch.uint8)
    pred_t, target_t = pred.transpose(2, 4), target.transpose(2, 4)
    spec = StatsSpec(act="labels", target="labels", num_classes=3, repeats=2)
    got = _stats._count_labels(pred_t, target_t, spec)
    want = reference.seg_stats(pred_t, target_t, spec)
    assert torch.equal(got.I, want.I)
    assert torch.equal(got.G, want.G)


def test_cpu_label_maps_are_counted_unless_the_reference_is_forced(monkeypatch) -> None:
    pred, target = _maps(2, 1, torch.uint8)
    spec = StatsSpec(act="labels", target="labels", num_classes=2)
    calls = []
    real = _stats._count_labels

    def spy(*args):
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(_stats, "_count_labels", spy)
    monkeypatch.delenv("QGFAST_BACKEND", raising=False)
    _stats.seg_stats(pred, target, spec)
    assert calls == [1]
    monkeypatch.setenv("QGFAST_BACKEND", "reference")
    _stats.seg_stats(pred, target, spec)
    mask = torch.ones(pred.shape[0], *pred.shape[2:])
    monkeypatch.delenv("QGFAST_BACKEND")
    _stats.seg_stats(pred, target, spec, mask=mask)  # weighted voxels: summed, not counted
    probs = torch.rand(pred.shape[0], 2, *pred.shape[2:])
    _stats.seg_stats(probs, target, StatsSpec(act="hard", target="labels", num_classes=2))
    assert calls == [1]
