"""dice_scores against an independent NumPy computation of (hard and soft) Dice."""

import numpy as np
import pytest
import torch

from qgfast.losses import dice_scores


def _numpy_dice(p: np.ndarray, t: np.ndarray, empty: float = 1.0, smooth: float = 0.0) -> float:
    inter = float((p * t).sum())
    denom = float(p.sum() + t.sum())
    return empty if denom == 0 else (2 * inter + smooth) / (denom + smooth)


def test_binary_masks_paper_target(backend) -> None:
    gt = (torch.rand(3, 1, 11, 13, 7) > 0.6).to(torch.uint8)
    k = 4
    cand = (torch.rand(3 * k, 1, 11, 13, 7) > 0.5).to(torch.uint8)
    cand[0] = gt[0]  # identical → 1
    cand[1] = 0  # empty candidate against non-empty gt → 0
    scores = dice_scores(cand, gt, num_classes=1, repeats=k)
    assert scores.shape == (3 * k, 1)
    for i in range(3 * k):
        want = _numpy_dice(cand[i].numpy(), gt[i // k].numpy())
        assert scores[i, 0].item() == pytest.approx(want, abs=1e-6)
    assert scores[0, 0].item() == 1.0
    assert scores[1, 0].item() == 0.0


def test_both_empty_scores_empty_score(backend) -> None:
    empty = torch.zeros(2, 1, 5, 6, dtype=torch.uint8)
    assert dice_scores(empty, empty, num_classes=1).tolist() == [[1.0], [1.0]]
    assert dice_scores(empty, empty, num_classes=1, empty_score=0.0).tolist() == [[0.0], [0.0]]


def test_multiclass_label_maps_per_class(backend) -> None:
    pred = torch.randint(0, 4, (2, 1, 9, 8))
    target = torch.randint(0, 4, (2, 1, 9, 8))
    scores = dice_scores(pred, target, num_classes=4)
    no_bg = dice_scores(pred, target, num_classes=4, include_background=False)
    for b in range(2):
        for c in range(4):
            want = _numpy_dice((pred[b] == c).numpy(), (target[b] == c).numpy())
            assert scores[b, c].item() == pytest.approx(want, abs=1e-6)
    torch.testing.assert_close(no_bg, scores[:, 1:])


def test_hard_probabilities_argmax_and_threshold(backend) -> None:
    probs = torch.softmax(torch.randn(2, 3, 7, 5, 3), 1)
    target = torch.randint(0, 3, (2, 1, 7, 5, 3))
    hard = dice_scores(probs, target, hard=True)
    via_labels = dice_scores(probs.argmax(1, keepdim=True), target, num_classes=3)
    torch.testing.assert_close(hard, via_labels)
    fg = torch.rand(2, 1, 7, 5)
    mask = (torch.rand(2, 1, 7, 5) > 0.5).to(torch.uint8)
    torch.testing.assert_close(
        dice_scores(fg, mask, hard=True),
        dice_scores((fg >= 0.5).to(torch.uint8), mask, num_classes=1),
    )


def test_soft_scores_with_smoothing_and_gradient(backend) -> None:
    probs = torch.rand(2, 2, 6, 5, requires_grad=True)
    target = torch.rand(2, 2, 6, 5)
    scores = dice_scores(probs, target, smooth=1.0)
    for b in range(2):
        for c in range(2):
            want = _numpy_dice(probs[b, c].detach().numpy(), target[b, c].numpy(), smooth=1.0)
            assert scores[b, c].item() == pytest.approx(want, rel=1e-5)
    scores.sum().backward()
    assert probs.grad is not None
    assert torch.isfinite(probs.grad).all()


def test_errors_name_the_argument() -> None:
    labels = torch.zeros(2, 1, 4, 4, dtype=torch.uint8)
    with pytest.raises(ValueError, match="num_classes is required"):
        dice_scores(labels, labels)
    with pytest.raises(ValueError, match="batch sizes differ"):
        dice_scores(labels, labels, num_classes=2, repeats=2)
    with pytest.raises(ValueError, match=r"pred has labels in \[3, 3\]"):
        dice_scores(labels + 3, labels, num_classes=2)
    with pytest.raises(ValueError, match="integer pred must be a"):
        dice_scores(torch.zeros(2, 2, 4, 4, dtype=torch.long), labels, num_classes=2)
    with pytest.raises(ValueError, match="num_classes=3 but the probabilities have 2"):
        dice_scores(torch.rand(2, 2, 4, 4), labels, num_classes=3)
