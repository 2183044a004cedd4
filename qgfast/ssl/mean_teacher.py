"""Mean teacher (MT, MT-QW) and the uncertainty-aware mean teacher (UA-MT).

MT (Tarvainen & Valpola 2017, in the SSL4MIS recipe): the teacher is an EMA of the
student, α = min(1 − 1/(n + 1), 0.99); it sees the unlabelled images with
clamp(N(0, 0.1²), ±0.2) noise; the student is pulled toward its softmax by the mean
squared difference of probabilities (the fused ``softmax_mse``). MT-QW weights each
sample's consistency by w_j = q_j^T·1[q_j ≥ τ] of the teacher's hard prediction, the
target the sample is pulled toward, scored with the clean image.

UA-MT (Yu et al., MICCAI 2019): T further noisy teacher passes (dropout on) give the
mean prediction's entropy; only voxels whose entropy is below
(0.75 + 0.25·r(t))·ln C, r the sigmoid ramp over the run, enter the consistency.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from qgfast.losses import softmax_mse
from qgfast.quality.guide import QualityGuide
from qgfast.ssl.base import (
    QarPair,
    TeacherFramework,
    dropout_on,
    hard_labels,
    weight_summary,
)
from qgfast.ssl.ema import MEAN_TEACHER_DECAY, Decay
from qgfast.ssl.ramps import Ramp, SigmoidRamp, as_ramp


class MeanTeacher(TeacherFramework):
    """MT, or MT-QW with ``quality=guide`` (see the module docstring).

    noise_std, noise_clip: the teacher's input noise (0 turns it off).
    consistency_ramp: λ of the consistency; the paper's W = 15, R = 30 epochs to 0.1
        (SSL4MIS's weight; ``SigmoidRamp(0.1, 200, every=150)`` is its own schedule).
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        quality: QualityGuide | None = None,
        ema_decay: Decay | float = MEAN_TEACHER_DECAY,
        noise_std: float = 0.1,
        noise_clip: float = 0.2,
        consistency_ramp: Ramp | float | None = None,
        **common: Any,
    ) -> None:
        if noise_std < 0 or noise_clip < 0:
            raise ValueError(
                f"noise_std and noise_clip must be >= 0, got {noise_std}, {noise_clip}"
            )
        super().__init__(
            model,
            ema_decay=ema_decay,
            quality=quality,
            consistency_ramp=consistency_ramp,
            **common,
        )
        self.noise_std = noise_std
        self.noise_clip = noise_clip
        self.name = "MT" if quality is None else "MT-QW"

    def consistency_mask(
        self, images_u: torch.Tensor, gen: torch.Generator
    ) -> tuple[torch.Tensor | None, dict[str, torch.Tensor]]:
        """Voxels that enter the consistency (all of them in MT)."""
        return None, {}

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
        probs_t = self.teacher_probs(self.noise(images_u, gen, self.noise_std, self.noise_clip))
        mask, extra = self.consistency_mask(images_u, gen)
        w = None
        if self.quality is not None:
            w = self.quality_weights(self.quality, images_u, hard_labels(probs_t))
            extra.update(weight_summary(w, "quality_weight"))
        consistency = softmax_mse(logits_u, probs_t, w, voxel_mask=mask)
        return self.combine(sup, "consistency", consistency, extra), [(images_u, logits_u)]


class UncertaintyMeanTeacher(MeanTeacher):
    """UA-MT (UA-MT-QW with ``quality``): MT whose consistency keeps the voxels where the
    teacher is certain.

    total_steps: the run's length, over which the entropy threshold ramps from
        0.75·ln C to ln C (SSL4MIS's ``max_iterations``); or give ``threshold_ramp``.
    passes: T, the stochastic teacher passes for the uncertainty (8).
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        total_steps: int | None = None,
        passes: int = 8,
        threshold_ramp: Ramp | None = None,
        **kwargs: Any,
    ) -> None:
        if threshold_ramp is None:
            if total_steps is None or total_steps < 1:
                raise ValueError(
                    "UA-MT ramps its uncertainty threshold over the run: pass total_steps= "
                    "(the planned optimiser steps) or threshold_ramp="
                )
            threshold_ramp = SigmoidRamp(1.0, total_steps, unit="step")
        if passes < 1:
            raise ValueError(f"passes must be >= 1, got {passes}")
        super().__init__(model, **kwargs)
        self.passes = passes
        self.threshold_ramp = as_ramp(threshold_ramp, "threshold_ramp")
        self.name = "UA-MT" if self.quality is None else "UA-MT-QW"

    @torch.no_grad()
    def consistency_mask(
        self, images_u: torch.Tensor, gen: torch.Generator
    ) -> tuple[torch.Tensor | None, dict[str, torch.Tensor]]:
        assert self._teacher is not None
        mean = None
        with dropout_on(self._teacher):
            for _ in range(self.passes):
                p = self.teacher_probs(self.noise(images_u, gen, self.noise_std, self.noise_clip))
                mean = p if mean is None else mean + p
        assert mean is not None
        mean = mean / self.passes
        if mean.shape[1] == 1:
            mean = torch.cat([1.0 - mean, mean], 1)
        entropy = -(mean * torch.log(mean + 1e-6)).sum(1, keepdim=True)
        threshold = (0.75 + 0.25 * self.ramp(self.threshold_ramp)) * math.log(mean.shape[1])
        mask = (entropy < threshold).float()
        return mask, {
            "certain_share": mask.mean(),
            "uncertainty_threshold": torch.tensor(threshold),
        }
