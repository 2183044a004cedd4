"""``dice_scores``: per-sample, per-class Dice of predictions against targets, no grad
needed, one sweep, no one-hot, no host synchronisation.

The quality target of the method (docs/method.md, phase 1) is the hard Dice of a corrupted
mask against its ground truth, 1 when both are empty. With K candidates per ground truth,
``repeats=K`` scores pred [B·K, ...] against target [B, ...] without copying the target.
"""

from __future__ import annotations

import torch

from qgfast.losses import _checks
from qgfast.losses._stats import seg_stats
from qgfast.losses.spec import StatsSpec


def dice_scores(
    pred: torch.Tensor,
    target: torch.Tensor,
    *,
    num_classes: int | None = None,
    hard: bool = False,
    include_background: bool = True,
    empty_score: float = 1.0,
    smooth: float = 0.0,
    repeats: int = 1,
    validate: bool = True,
) -> torch.Tensor:
    """Dice per sample and class → [B, C] (or [B, C − 1] without background), float32.

    pred: [B, C, *S] probabilities, or [B, 1, *S] integer/bool label map.
    target: [B / repeats, C, *S] one-hot/probabilities, or [B / repeats, 1, *S] label map.
    num_classes: C; needed when both are label maps (2 for binary masks).
    hard: binarise probabilities first (argmax over C; ≥ 0.5 when C = 1), the paper's target.
    empty_score: the score of a class absent from both (|p| + |t| = 0).
    smooth: added to numerator and denominator, (2I + s) / (|p| + |t| + s).
    repeats: each target sample scores ``repeats`` consecutive predictions.
    validate: check label maps lie in [0, max(C, 2) − 1]; this one check synchronises
        with the device, so pass False inside CUDA graphs or hot loops with trusted labels.

    Soft scores of float predictions are differentiable; hard ones and label maps are not.
    """
    _checks.check_prediction(pred, "pred")
    _checks.check_pair(pred, target, ("pred", "target"), repeats=repeats)
    pred_labels = not pred.is_floating_point()
    target_labels = not target.is_floating_point()
    if pred_labels and pred.shape[1] != 1:
        raise ValueError(
            f"an integer pred must be a (B, 1, ...) label map, got {tuple(pred.shape)}"
        )
    if target_labels and target.shape[1] != 1:
        raise ValueError(
            f"an integer target must be a (B, 1, ...) label map, got {tuple(target.shape)}"
        )
    if pred_labels and target_labels:
        if num_classes is None:
            raise ValueError("num_classes is required when pred and target are both label maps")
        c = num_classes
    else:
        c = target.shape[1] if pred_labels else pred.shape[1]
        if num_classes is not None and num_classes != c:
            raise ValueError(f"num_classes={num_classes} but the probabilities have {c} channels")
        if not target_labels and target.shape[1] != c:
            raise ValueError(f"target has {target.shape[1]} channels, pred has {c}")
    # With C = 1, label maps are 0/1 foreground masks and the score is the foreground Dice.
    for t, name, is_labels in ((pred, "pred", pred_labels), (target, "target", target_labels)):
        if is_labels:
            _checks.check_label_range(t, c, name, validate)
    spec = StatsSpec(
        act="labels" if pred_labels else ("hard" if hard else "none"),
        target="labels" if target_labels else ("dense_hard" if hard else "dense"),
        num_classes=c,
        repeats=repeats,
    )
    stats = seg_stats(pred, target, spec)
    denom = stats.P + stats.G
    score = (2.0 * stats.I + smooth) / (denom + smooth).clamp_min(torch.finfo(denom.dtype).tiny)
    score = torch.where(denom > 0, score, torch.full_like(score, empty_score))
    return score if include_background or c == 1 else score[:, 1:]
