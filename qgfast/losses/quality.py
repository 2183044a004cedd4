"""Quality-guided losses of the method (docs/method.md, phase 2).

- ``quality_weights``: w = q^T · 1[q ≥ τ] (T = 2, τ = 0.5 in the paper).
- ``quality_weighted_dice_ce``: PL-QW's Σ_j w_j ℓ_j / (Σ_j w_j + eps) with the per-sample
  ℓ_j = λ_ce·CE + λ_dice·(1 − soft Dice) against pseudolabels, one fused sweep.
- ``softmax_mse``: mean-teacher consistency, optionally quality-weighted per sample.
- ``qar_loss``: QAR's 1 − mean g(image ⊕ probs), gradients through a frozen g into probs.
"""

from __future__ import annotations

import torch
from torch import nn

from qgfast.losses import _checks
from qgfast.losses._compose import weighted_mean
from qgfast.losses._stats import seg_stats
from qgfast.losses.spec import StatsSpec


def quality_weights(q: torch.Tensor, threshold: float = 0.5, power: float = 2.0) -> torch.Tensor:
    """w = q^power · 1[q ≥ threshold], elementwise; no gradient flows back into q."""
    if not isinstance(q, torch.Tensor) or not q.is_floating_point():
        raise TypeError(
            f"q must be a floating-point tensor of predicted Dice scores, got {q!r:.60}"
        )
    q = q.detach()
    return torch.where(q >= threshold, q.clamp_min(0).pow(power), torch.zeros_like(q))


def _check_weights(weights: torch.Tensor, batch: int, device: torch.device) -> None:
    if not isinstance(weights, torch.Tensor) or not weights.is_floating_point():
        raise TypeError("weights must be a floating-point (B,) tensor")
    if weights.shape != (batch,):
        raise ValueError(f"weights must have shape ({batch},), got {tuple(weights.shape)}")
    if weights.device != device:
        raise ValueError(f"weights are on {weights.device} but logits on {device}")


def _check_voxel_mask(voxel_mask: torch.Tensor, logits: torch.Tensor) -> None:
    if voxel_mask.numel() != logits[:, :1].numel() or voxel_mask.shape[0] != logits.shape[0]:
        raise ValueError(
            f"voxel_mask must be (B, *spatial) or (B, 1, *spatial) like the logits' "
            f"{tuple(logits.shape)}, got {tuple(voxel_mask.shape)}"
        )
    if voxel_mask.device != logits.device:
        raise ValueError(f"voxel_mask is on {voxel_mask.device} but logits on {logits.device}")
    _checks.check_no_target_grad(voxel_mask, "voxel_mask")


def _pseudolabel_spec(logits: torch.Tensor, target: torch.Tensor, validate: bool) -> StatsSpec:
    c = logits.shape[1]
    if c == 1:
        if target.shape[1] != 1:
            raise ValueError(
                "binary logits (B, 1, ...) need (B, 1, ...) pseudolabels, "
                f"got {tuple(target.shape)}"
            )
        _checks.check_label_range(
            target, 1, "pseudolabels", validate and not target.is_floating_point()
        )
        return StatsSpec(act="sigmoid", target="dense", num_classes=1, ce="bce")
    if target.shape[1] == 1:
        _checks.check_label_dtype(target, "pseudolabels")
        _checks.check_label_range(target, c, "pseudolabels", validate)
        return StatsSpec(act="softmax", target="labels", num_classes=c, ce="softmax")
    if target.shape[1] != c or not target.is_floating_point():
        raise ValueError(
            f"pseudolabels must be a (B, 1, ...) label map or (B, {c}, ...) probabilities, "
            f"got {tuple(target.shape)} {target.dtype}"
        )
    return StatsSpec(act="softmax", target="dense", num_classes=c, ce="softmax")


