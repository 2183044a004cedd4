"""SUP, and QAR: the supervised baseline, with the quality-aware regulariser on top."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from qgfast.quality.guide import QualityGuide
from qgfast.ssl.base import Framework, QarPair


class Supervised(Framework):
    """L_sup on the labelled batch only (SUP); with ``qar=guide`` also λ_qar·L_qar on the
    unlabelled batch, the paper's QAR method: L_qar = 1 − mean_j g(x_u,j ⊕ p_j), the
    gradient reaching the student through the frozen predictor.

    Without ``qar`` the unlabelled batch may be omitted (and is ignored if given).
    """

    needs_unlabeled = False

    def __init__(self, model: nn.Module, *, qar: QualityGuide | None = None, **common: Any):
        super().__init__(model, qar=qar, **common)
        self.name = "SUP" if qar is None else "QAR"

    def _losses(
        self,
        images_l: torch.Tensor,
        labels: torch.Tensor,
        images_u: torch.Tensor | None,
        gen: torch.Generator,
    ) -> tuple[dict[str, torch.Tensor], list[QarPair]]:
        if self.qar is not None and images_u is not None:
            logits_l, logits_u = self.forward(self.model, images_l, images_u)
            pairs = [(images_u, logits_u)]
        else:
            (logits_l,) = self.forward(self.model, images_l)
            pairs = []
        sup = self.supervised(logits_l, labels)
        return {"loss": sup, "sup": sup.detach()}, pairs
