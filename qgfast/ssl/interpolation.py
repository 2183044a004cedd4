"""Interpolation consistency (ICT, Verma et al., IJCAI 2019) and ICT-QW.

Each unlabelled sample j is mixed with its neighbour π(j) = j + 1 (mod B):
x̃_j = λ_j x_j + (1 − λ_j) x_π(j), λ_j ~ Beta(α, α) (α = 1 in the paper), and the
student's prediction on x̃_j is pulled toward the same mix of the EMA teacher's
predictions, λ_j p_j + (1 − λ_j) p_π(j), by the mean squared difference.

ICT-QW weights the mixed sample by the same mix of its sources' quality weights,
w̃_j = λ_j w_j + (1 − λ_j) w_π(j), w = q^T·1[q ≥ τ] of the teacher's hard predictions:
a source the guide rejects (w = 0) contributes nothing beyond its share, and a pair of
rejected sources drops out (docs/frameworks.md).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from qgfast.losses import softmax_mse
from qgfast.quality.guide import QualityGuide
from qgfast.ssl.base import QarPair, TeacherFramework, hard_labels, weight_summary
from qgfast.ssl.ema import MEAN_TEACHER_DECAY, Decay
from qgfast.ssl.ramps import Ramp


class InterpolationConsistency(TeacherFramework):
    """ICT, or ICT-QW with ``quality=guide``. Needs at least 2 unlabelled samples a batch.

    alpha: the Beta(α, α) of the mixing factors (1: uniform).
    consistency_ramp: λ of the consistency; the paper's W = 15, R = 30 epochs to 0.1.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        quality: QualityGuide | None = None,
        alpha: float = 1.0,
        ema_decay: Decay | float = MEAN_TEACHER_DECAY,
        consistency_ramp: Ramp | float | None = None,
        **common: Any,
    ) -> None:
        if not alpha > 0:
            raise ValueError(f"alpha must be > 0, got {alpha}")
        super().__init__(
            model,
            ema_decay=ema_decay,
            quality=quality,
            consistency_ramp=consistency_ramp,
            **common,
        )
        self.alpha = alpha
        self.name = "ICT" if quality is None else "ICT-QW"

    def _losses(
        self,
        images_l: torch.Tensor,
        labels: torch.Tensor,
        images_u: torch.Tensor | None,
        gen: torch.Generator,
    ) -> tuple[dict[str, torch.Tensor], list[QarPair]]:
        assert images_u is not None
        b = images_u.shape[0]
        if b < 2:
            raise ValueError(f"{self.name} mixes unlabelled pairs: it needs >= 2 a batch, got {b}")
        partner = torch.arange(1, b + 1, device=images_u.device) % b
        lam = torch.as_tensor(self.numpy_rng().beta(self.alpha, self.alpha, b))
        lam = lam.to(device=images_u.device, dtype=torch.float32)
        lam_x = lam.view(b, *[1] * (images_u.dim() - 1))  # broadcasts over channels, voxels
        mixed = torch.lerp(images_u[partner], images_u, lam_x.to(images_u.dtype))
        probs_t = self.teacher_probs(images_u)
        target = torch.lerp(probs_t[partner], probs_t, lam_x)
        parts = [images_l, mixed] + ([images_u] if self.qar is not None else [])
        logits = self.forward(self.model, *parts)
        sup = self.supervised(logits[0], labels)
        extra: dict[str, torch.Tensor] = {}
        w = None
        if self.quality is not None:
            w_src = self.quality_weights(self.quality, images_u, hard_labels(probs_t))
            w = lam * w_src + (1 - lam) * w_src[partner]
            extra.update(weight_summary(w, "quality_weight"))
        consistency = softmax_mse(logits[1], target, w)
        out = self.combine(sup, "consistency", consistency, extra)
        return out, ([(images_u, logits[2])] if self.qar is not None else [])
