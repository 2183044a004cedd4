"""Segmentation statistics: the one primitive behind every Dice/CE loss in qgfast.

For a prediction (B, C, *spatial) and a target, per sample b and class c:

    I[b,c] = Σ_n m·p·t          intersection
    P[b,c] = Σ_n m·p^k          prediction volume (k = 2 with ``squared``, else 1;
    G[b,c] = Σ_n m·t^k          target volume      |p|, |t| with ``absolute``)
    D[b,c] = Σ_n m·|p − t|^k    difference (soft-label Dice, mean-squared consistency)

and per sample the cross-entropy numerator and normaliser

    ce_sum[b] = Σ_n m·w_n·ce_n,   ce_norm[b] = Σ_n m·w_n

(w_n = class weight of the voxel's label for label targets, else 1), where p is the
activated prediction, t the target (one-hot of a label map, or dense probabilities) and m
an optional voxel weight. Every loss (MONAI Dice/DiceCE with all their options, the
quality-weighted pseudolabel loss, mean-squared consistency) is a few (B, C)-sized torch
operations on these sums, so one fused kernel sweep (``qgfast.kernels.seg_stats``) serves
them all, and autograd of those small operations hands the kernel's backward sweep
dL/dI, dL/dP, dL/dD and dL/dce_sum.

This module is the plain PyTorch definition: the oracle in tests and the CPU backend. It
materialises one-hot targets and activated probabilities, which the kernel never does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from qgfast.losses.spec import Stats, StatsSpec, accumulation_dtype


def _one_hot(labels: torch.Tensor, num_classes: int, dtype: torch.dtype) -> torch.Tensor:
    """(B, N) integer labels → (B, C, N)."""
    return F.one_hot(labels.long(), num_classes).movedim(-1, 1).to(dtype)


def _label_channels(labels: torch.Tensor, num_classes: int, dtype: torch.dtype) -> torch.Tensor:
    """(B, 1, *S) label map → (B, C, N): one-hot, or the 0/1 value itself when C = 1."""
    flat = labels.flatten(1)
    if num_classes == 1:
        return flat.to(dtype).unsqueeze(1)
    return _one_hot(flat, num_classes, dtype)


def _binarise(probs: torch.Tensor) -> torch.Tensor:
    """(B, C, N) probabilities → hard one-hot (argmax; threshold 0.5 when C = 1)."""
    if probs.shape[1] == 1:
        return (probs >= 0.5).to(probs.dtype)
    return _one_hot(probs.argmax(1), probs.shape[1], probs.dtype)


def prediction(x: torch.Tensor, spec: StatsSpec, dtype: torch.dtype) -> torch.Tensor:
    """p as (B, C, N) in ``dtype``."""
    if spec.act == "labels":
        return _label_channels(x, spec.num_classes, dtype)
    xf = x.flatten(2).to(dtype)
    if spec.act == "sigmoid":
        return torch.sigmoid(xf)
    if spec.act == "softmax":
        return torch.softmax(xf, dim=1)
    if spec.act == "hard":
        return _binarise(xf)
    return xf


def target_tensor(target: torch.Tensor, spec: StatsSpec, dtype: torch.dtype) -> torch.Tensor:
    """t as (B_target, C, N) in ``dtype``."""
    if spec.target == "labels":
        return _label_channels(target, spec.num_classes, dtype)
    t = target.flatten(2).to(dtype)
    return _binarise(t) if spec.target == "dense_hard" else t


def seg_stats(
    x: torch.Tensor,
    target: torch.Tensor,
    spec: StatsSpec,
    mask: torch.Tensor | None = None,
    class_weight: torch.Tensor | None = None,
) -> Stats:
    """The statistics of the module docstring, in plain differentiable PyTorch.

    x [B, C, *S] logits/probabilities (or [B, 1, *S] labels); target [B/repeats, 1 or C, *S];
    mask [B, *S] or [B, 1, *S] voxel weights; class_weight [C] (softmax CE: per-class
    weights; bce: the positive-class weight).
    """
    dtype = accumulation_dtype(x.dtype if x.is_floating_point() else torch.float32)
    p = prediction(x, spec, dtype)
    t = target_tensor(target, spec, dtype)
    batch, k = p.shape[0], spec.repeats
    m = None if mask is None else mask.reshape(batch, 1, -1).to(dtype)
    # [B·K, C, N] predictions against [B, C, N] targets: view them [B, K, C, N] and [B, 1, C, N]
    # so each target broadcasts over its K predictions instead of being copied K times
    p_k = p.view(batch // k, k, *p.shape[1:])
    t_k = t.unsqueeze(1)
    m_k = None if m is None else m.view(batch // k, k, *m.shape[1:])

    def total(v: torch.Tensor) -> torch.Tensor:  # Σ_n m·v → [B·K, C]
        v = v if m_k is None else m_k * v
        return v.sum(-1).expand(batch // k, k, -1).reshape(batch, -1)

    def power(v: torch.Tensor) -> torch.Tensor:
        return v * v if spec.squared else v

    I = total(p_k * t_k)  # noqa: E741
    P = total(power(p_k.abs() if spec.absolute else p_k))
    G = total(power(t_k.abs() if spec.absolute else t_k))
    D = total(power((p_k - t_k).abs())) if spec.diff else torch.zeros_like(I)
    if spec.ce == "none":
        zero = torch.zeros(batch, dtype=dtype, device=p.device)
        return Stats(I, P, G, D, zero, zero.clone())
    if k > 1:
        t = t.repeat_interleave(k, dim=0)
    m1 = torch.ones_like(p[:, 0]) if m is None else m[:, 0]
    if spec.ce == "softmax":
        log_s = torch.log_softmax(x.flatten(2).to(dtype), dim=1)
        if spec.target == "labels":
            labels = target.flatten(1).long()
            if k > 1:
                labels = labels.repeat_interleave(k, dim=0)
            w = torch.ones_like(m1) if class_weight is None else class_weight.to(dtype)[labels]
            nll = -log_s.gather(1, labels.unsqueeze(1))[:, 0]
            ce_sum, ce_norm = (m1 * w * nll).sum(-1), (m1 * w).sum(-1)
        else:
            cw = 1.0 if class_weight is None else class_weight.to(dtype).view(1, -1, 1)
            ce_sum = -(m1 * (cw * t * log_s).sum(1)).sum(-1)
            ce_norm = m1.sum(-1)
    else:  # bce
        pos = None if class_weight is None else class_weight.to(dtype).view(1, -1, 1)
        loss = F.binary_cross_entropy_with_logits(
            x.flatten(2).to(dtype), t, pos_weight=pos, reduction="none"
        )
        ce_sum, ce_norm = (m1 * loss[:, 0]).sum(-1), m1.sum(-1)
    return Stats(I, P, G, D, ce_sum, ce_norm)
