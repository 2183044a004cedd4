"""Backend dispatch and autograd glue for the segmentation statistics.

``seg_stats`` returns the same ``Stats`` from either backend: the plain PyTorch reference
(autograd through its ops) or the fused Triton sweeps wrapped in ``SegStatsFunction``,
whose backward receives dL/dI, dL/dP, dL/dD, dL/dce_sum from the small (B, C) loss
arithmetic and recomputes everything else from the saved logits.

Two label maps on the CPU (hard Dice of label maps: ``dice_scores``' quality targets) are
counted instead (``_count_labels``): exact integer counts per class from NumPy bool planes,
no one-hot and no float copy, the same statistics as the reference's sums of 0/1 values.
``QGFAST_BACKEND=reference`` forces the reference's float sums.
"""

from __future__ import annotations

import numpy as np
import torch

from qgfast.backend import cpu_fast_path, native_extension, select_backend
from qgfast.losses.spec import Stats, StatsSpec
from qgfast.reference import seg_stats as reference

_KERNEL_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


class SegStatsFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, target, mask, class_weight, spec: StatsSpec):  # type: ignore[override]
        from qgfast.kernels.seg_stats import seg_stats_forward

        stats = seg_stats_forward(x, target, spec, mask, class_weight)
        ctx.save_for_backward(x, target, mask, class_weight)
        ctx.spec = spec
        constant = [stats.G, stats.ce_norm] + ([] if spec.diff else [stats.D])
        ctx.mark_non_differentiable(*constant)
        return tuple(stats)

    @staticmethod
    def backward(ctx, gI, gP, _gG, gD, gce, _gnorm):  # type: ignore[override]
        from qgfast.kernels.seg_stats import seg_stats_backward

        x, target, mask, class_weight = ctx.saved_tensors
        spec: StatsSpec = ctx.spec
        b, c = x.shape[0], spec.num_classes

        def dense(g: torch.Tensor | None, shape: tuple[int, ...]) -> torch.Tensor:
            return torch.zeros(shape, device=x.device) if g is None else g

        dx = seg_stats_backward(
            x, target, spec, mask, class_weight,
            dense(gI, (b, c)), dense(gP, (b, c)), dense(gD, (b, c)), dense(gce, (b,)),
        )  # fmt: skip
        return dx, None, None, None, None


def seg_stats(
    x: torch.Tensor,
    target: torch.Tensor,
    spec: StatsSpec,
    mask: torch.Tensor | None = None,
    class_weight: torch.Tensor | None = None,
) -> Stats:
    """Statistics of ``qgfast.reference.seg_stats`` on the backend ``select_backend`` picks.

    Inputs are assumed validated by the caller (shapes, dtypes, label ranges). The target,
    mask and class weights are constants: no gradient flows into them.
    """
    if class_weight is not None:
        class_weight = class_weight.to(device=x.device)
    tensors = [t for t in (x, target, mask, class_weight) if t is not None]
    backend = select_backend(*tensors)
    kernel_ok = spec.act == "labels" or x.dtype in _KERNEL_DTYPES
    if _countable(spec, mask) and cpu_fast_path(x, target):
        return _count_labels(x, target, spec)
    if backend == "reference" or not kernel_ok:
        # float64 stays on the reference: the kernel accumulates in float32.
        return reference.seg_stats(x, target.detach(), spec, mask, class_weight)
    if not spec.differentiable or not (torch.is_grad_enabled() and x.requires_grad):
        from qgfast.kernels.seg_stats import seg_stats_forward

        return seg_stats_forward(x.detach(), target, spec, mask, class_weight)
    return Stats(*SegStatsFunction.apply(x, target.detach(), mask, class_weight, spec))


def _countable(spec: StatsSpec, mask: torch.Tensor | None) -> bool:
    """Label map against label map, unweighted, no cross-entropy: every statistic is a count
    of equal labels."""
    return spec.act == "labels" and spec.target == "labels" and spec.ce == "none" and mask is None


def _count_labels(pred: torch.Tensor, target: torch.Tensor, spec: StatsSpec) -> Stats:
    """I, P, G, D of label maps pred [B, 1, *S] and target [B / repeats, 1, *S] by counting
    per class c (c = 1 alone when C = 1): I = |p = c ∧ t = c|, P = |p = c|, G = |t = c|,
    D = P + G − 2I (for 0/1 planes squared and absolute values change nothing). One sample
    at a time: NumPy counts a contiguous bool row at memory speed (a batched sum over the
    last axis is several times slower), and no plane larger than one sample exists; uint8
    (and bool) maps count in ``qgfast._native``, one fused pass per class."""
    b, k = pred.shape[0], spec.repeats
    p = pred.detach().reshape(b, -1).numpy()
    t = target.detach().reshape(b // k, -1).numpy()
    p, t = (a.view(np.uint8) if a.dtype == np.bool_ else a for a in (p, t))
    classes = [1] if spec.num_classes == 1 else list(range(spec.num_classes))
    native = native_extension()
    if native is not None and p.dtype == t.dtype == np.uint8 and max(classes) < 256:
        # one fused pass per class (I, P and G together) instead of three NumPy passes
        counts = native.label_counts_u8(p, t, k, classes)
    else:
        counts = _numpy_counts(p, t, k, classes)
    inter, pred_n, target_n = torch.from_numpy(counts).to(torch.float32)
    diff = pred_n + target_n - 2 * inter if spec.diff else torch.zeros_like(inter)
    zero = torch.zeros(b, dtype=torch.float32)
    return Stats(inter, pred_n, target_n, diff, zero, zero.clone())


def _numpy_counts(p: np.ndarray, t: np.ndarray, k: int, classes: list[int]) -> np.ndarray:
    """[3 (I, P, G), B, C] counts of the label rows p [B, N] against t [B / k, N]."""
    b = p.shape[0]
    counts = np.zeros((3, b, len(classes)), dtype=np.int64)  # I, P, G
    n = p.shape[1]
    t_c, p_c, both = (np.empty(n, dtype=bool) for _ in range(3))  # one sample's planes
    for j, c in enumerate(classes):
        for g in range(b // k):
            np.equal(t[g], c, out=t_c)
            counts[2, g * k : (g + 1) * k, j] = np.count_nonzero(t_c)
            for i in range(g * k, (g + 1) * k):
                np.equal(p[i], c, out=p_c)
                counts[1, i, j] = np.count_nonzero(p_c)
                counts[0, i, j] = np.count_nonzero(np.logical_and(p_c, t_c, out=both))
    return counts
