"""``QualityGuide``: a frozen quality predictor as the SSL layer uses it (docs/method.md,
phase 2)."""

from __future__ import annotations

import torch
from torch import nn

from qgfast.losses.quality import qar_loss, quality_weights
from qgfast.quality.model import QualityPredictor


class QualityGuide(nn.Module):
    """Frozen g for PL-QW weights and the QAR loss.

    The predictor is put in eval mode and its parameters stop requiring gradients at
    construction, and ``train()`` on the guide (e.g. from a parent module) keeps it in eval
    mode: BatchNorm statistics and dropout never change while it guides.
    reduce: how a per-class predictor's scores [B, C − 1] become one weight per sample
        ("mean" over foreground classes, or "min": a sample is as good as its worst class).
    """

    def __init__(
        self,
        predictor: QualityPredictor,
        threshold: float = 0.5,
        power: float = 2.0,
        reduce: str = "mean",
    ) -> None:
        super().__init__()
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {threshold}")
        if power < 0:
            raise ValueError(f"power must be >= 0, got {power}")
        if reduce not in ("mean", "min"):
            raise ValueError(f"reduce must be 'mean' or 'min', got {reduce!r}")
        self.predictor = predictor
        self.threshold = threshold
        self.power = power
        self.reduce = reduce
        predictor.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> QualityGuide:  # mode ignored: a guide is always frozen
        return super().train(False)

    @torch.no_grad()
    def scores(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Predicted quality of each (image, mask): [B] (one per sample, reduced over
        classes for a per-class predictor). masks: label maps or float channels."""
        q = self.predictor.score(images, masks)
        if q.dim() == 2:
            q = q.mean(1) if self.reduce == "mean" else q.amin(1)
        return q

    def weights(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """w = q^power · 1[q ≥ threshold], [B], no gradient (PL-QW and the "-QW" variants)."""
        return quality_weights(self.scores(images, masks), self.threshold, self.power)

    def qar_loss(self, images: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        """QAR: 1 − mean g(images ⊕ probs); the gradient reaches ``probs`` only."""
        return qar_loss(self.predictor, images, probs)

    def forward(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        return self.scores(images, masks)