def per_sample_dice_ce(
    logits: torch.Tensor,
    pseudolabels: torch.Tensor,
    *,
    lambda_ce: float = 0.5,
    lambda_dice: float = 0.5,
    voxel_mask: torch.Tensor | None = None,
    include_background: bool = False,
    smooth: float = 1e-6,
    validate: bool = True,
) -> torch.Tensor:
    """ℓ_j = λ_ce·CE_j + λ_dice·(1 − Dice_j) per sample → [B] float32.

    logits [B, C, *S]; pseudolabels [B, 1, *S] integer label map (hard) or [B, C, *S]
    probabilities (soft); C = 1 means binary: sigmoid + BCE against a 0/1 map or
    probabilities. CE is the mean over the sample's voxels (weighted by ``voxel_mask``
    [B, *S] or [B, 1, *S], e.g. a confidence mask; a sample with no weighted voxel has CE 0).
    Dice is soft, per class, smoothed by ``smooth`` in numerator and denominator, averaged
    over the foreground classes (all classes with ``include_background`` or when C = 1).
    """
    _checks.check_prediction(logits, "logits")
    _checks.check_floating(logits, "logits")
    _checks.check_pair(logits, pseudolabels, ("logits", "pseudolabels"))
    _checks.check_no_target_grad(pseudolabels, "pseudolabels")
    if voxel_mask is not None:
        _check_voxel_mask(voxel_mask, logits)
    spec = _pseudolabel_spec(logits, pseudolabels, validate)
    stats = seg_stats(logits, pseudolabels, spec, mask=voxel_mask)
    ce = torch.where(stats.ce_norm > 0, stats.ce_sum / stats.ce_norm.clamp_min(1e-12), 0.0)
    first = 0 if include_background or spec.num_classes == 1 else 1
    dice = (2.0 * stats.I[:, first:] + smooth) / (stats.P[:, first:] + stats.G[:, first:] + smooth)
    return lambda_ce * ce + lambda_dice * (1.0 - dice.mean(1))


def quality_weighted_dice_ce(
    logits: torch.Tensor,
    pseudolabels: torch.Tensor,
    weights: torch.Tensor,
    *,
    lambda_ce: float = 0.5,
    lambda_dice: float = 0.5,
    voxel_mask: torch.Tensor | None = None,
    eps: float = 1e-8,
    include_background: bool = False,
    smooth: float = 1e-6,
    validate: bool = True,
) -> torch.Tensor:
    """PL-QW: Σ_j w_j ℓ_j / (Σ_j w_j + eps), ℓ_j from ``per_sample_dice_ce``.

    weights [B] (e.g. ``quality_weights(g(x_u ⊕ ŷ))``): exactly 0 with zero gradient when
    all are 0. Without ``validate`` there is no host synchronisation, so the loss can be
    captured in a CUDA graph.
    """
    _checks.check_prediction(logits, "logits")
    _check_weights(weights, logits.shape[0], logits.device)
    per_sample = per_sample_dice_ce(
        logits,
        pseudolabels,
        lambda_ce=lambda_ce,
        lambda_dice=lambda_dice,
        voxel_mask=voxel_mask,
        include_background=include_background,
        smooth=smooth,
        validate=validate,
    )
    return weighted_mean(per_sample, weights.to(per_sample.dtype), eps)


