"""Backend dispatch and autograd glue for the segmentation statistics.

``seg_stats`` returns the same ``Stats`` from either backend: the plain PyTorch reference
(autograd through its ops) or the fused Triton sweeps wrapped in ``SegStatsFunction``,
whose backward receives dL/dI, dL/dP, dL/dD, dL/dce_sum from the small (B, C) loss
arithmetic and recomputes everything else from the saved logits.
"""

from __future__ import annotations

import torch

from qgfast.backend import select_backend
from qgfast.reference import seg_stats as reference
from qgfast.reference.seg_stats import Stats, StatsSpec

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
    if backend == "reference" or not kernel_ok:
        # float64 stays on the reference: the kernel accumulates in float32.
        return reference.seg_stats(x, target.detach(), spec, mask, class_weight)
    if not spec.differentiable or not (torch.is_grad_enabled() and x.requires_grad):
        from qgfast.kernels.seg_stats import seg_stats_forward

        return seg_stats_forward(x.detach(), target, spec, mask, class_weight)
    return Stats(*SegStatsFunction.apply(x, target.detach(), mask, class_weight, spec))
