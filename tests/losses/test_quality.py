"""Quality weights, the quality-weighted pseudolabel loss, softmax MSE and QAR against
explicit per-sample computations, on both backends."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from qgfast.backend import use_backend
from qgfast.losses import (
    QualityWeightedDiceCELoss,
    per_sample_dice_ce,
    qar_loss,
    quality_weighted_dice_ce,
    quality_weights,
    softmax_mse,
)
from qgfast.testing import assert_matches_reference


def test_quality_weights_formula() -> None:
    q = torch.tensor([0.0, 0.49, 0.5, 0.8, 1.0])
    torch.testing.assert_close(quality_weights(q), torch.tensor([0.0, 0.0, 0.25, 0.64, 1.0]))
    torch.testing.assert_close(
        quality_weights(q, threshold=0.0, power=1.0), torch.tensor([0.0, 0.49, 0.5, 0.8, 1.0])
    )
    assert not quality_weights(q.requires_grad_()).requires_grad


def _explicit_per_sample(logits, labels, lambda_ce=0.5, lambda_dice=0.5, mask=None, smooth=1e-6):
    """One sample at a time, with F.cross_entropy / F.binary_cross_entropy_with_logits."""
    out = []
    c = logits.shape[1]
    for j in range(logits.shape[0]):
        x = logits[j : j + 1].double()
        m = (
            torch.ones_like(x[:, 0])
            if mask is None
            else mask[j : j + 1].double().reshape_as(x[:, 0])
        )
        if c == 1:
            t = labels[j : j + 1].double()
            ce_vox = F.binary_cross_entropy_with_logits(x, t, reduction="none")[:, 0]
            p, oh = torch.sigmoid(x), t
        else:
            y = labels[j : j + 1, 0].long()
            ce_vox = F.cross_entropy(x, y, reduction="none")
            p = torch.softmax(x, 1)
            oh = F.one_hot(y, c).movedim(-1, 1).double()
        ce = (m * ce_vox).sum() / m.sum() if m.sum() > 0 else torch.zeros((), dtype=x.dtype)
        dims = tuple(range(2, x.dim()))
        inter = (m.unsqueeze(1) * p * oh).sum(dims)[0]
        denom = (m.unsqueeze(1) * (p + oh)).sum(dims)[0]
        dice = (2 * inter + smooth) / (denom + smooth)
        dice = dice if c == 1 else dice[1:]
        out.append(lambda_ce * ce + lambda_dice * (1 - dice.mean()))
    return torch.stack(out)


@pytest.mark.parametrize("shape", [(4, 3, 9, 7), (3, 1, 5, 7, 3), (2, 5, 6, 5, 4)])
def test_per_sample_loss_matches_explicit_computation(backend, shape) -> None:
    b, c, *s = shape
    logits = 2 * torch.randn(
        shape, dtype=torch.float64 if backend == "reference" else torch.float32
    )
    labels = torch.randint(0, max(c, 2), (b, 1, *s))
    mask = (torch.rand(b, *s) > 0.3).float()
    got = per_sample_dice_ce(logits, labels, voxel_mask=mask)
    want = _explicit_per_sample(logits, labels, mask=mask)
    torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-5)


def test_quality_weighted_loss_is_the_weighted_mean(backend) -> None:
    logits = torch.randn(4, 3, 8, 9, requires_grad=True)
    labels = torch.randint(0, 3, (4, 1, 8, 9))
    w = torch.tensor([0.0, 0.3, 1.0, 0.6])
    got = quality_weighted_dice_ce(logits, labels, w)
    per = _explicit_per_sample(logits.detach(), labels)
    want = (w.double() * per).sum() / (w.double().sum() + 1e-8)
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-6)
    got.backward()
    assert torch.count_nonzero(logits.grad[0]) == 0  # zero-weight sample gets no gradient
    assert torch.count_nonzero(logits.grad[2]) > 0


def test_all_zero_weights_give_exactly_zero_and_zero_gradient(backend) -> None:
    logits = torch.randn(3, 2, 6, 6, requires_grad=True)
    labels = torch.randint(0, 2, (3, 1, 6, 6))
    loss = QualityWeightedDiceCELoss()(logits, labels, torch.zeros(3))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.count_nonzero(logits.grad) == 0


def test_soft_pseudolabels_and_kernel_vs_reference_rule() -> None:
    logits = torch.randn(3, 4, 7, 5, 3)
    soft = torch.softmax(torch.randn(3, 4, 7, 5, 3), 1)
    w = torch.rand(3)

    def run(backend_name):
        def fn(x, t):
            with use_backend(backend_name):
                return quality_weighted_dice_ce(x, t, w)

        return fn

    assert_matches_reference(run("triton"), run("reference"), [logits, soft], differentiable=[0])


def test_pseudolabel_errors(backend) -> None:
    logits = torch.randn(2, 3, 5, 5)
    with pytest.raises(TypeError, match="integer or bool"):
        quality_weighted_dice_ce(logits, torch.zeros(2, 1, 5, 5), torch.ones(2))
    with pytest.raises(ValueError, match=r"weights must have shape \(2,\)"):
        quality_weighted_dice_ce(logits, torch.zeros(2, 1, 5, 5, dtype=torch.long), torch.ones(3))
    with pytest.raises(ValueError, match=r"pseudolabels has labels in \[5, 5\]"):
        quality_weighted_dice_ce(logits, torch.full((2, 1, 5, 5), 5), torch.ones(2))
    with pytest.raises(ValueError, match=r"binary logits \(B, 1, ...\) need"):
        quality_weighted_dice_ce(torch.randn(2, 1, 5, 5), torch.rand(2, 3, 5, 5), torch.ones(2))
    with pytest.raises(ValueError, match="voxel_mask must be"):
        quality_weighted_dice_ce(
            logits,
            torch.zeros(2, 1, 5, 5, dtype=torch.long),
            torch.ones(2),
            voxel_mask=torch.ones(2, 4, 5),
        )


def test_softmax_mse_matches_ssl4mis_formula(backend) -> None:
    x = torch.randn(3, 4, 6, 5, requires_grad=True)
    teacher = torch.softmax(torch.randn(3, 4, 6, 5), 1)
    got = softmax_mse(x, teacher)
    want = F.mse_loss(torch.softmax(x.double(), 1), teacher.double())
    torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-7)
    w = torch.tensor([1.0, 0.0, 0.5])
    weighted = softmax_mse(x, teacher, w)
    per = ((torch.softmax(x.double(), 1) - teacher.double()) ** 2).mean((1, 2, 3))
    torch.testing.assert_close(
        weighted.double(),
        (w.double() * per).sum() / (w.sum().double() + 1e-8),
        rtol=1e-4,
        atol=1e-7,
    )
    weighted.backward()
    assert torch.count_nonzero(x.grad[1]) == 0


@pytest.mark.parametrize("channels", [1, 3])
def test_softmax_mse_voxel_mask_is_a_per_sample_masked_mean(backend, channels) -> None:
    x = torch.randn(3, channels, 7, 5, 3, requires_grad=True)
    act = torch.sigmoid if channels == 1 else (lambda z: torch.softmax(z, 1))
    teacher = act(torch.randn(3, channels, 7, 5, 3))
    mask = (torch.rand(3, 1, 7, 5, 3) > 0.4).float()
    mask[2] = 0  # a sample with no masked voxel contributes 0
    w = torch.tensor([0.5, 1.0, 1.0])
    got = softmax_mse(x, teacher, w, voxel_mask=mask)
    d = (act(x.double()) - teacher.double()) ** 2 * mask.double()
    per = d.sum((1, 2, 3, 4)) / (channels * mask.double().sum((1, 2, 3, 4))).clamp_min(1e-12)
    want = (w.double() * per).sum() / (w.double().sum() + 1e-8)
    torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-7)
    got.backward()
    assert torch.count_nonzero(x.grad[2]) == 0
    assert torch.count_nonzero(x.grad[0][mask[0].expand_as(x[0]) == 0]) == 0


def test_softmax_mse_kernel_vs_reference_rule() -> None:
    x = torch.randn(2, 3, 9, 7)
    teacher = torch.softmax(torch.randn(2, 3, 9, 7), 1)

    def with_backend(name):
        def fn(x, t):
            with use_backend(name):
                return softmax_mse(x, t)

        return fn

    assert_matches_reference(
        with_backend("triton"), with_backend("reference"), [x, teacher], differentiable=[0]
    )


class _TinyPredictor(nn.Module):
    def __init__(self, in_ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.head = nn.Linear(4, 1)

    def forward(self, x):
        return torch.sigmoid(self.head(self.bn(self.conv(x)).mean((2, 3))))[:, 0]


def test_qar_gradient_reaches_probs_not_the_predictor() -> None:
    g = _TinyPredictor(3 + 2).eval()
    images = torch.randn(2, 3, 8, 8)
    probs = torch.softmax(torch.randn(2, 2, 8, 8), 1).requires_grad_()
    running = g.bn.running_mean.clone()
    loss = qar_loss(g, images, probs)
    want = 1 - g(torch.cat([images, probs], 1)).mean()
    torch.testing.assert_close(loss, want)
    loss.backward()
    assert probs.grad is not None
    assert torch.count_nonzero(probs.grad) > 0
    assert all(p.grad is None for p in g.parameters())
    torch.testing.assert_close(g.bn.running_mean, running)


def test_qar_refuses_a_training_mode_predictor() -> None:
    g = _TinyPredictor(3)
    with pytest.raises(ValueError, match=r"eval mode"):
        qar_loss(g, torch.randn(1, 2, 4, 4), torch.rand(1, 1, 4, 4))
