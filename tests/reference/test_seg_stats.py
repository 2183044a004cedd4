"""The reference statistics: gradcheck in float64, and spot values from first principles."""

import pytest
import torch

from qgfast.reference.seg_stats import StatsSpec, seg_stats

SPECS = [
    StatsSpec(act="softmax", target="labels", num_classes=3, ce="softmax"),
    StatsSpec(act="softmax", target="dense", num_classes=3, ce="softmax", squared=True, diff=True),
    StatsSpec(act="sigmoid", target="dense", num_classes=1, ce="bce"),
    StatsSpec(act="none", target="dense", num_classes=2, absolute=True, diff=True),
]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.act}-{s.target}-{s.ce}")
def test_gradcheck_float64(spec: StatsSpec) -> None:
    c = spec.num_classes
    x = torch.randn(2, c, 3, 4, dtype=torch.float64, requires_grad=True)
    if spec.target == "labels":
        t = torch.randint(0, c, (2, 1, 3, 4))
    else:
        t = torch.rand(2, c, 3, 4, dtype=torch.float64)
    mask = torch.rand(2, 3, 4, dtype=torch.float64)
    cw = torch.rand(c, dtype=torch.float64) + 0.5 if spec.ce != "none" else None
    if spec.absolute:  # keep |p - t| and |p| away from their kinks
        x = (x.detach().abs() + 0.1).requires_grad_()
        t = -t

    def fn(x):
        s = seg_stats(x, t, spec, mask, cw)
        return s.I, s.P, s.D, s.ce_sum

    assert torch.autograd.gradcheck(fn, (x,))


def test_values_from_first_principles() -> None:
    spec = StatsSpec(act="labels", target="labels", num_classes=2, repeats=2, diff=True)
    pred = torch.tensor([[[1, 1, 0, 0]], [[0, 0, 0, 0]]], dtype=torch.uint8)
    target = torch.tensor([[[1, 0, 1, 0]]])
    s = seg_stats(pred, target, spec)
    torch.testing.assert_close(s.I, torch.tensor([[1.0, 1.0], [2.0, 0.0]]))
    torch.testing.assert_close(s.P, torch.tensor([[2.0, 2.0], [4.0, 0.0]]))
    torch.testing.assert_close(s.G, torch.tensor([[2.0, 2.0], [2.0, 2.0]]))
    torch.testing.assert_close(s.D, torch.tensor([[2.0, 2.0], [2.0, 2.0]]))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"act": "sigmoid", "target": "dense", "num_classes": 2, "ce": "bce"}, "C = 1"),
        ({"act": "softmax", "target": "labels", "num_classes": 1, "ce": "softmax"}, "C >= 2"),
        ({"act": "hard", "target": "labels", "num_classes": 2, "ce": "softmax"}, "needs logits"),
        ({"act": "none", "target": "dense", "num_classes": 0}, "num_classes"),
        ({"act": "none", "target": "dense", "num_classes": 2, "repeats": 0}, "repeats"),
    ],
)
def test_spec_rejects_impossible_combinations(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        StatsSpec(**kwargs)
