"""Segmentation losses (MONAI-compatible names), quality targets and quality-weighted losses.

Every loss runs one fused Triton sweep forward and one backward on CUDA tensors, and the
plain PyTorch reference elsewhere (``qgfast.backend`` decides; ``QGFAST_BACKEND`` forces).
"""

from qgfast.losses._checks import ShapeMismatchError
from qgfast.losses.dice import DiceCELoss, DiceLoss
from qgfast.losses.quality import (
    QualityWeightedDiceCELoss,
    per_sample_dice_ce,
    qar_loss,
    quality_weighted_dice_ce,
    quality_weights,
    softmax_mse,
)
from qgfast.losses.scores import dice_scores

__all__ = [
    "DiceCELoss",
    "DiceLoss",
    "QualityWeightedDiceCELoss",
    "ShapeMismatchError",
    "dice_scores",
    "per_sample_dice_ce",
    "qar_loss",
    "quality_weighted_dice_ce",
    "quality_weights",
    "softmax_mse",
]
