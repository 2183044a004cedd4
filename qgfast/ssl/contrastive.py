"""Pixel-contrastive consistency (CL) and CL-QW.

The formulation of Zhong et al., "Pixel Contrastive-Consistent Semi-Supervised Semantic
Segmentation" (PC²Seg, ICCV 2021): two views of each unlabelled image — v₁ = x + n₁ and
v₂ = flip_a(x + n₂), n clamp(N(0, σ²), ±2σ) and a a random spatial axis per step, the
second view's outputs flipped back — and an InfoNCE loss per sampled pixel: its embedding
in one view is pulled toward the same pixel in the other view and pushed from sampled
pixels (of any image in the batch) whose pseudolabel differs, so pixels of the same class
are never negatives. Pseudolabels are the hard mean of the two views' detached
predictions; the loss is symmetric in the views, τ = 0.1.

Embeddings are the unit-normalised output of ``features`` (the name of a module of the
model, e.g. the decoder's last block, read through a forward hook; resampled to the
feature map's size where it is smaller) or, by default, the logits. CL-QW weights each
image's mean pixel loss by w = q^T·1[q ≥ τ] of its pseudolabel.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from qgfast.losses._compose import weighted_mean
from qgfast.quality.guide import QualityGuide
from qgfast.ssl.base import Framework, QarPair, hard_labels, probabilities, weight_summary
from qgfast.ssl.ramps import Ramp


def pixel_info_nce(
    emb_1: torch.Tensor, emb_2: torch.Tensor, labels: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Symmetric InfoNCE over B·N anchors: emb_* [B, N, F] unit vectors of the same pixels
    in two views, labels [B, N] their pseudolabels → per-anchor loss [B, N].

    For anchor i: −s_ii + log(exp s_ii + Σ_{k: label_k ≠ label_i} exp s_ik), s = e₁·e₂ᵀ/τ.
    """
    b, n, _ = emb_1.shape
    e1 = emb_1.reshape(b * n, -1).float()
    e2 = emb_2.reshape(b * n, -1).float()
    lab = labels.reshape(b * n)
    sim = e1 @ e2.T / temperature
    keep = (lab[:, None] != lab[None, :]) | torch.eye(b * n, dtype=torch.bool, device=sim.device)
    positive = sim.diagonal()
    forward = torch.logsumexp(sim.masked_fill(~keep, float("-inf")), 1) - positive
    backward = torch.logsumexp(sim.T.masked_fill(~keep, float("-inf")), 1) - positive
    return (0.5 * (forward + backward)).view(b, n)


class ContrastiveConsistency(Framework):
    """CL, or CL-QW with ``quality=guide`` (see the module docstring).

    features: a module name of the model whose output embeds the pixels (``None``: logits).
    anchors: pixels sampled per image and step (with replacement), 256.
    consistency_ramp: λ of the contrastive term; the paper's W = 15, R = 30 epochs to 0.1.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        quality: QualityGuide | None = None,
        features: str | None = None,
        temperature: float = 0.1,
        anchors: int = 256,
        noise_std: float = 0.1,
        consistency_ramp: Ramp | float | None = None,
        **common: Any,
    ) -> None:
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if anchors < 1:
            raise ValueError(f"anchors must be >= 1, got {anchors}")
        if noise_std < 0:
            raise ValueError(f"noise_std must be >= 0, got {noise_std}")
        super().__init__(model, quality=quality, consistency_ramp=consistency_ramp, **common)
        self.temperature = temperature
        self.anchors = anchors
        self.noise_std = noise_std
        self._captured: list[torch.Tensor] = []
        self.features = features
        self._feature_module: nn.Module | None = None
        if features is not None:
            modules = dict(model.named_modules())
            if features not in modules:
                raise ValueError(f"the model has no module named {features!r} for features=")
            self._feature_module = modules[features]
        self.name = "CL" if quality is None else "CL-QW"

    def _capture(self, module: nn.Module, args: Any, output: Any) -> None:
        if not isinstance(output, torch.Tensor) or output.dim() < 3:
            raise ValueError(
                f"features={self.features!r} must output a [B, F, *S] tensor, got "
                f"{getattr(output, 'shape', type(output).__name__)}"
            )
        self._captured.append(output)

    def _sample(self, emb: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """[B, F, *S] at flat positions idx [B, N] → unit vectors [B, N, F]."""
        flat = emb.flatten(2)
        picked = flat.gather(2, idx[:, None, :].expand(-1, flat.shape[1], -1))
        return F.normalize(picked.float(), dim=1).transpose(1, 2)

    def _losses(
        self,
        images_l: torch.Tensor,
        labels: torch.Tensor,
        images_u: torch.Tensor | None,
        gen: torch.Generator,
    ) -> tuple[dict[str, torch.Tensor], list[QarPair]]:
        assert images_u is not None
        axis = 2 + int(self.numpy_rng().integers(images_u.dim() - 2))
        clip = 2 * self.noise_std
        view_1 = self.noise(images_u, gen, self.noise_std, clip)
        view_2 = self.noise(images_u, gen, self.noise_std, clip).flip(axis)
        # the hook lives only for this forward: validation passes capture nothing, and a
        # forward that raised leaves nothing behind for the next step
        self._captured.clear()
        hook = None
        if self._feature_module is not None:
            hook = self._feature_module.register_forward_hook(self._capture)
        try:
            logits_l, logits_1, logits_2 = self.forward(self.model, images_l, view_1, view_2)
        finally:
            if hook is not None:
                hook.remove()
        sup = self.supervised(logits_l, labels)
        logits_2 = logits_2.flip(axis)
        if self.features is None:
            emb_1, emb_2 = logits_1, logits_2
        else:
            feats = torch.cat(self._captured)  # one tensor, or one per forward call
            self._captured.clear()
            sizes = [images_l.shape[0], images_u.shape[0], images_u.shape[0]]
            _, emb_1, emb_2 = feats.split(sizes)
            emb_2 = emb_2.flip(axis)
        with torch.no_grad():
            pseudo = hard_labels(0.5 * (probabilities(logits_1) + probabilities(logits_2)))
            small = pseudo
            if emb_1.shape[2:] != pseudo.shape[2:]:
                small = F.interpolate(pseudo.float(), emb_1.shape[2:], mode="nearest").long()
            b, n_vox = small.shape[0], small[0].numel()
            idx = torch.randint(n_vox, (b, self.anchors), generator=gen, device=small.device)
            anchor_labels = small.flatten(1).gather(1, idx)
        per_pixel = pixel_info_nce(
            self._sample(emb_1, idx), self._sample(emb_2, idx), anchor_labels, self.temperature
        )
        per_sample = per_pixel.mean(1)
        extra: dict[str, torch.Tensor] = {}
        if self.quality is not None:
            w = self.quality_weights(self.quality, images_u, pseudo)
            extra.update(weight_summary(w, "quality_weight"))
            contrastive = weighted_mean(per_sample, w, 1e-8)
        else:
            contrastive = per_sample.mean()
        return self.combine(sup, "contrastive", contrastive, extra), [(view_1, logits_1)]