class QualityWeightedDiceCELoss(nn.Module):
    """Module form of ``quality_weighted_dice_ce``: ``loss(logits, pseudolabels, weights,
    voxel_mask=None)``."""

    def __init__(
        self,
        lambda_ce: float = 0.5,
        lambda_dice: float = 0.5,
        eps: float = 1e-8,
        include_background: bool = False,
        smooth: float = 1e-6,
        validate: bool = True,
    ) -> None:
        super().__init__()
        if lambda_ce < 0 or lambda_dice < 0:
            raise ValueError("lambda_ce and lambda_dice must be >= 0")
        self.lambda_ce = lambda_ce
        self.lambda_dice = lambda_dice
        self.eps = eps
        self.include_background = include_background
        self.smooth = smooth
        self.validate = validate

    def forward(
        self,
        logits: torch.Tensor,
        pseudolabels: torch.Tensor,
        weights: torch.Tensor,
        voxel_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return quality_weighted_dice_ce(
            logits,
            pseudolabels,
            weights,
            lambda_ce=self.lambda_ce,
            lambda_dice=self.lambda_dice,
            voxel_mask=voxel_mask,
            eps=self.eps,
            include_background=self.include_background,
            smooth=self.smooth,
            validate=self.validate,
        )


def softmax_mse(
    student_logits: torch.Tensor,
    teacher_probs: torch.Tensor,
    weights: torch.Tensor | None = None,
    *,
    voxel_mask: torch.Tensor | None = None,
    eps: float = 1e-8,
) -> torch.Tensor:
    """Mean-teacher consistency: mean over voxels and channels of (softmax(student) −
    teacher)², as SSL4MIS's ``softmax_mse_loss`` (sigmoid when C = 1). With per-sample
    ``weights`` [B]: Σ_j w_j mse_j / (Σ_j w_j + eps). Teacher probabilities are constants.

    voxel_mask [B, *S] or [B, 1, *S] (e.g. UA-MT's certainty mask, a constant): each
    sample's mse_j is the mean over its masked voxels, Σ m·(p − t)² / (C·Σ m), and 0 for
    a sample with no masked voxel (UA-MT normalises per batch; per sample lets the same
    term take quality weights)."""
    _checks.check_prediction(student_logits, "student_logits")
    _checks.check_floating(student_logits, "student_logits")
    _checks.check_pair(student_logits, teacher_probs, ("student_logits", "teacher_probs"))
    _checks.check_floating(teacher_probs, "teacher_probs")
    _checks.check_no_target_grad(teacher_probs, "teacher_probs")
    c = student_logits.shape[1]
    if teacher_probs.shape[1] != c:
        raise ValueError(f"teacher_probs has {teacher_probs.shape[1]} channels, student {c}")
    if voxel_mask is not None:
        _check_voxel_mask(voxel_mask, student_logits)
    spec = StatsSpec(
        act="softmax" if c > 1 else "sigmoid",
        target="dense",
        num_classes=c,
        squared=True,
        diff=True,
    )
    stats = seg_stats(student_logits, teacher_probs, spec, mask=voxel_mask)
    if voxel_mask is None:
        per_sample = stats.D.sum(1) / student_logits[0].numel()
    else:
        count = voxel_mask.reshape(voxel_mask.shape[0], -1).sum(1).to(stats.D.dtype) * c
        per_sample = torch.where(count > 0, stats.D.sum(1) / count.clamp_min(1e-12), 0.0)
    if weights is None:
        return per_sample.mean()
    _check_weights(weights, student_logits.shape[0], student_logits.device)
    return weighted_mean(per_sample, weights.to(per_sample.dtype), eps)


def qar_loss(predictor: nn.Module, images: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """QAR: 1 − mean_j g(images_j ⊕ probs_j).

    The predictor must be in eval mode (its BatchNorm uses running statistics and nothing
    is updated); its parameters receive no gradient whatever their ``requires_grad`` —
    they enter as detached constants — while the gradient flows through g into ``probs``.
    images [B, C_img, *S], probs [B, C, *S] (the channels g was trained with).
    """
    if predictor.training:
        raise ValueError("qar_loss needs the quality predictor in eval mode: call predictor.eval()")
    _checks.check_prediction(images, "images")
    _checks.check_pair(images, probs, ("images", "probs"))
    frozen = {
        name: t.detach() for name, t in (*predictor.named_parameters(), *predictor.named_buffers())
    }
    x = torch.cat([images.to(probs.dtype), probs], dim=1)
    q = torch.func.functional_call(predictor, frozen, (x,))
    return 1.0 - q.float().mean()
