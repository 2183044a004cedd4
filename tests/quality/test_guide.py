"""QualityGuide: frozen, weights formula, QAR gradients into probs only."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("monai")

from qgfast.quality import QualityGuide, QualityPredictor


@pytest.fixture
def guide():
    g = QualityPredictor(2, 3, 2, backbone="resnet10")
    g.train()  # the guide must switch it to eval
    return QualityGuide(g, threshold=0.4, power=2.0)


def test_guide_freezes_the_predictor(guide):
    assert not guide.predictor.training
    assert all(not p.requires_grad for p in guide.predictor.parameters())
    guide.train()  # a parent's .train() must not unfreeze it
    assert not guide.training
    assert not guide.predictor.training


def test_weights_follow_the_formula_without_gradient(guide):
    images = torch.randn(4, 3, 32, 32)
    masks = torch.randint(0, 2, (4, 1, 32, 32))
    q = guide.scores(images, masks)
    w = guide.weights(images, masks)
    assert w.shape == (4,)
    assert not w.requires_grad
    torch.testing.assert_close(w, torch.where(q >= 0.4, q**2, torch.zeros_like(q)))


def test_threshold_one_gives_zero_weights_unless_perfect(guide):
    strict = QualityGuide(guide.predictor, threshold=1.0)
    w = strict.weights(torch.randn(3, 3, 32, 32), torch.randint(0, 2, (3, 1, 32, 32)))
    assert torch.equal(w, torch.zeros(3))


def test_qar_gradient_reaches_probs_but_not_parameters(guide):
    images = torch.randn(2, 3, 32, 32)
    logits = torch.randn(2, 2, 32, 32, requires_grad=True)
    probs = logits.softmax(1)  # full softmax: the predictor drops the background channel
    loss = guide.qar_loss(images, probs)
    loss.backward()
    assert loss.shape == ()
    assert 0 <= loss.item() <= 1
    assert logits.grad is not None
    assert float(logits.grad.abs().sum()) > 0
    assert all(p.grad is None for p in guide.predictor.parameters())
    expected = 1 - guide.predictor(torch.cat([images, probs.detach()[:, 1:]], 1)).mean()
    torch.testing.assert_close(loss.detach(), expected)


def test_per_class_scores_are_reduced(guide):
    g = QualityPredictor(2, 1, 3, backbone="resnet10", per_class=True)
    images = torch.randn(3, 1, 32, 32)
    masks = torch.randint(0, 3, (3, 1, 32, 32))
    per_class = g.eval().score(images, masks)
    torch.testing.assert_close(QualityGuide(g).scores(images, masks), per_class.mean(1))
    torch.testing.assert_close(
        QualityGuide(g, reduce="min").scores(images, masks), per_class.amin(1)
    )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"threshold": 1.5}, "threshold"), ({"power": -1}, "power"), ({"reduce": "max"}, "reduce")],
)
def test_bad_arguments(guide, kwargs, match):
    with pytest.raises(ValueError, match=match):
        QualityGuide(guide.predictor, **kwargs)
