"""Pseudolabelling with an EMA teacher: PL-T, PL-C and the paper's PL-QW.

The three modes differ only in each unlabelled sample's weight w_j; the loss is always
L_pl = Σ_j w_j ℓ_j / (Σ_j w_j + 1e-8) with ℓ_j = λ_ce·CE + λ_dice·(1 − soft Dice) of the
student against the teacher's hard pseudolabel ŷ_j (the fused
``quality_weighted_dice_ce``; exactly 0 when every weight is 0):
- ``"threshold"`` (PL-T): w_j = 1[c_j ≥ τ], c_j the sample's mean voxel confidence
  (largest class probability of the teacher), τ = 0.9;
- ``"confidence"`` (PL-C): w_j = c_j^T·1[c_j ≥ τ], T = 2;
- ``"quality"`` (PL-QW): w_j = q_j^T·1[q_j ≥ τ] with q_j = g(x_u,j ⊕ ŷ_j) from the
  ``QualityGuide`` (its threshold and power: 0.5 and 2 in the paper).
Weighting whole samples, not voxels, makes PL-T/PL-C the like-for-like baselines of
PL-QW (docs/frameworks.md). The teacher's decay ramps 0.5 → 0.999 over 1000 updates.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from qgfast.losses import quality_weighted_dice_ce
from qgfast.quality.guide import QualityGuide
from qgfast.ssl.base import (
    QarPair,
    TeacherFramework,
    confidence,
    hard_labels,
    weight_summary,
)
from qgfast.ssl.ema import PAPER_PL_DECAY, Decay
from qgfast.ssl.ramps import Ramp

MODES = {"threshold": "PL-T", "confidence": "PL-C", "quality": "PL-QW"}


class PseudoLabel(TeacherFramework):
    """PL-T / PL-C / PL-QW (see the module docstring).

    mode: "threshold", "confidence" or "quality" (the default when ``quality`` is given).
    quality: the ``QualityGuide`` that scores pseudolabels (mode "quality" only).
    threshold, power: τ and T of the confidence modes (0.9, 2).
    consistency_ramp: λ of L_pl; the paper's W = 15, R = 30 epochs to 0.25.
    """

    unsupervised_weight = 0.25  # the paper's λ_qw

    def __init__(
        self,
        model: nn.Module,
        mode: str | None = None,
        *,
        quality: QualityGuide | None = None,
        threshold: float = 0.9,
        power: float = 2.0,
        ema_decay: Decay | float = PAPER_PL_DECAY,
        consistency_ramp: Ramp | float | None = None,
        **common: Any,
    ) -> None:
        if mode is None:
            if quality is None:
                raise ValueError(
                    "choose PseudoLabel(mode='threshold' | 'confidence' | 'quality'); "
                    "'quality' also needs quality=QualityGuide(...)"
                )
            mode = "quality"
        if mode not in MODES:
            raise ValueError(f"mode must be one of {sorted(MODES)}, got {mode!r}")
        if (mode == "quality") != (quality is not None):
            raise ValueError(
                "mode='quality' needs quality=QualityGuide(...)"
                if quality is None
                else f"quality= is used by mode='quality' only, not mode={mode!r}"
            )
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {threshold}")
        if power < 0:
            raise ValueError(f"power must be >= 0, got {power}")
        super().__init__(
            model,
            ema_decay=ema_decay,
            quality=quality,
            consistency_ramp=consistency_ramp,
            **common,
        )
        self.mode = mode
        self.name = MODES[mode]
        self.threshold = threshold
        self.power = power

    def sample_weights(
        self, images_u: torch.Tensor, teacher_probs: torch.Tensor, pseudolabels: torch.Tensor
    ) -> torch.Tensor:
        """w_j of each unlabelled sample [B], float32, no gradient."""
        if self.quality is not None:
            return self.quality_weights(self.quality, images_u, pseudolabels)
        c = confidence(teacher_probs).flatten(1).mean(1)
        kept = c >= self.threshold
        value = c.pow(self.power) if self.mode == "confidence" else torch.ones_like(c)
        return torch.where(kept, value, torch.zeros_like(c))

    def _losses(
        self,
        images_l: torch.Tensor,
        labels: torch.Tensor,
        images_u: torch.Tensor | None,
        gen: torch.Generator,
    ) -> tuple[dict[str, torch.Tensor], list[QarPair]]:
        assert images_u is not None
        logits_l, logits_u = self.forward(self.model, images_l, images_u)
        sup = self.supervised(logits_l, labels)
        probs_t = self.teacher_probs(images_u)
        pseudo_labels = hard_labels(probs_t)
        w = self.sample_weights(images_u, probs_t, pseudo_labels)
        pseudo = quality_weighted_dice_ce(
            logits_u,
            pseudo_labels,
            w,
            lambda_ce=self.lambda_ce,
            lambda_dice=self.lambda_dice,
            include_background=self.include_background,
            smooth=1e-6,
            validate=False,  # argmax labels are in range by construction
        )
        summary = weight_summary(w, "quality_weight" if self.quality else "confidence_weight")
        return self.combine(sup, "pseudo", pseudo, summary), [(images_u, logits_u)]
