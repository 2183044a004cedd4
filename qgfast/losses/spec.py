"""What the segmentation statistics are (``Stats``), what they are computed from
(``StatsSpec``) and the dtype they accumulate in: the types shared by the fused kernel
(``qgfast.kernels.seg_stats``), its plain PyTorch reference (``qgfast.reference.seg_stats``,
which defines the sums) and every loss built on them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch

Activation = Literal["none", "sigmoid", "softmax", "hard", "labels"]
TargetMode = Literal["labels", "dense", "dense_hard"]
CrossEntropy = Literal["none", "softmax", "bce"]


@dataclass(frozen=True)
class StatsSpec:
    """What the statistics are computed from.

    act: how the prediction becomes p — ``none`` (already probabilities), ``sigmoid``,
        ``softmax`` (over channels), ``hard`` (argmax over channels, or p ≥ 0.5 when C = 1,
        of probabilities) or ``labels`` (the prediction is a (B, 1, ...) label map).
    target: ``labels`` (a (B, 1, ...) label map; one-hot when C > 1, the value itself when
        C = 1), ``dense`` (B, C, ...) probabilities, or ``dense_hard`` (dense, binarised
        like ``hard``).
    num_classes: C, the channels of p.
    squared: k = 2 in P, G and D (MONAI ``squared_pred``), else k = 1.
    ce: the cross-entropy accumulated alongside: ``none``, ``softmax`` (multi-class, on the
        logits) or ``bce`` (binary with logits, C = 1).
    repeats: each target sample serves ``repeats`` consecutive predictions (K candidate
        masks scored against one ground truth without copying it).
    absolute: with k = 1, P and G sum |p| and |t| (L1 norms, MONAI's soft-label Dice);
        equal to the plain sums for probabilities, different for raw un-activated inputs.
    diff: compute D (else it is zero): only soft-label Dice and the MSE consistency need it.
    """

    act: Activation
    target: TargetMode
    num_classes: int
    squared: bool = False
    ce: CrossEntropy = "none"
    repeats: int = 1
    absolute: bool = False
    diff: bool = False

    def __post_init__(self) -> None:
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {self.num_classes}")
        if self.repeats < 1:
            raise ValueError(f"repeats must be >= 1, got {self.repeats}")
        if self.ce == "bce" and self.num_classes != 1:
            raise ValueError("bce cross-entropy needs a single channel (C = 1)")
        if self.ce == "softmax" and self.num_classes < 2:
            raise ValueError("softmax cross-entropy needs C >= 2 channels")
        if self.ce != "none" and self.act in ("hard", "labels"):
            raise ValueError(f"cross-entropy needs logits, not act={self.act!r}")

    @property
    def differentiable(self) -> bool:
        return self.act not in ("hard", "labels")


class Stats(NamedTuple):
    """Sums in float32 (float64 for float64 inputs): I, P, G, D are (B, C); ce_* are (B,)."""

    I: torch.Tensor  # noqa: E741 -- the intersection's conventional name
    P: torch.Tensor
    G: torch.Tensor
    D: torch.Tensor
    ce_sum: torch.Tensor
    ce_norm: torch.Tensor


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32
