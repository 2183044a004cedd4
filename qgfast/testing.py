"""The tolerance rule (docs/architecture.md, "Correctness"), for tests of fused kernels
against their references.

Rule: with a float64 ground truth (the reference run on float64 copies of the inputs),

    error(kernel) <= error(reference in the kernel's dtype) + tol

for values and for gradients. ``tol`` is 5e-4 for float32 and 1e-2 for bfloat16;
float16 gets 2e-3 (10 mantissa bits, between the two) and float64 1e-10.

Errors are *scaled*: max |x - truth| / max |truth| (or the plain max difference when the
truth is all zeros). Scaling makes one tolerance meaningful for a loss of order 1 and for a
gradient of order 1/N alike; an absolute 5e-4 would accept any gradient of a large volume.
Non-finite values must match the truth's pattern exactly, otherwise the error is infinite.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

TOLERANCE: dict[torch.dtype, float] = {
    torch.float64: 1e-10,
    torch.float32: 5e-4,
    torch.float16: 2e-3,
    torch.bfloat16: 1e-2,
}


def tolerance_for(dtype: torch.dtype) -> float:
    """The tolerance of the rule for results computed in ``dtype``."""
    try:
        return TOLERANCE[dtype]
    except KeyError:
        raise ValueError(f"no tolerance defined for dtype {dtype}") from None


def scaled_error(actual: torch.Tensor, truth: torch.Tensor) -> float:
    """max |actual - truth| / max |truth|, in float64; inf on a shape or non-finite mismatch."""
    if actual.shape != truth.shape:
        return math.inf
    a = actual.detach().to("cpu", torch.float64)
    t = truth.detach().to("cpu", torch.float64)
    finite = torch.isfinite(t)
    # Non-finite truth entries must be reproduced exactly (nan where nan, same-signed inf).
    same_nonfinite = (torch.isnan(a) & torch.isnan(t)) | (a == t)
    if not bool(torch.where(finite, torch.isfinite(a), same_nonfinite).all()):
        return math.inf
    if not bool(finite.any()):
        return 0.0
    diff = (a - t)[finite].abs().max().item()
    scale = t[finite].abs().max().item()
    return diff / scale if scale > 0 else diff


@dataclass(frozen=True)
class Comparison:
    """One application of the rule to one tensor."""

    what: str
    kernel_error: float
    reference_error: float
    tol: float

    @property
    def ok(self) -> bool:
        return self.kernel_error <= self.reference_error + self.tol

    def __str__(self) -> str:
        verdict = "ok" if self.ok else "FAILS"
        return (
            f"{self.what}: kernel error {self.kernel_error:.3e} vs reference error "
            f"{self.reference_error:.3e} + tol {self.tol:.1e} -> {verdict}"
        )


def compare(
    kernel: torch.Tensor,
    reference: torch.Tensor,
    truth: torch.Tensor,
    *,
    tol: float | None = None,
    what: str = "output",
) -> Comparison:
    """Apply the rule to one tensor; ``tol`` defaults to the kernel result's dtype."""
    return Comparison(
        what=what,
        kernel_error=scaled_error(kernel, truth),
        reference_error=scaled_error(reference, truth),
        tol=tolerance_for(kernel.dtype) if tol is None else tol,
    )


def _as_tuple(out: object) -> tuple[torch.Tensor, ...]:
    if isinstance(out, torch.Tensor):
        return (out,)
    if isinstance(out, (tuple, list)) and all(isinstance(o, torch.Tensor) for o in out):
        return tuple(out)
    raise TypeError(f"op must return a tensor or a tuple of tensors, got {type(out).__name__}")


def _run(
    fn: Callable[..., object],
    inputs: Sequence[object],
    dtype_of: Callable[[torch.Tensor], torch.dtype],
    cotangent_seed: int | None,
    differentiable: Sequence[int] | None,
) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor | None, ...]]:
    """Run ``fn`` on fresh leaf copies of ``inputs``; gradients if a seed is given."""
    leaves: list[object] = []
    for i, x in enumerate(inputs):
        if isinstance(x, torch.Tensor) and x.is_floating_point():
            wants_grad = cotangent_seed is not None and (
                differentiable is None or i in differentiable
            )
            leaves.append(x.detach().to(dtype_of(x)).requires_grad_(wants_grad))
        else:
            leaves.append(x)
    outs = _as_tuple(fn(*leaves))
    if cotangent_seed is None:
        return tuple(o.detach() for o in outs), ()
    diff_in = [x for x in leaves if isinstance(x, torch.Tensor) and x.requires_grad]
    # One cotangent per output, drawn in output order whether or not that output needs a
    # gradient, so every run sees the same cotangent for the same output.
    gen = torch.Generator().manual_seed(cotangent_seed)
    cots = [torch.randn(o.shape, generator=gen, dtype=torch.float64) for o in outs]
    pairs = [
        (o, c.to(o.device, o.dtype)) for o, c in zip(outs, cots, strict=True) if o.requires_grad
    ]
    if pairs:
        grads = torch.autograd.grad(
            [o for o, _ in pairs], diff_in, [c for _, c in pairs], allow_unused=True
        )
    else:
        grads = tuple(None for _ in diff_in)
    return tuple(o.detach() for o in outs), tuple(grads)


def assert_matches_reference(
    kernel_fn: Callable[..., object],
    reference_fn: Callable[..., object],
    inputs: Sequence[object],
    *,
    grad: bool = True,
    tol: float | None = None,
    seed: int = 0,
    differentiable: Sequence[int] | None = None,
) -> list[Comparison]:
    """Check ``kernel_fn(*inputs)`` against ``reference_fn`` by the rule, outputs and
    (with ``grad``) gradients of every floating input (or of the inputs whose indices are
    in ``differentiable``) under one fixed random cotangent. Every floating input is cast
    to float64 for the ground truth.

    The ground truth is ``reference_fn`` on float64 copies of the floating inputs. Returns
    the comparisons made (all passing); raises AssertionError listing every one otherwise.
    """
    cot_seed = seed if grad else None
    k_out, k_grad = _run(kernel_fn, inputs, lambda x: x.dtype, cot_seed, differentiable)
    r_out, r_grad = _run(reference_fn, inputs, lambda x: x.dtype, cot_seed, differentiable)
    t_out, t_grad = _run(reference_fn, inputs, lambda x: torch.float64, cot_seed, differentiable)
    if not len(k_out) == len(r_out) == len(t_out):
        raise AssertionError(f"output counts differ: kernel {len(k_out)}, reference {len(r_out)}")
    results = [
        compare(k, r, t, tol=tol, what=f"output[{i}]")
        for i, (k, r, t) in enumerate(zip(k_out, r_out, t_out, strict=True))
    ]
    for i, (k, r, t) in enumerate(zip(k_grad, r_grad, t_grad, strict=True)):
        if k is None and t is None:
            continue
        if k is None or r is None or t is None:
            raise AssertionError(f"grad[{i}]: defined for some runs only (kernel {k is not None})")
        results.append(compare(k, r, t, tol=tol, what=f"grad[{i}]"))
    failed = [r for r in results if not r.ok]
    assert not failed, "\n".join(str(r) for r in results)
    return results
