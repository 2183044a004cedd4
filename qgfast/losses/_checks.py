"""Input validation shared by the losses: every message names the argument and the fix."""

from __future__ import annotations

import torch


class ShapeMismatchError(ValueError, AssertionError):
    """Input and target shapes that do not fit. A ValueError like every qgfast input
    error, and an AssertionError too, because MONAI's Dice losses raise AssertionError for
    a shape mismatch and code written against them catches that (docs/integrations.md)."""


def check_prediction(x: torch.Tensor, name: str = "input") -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() < 3:
        raise ValueError(
            f"{name} must be (B, C, *spatial) with >= 1 spatial dim, got {tuple(x.shape)}"
        )
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name} has an empty batch or channel axis: {tuple(x.shape)}")


def check_floating(x: torch.Tensor, name: str) -> None:
    if not x.is_floating_point():
        raise TypeError(f"{name} must be floating point (logits or probabilities), got {x.dtype}")


def check_pair(
    x: torch.Tensor, target: torch.Tensor, names: tuple[str, str], repeats: int = 1
) -> None:
    """Same device, same rank, same spatial size, batch size B = repeats · B_target."""
    a, b = names
    if not isinstance(target, torch.Tensor):
        raise TypeError(f"{b} must be a torch.Tensor, got {type(target).__name__}")
    if target.device != x.device:
        raise ValueError(f"{a} is on {x.device} but {b} is on {target.device}")
    if target.dim() != x.dim():
        raise ShapeMismatchError(
            f"{a} {tuple(x.shape)} and {b} {tuple(target.shape)} must have the same number of "
            f"dims; give a label map as (B, 1, *spatial)"
        )
    if target.shape[2:] != x.shape[2:]:
        raise ShapeMismatchError(
            f"spatial shapes differ: {a} {tuple(x.shape)}, {b} {tuple(target.shape)}"
        )
    if target.shape[0] * repeats != x.shape[0]:
        want = "" if repeats == 1 else f" × repeats={repeats}"
        raise ShapeMismatchError(
            f"batch sizes differ: {a} has {x.shape[0]}, {b} has {target.shape[0]}{want}"
        )


def check_label_dtype(labels: torch.Tensor, name: str, allow_float: bool = False) -> None:
    if labels.dtype == torch.bool or not (labels.is_floating_point() or labels.is_complex()):
        return
    if allow_float and labels.is_floating_point():
        return
    raise TypeError(
        f"{name} is a (B, 1, ...) label map and must be an integer or bool tensor, got "
        f"{labels.dtype}; pass probabilities as (B, C, ...) instead"
    )


def _capturing() -> bool:
    return torch.cuda.is_available() and torch.cuda.is_current_stream_capturing()


def check_label_range(labels: torch.Tensor, num_classes: int, name: str, validate: bool) -> None:
    """Labels must lie in [0, max(C, 2) - 1]. This reads the labels once and synchronises
    with the device, so it is skipped when ``validate=False``, while a CUDA graph is being
    captured and under torch.compile; an out-of-range label then contributes no Dice
    overlap (its one-hot row is empty) and a meaningless cross-entropy term."""
    if not validate or labels.numel() == 0 or _capturing() or torch.compiler.is_compiling():
        return
    upper = max(num_classes, 2) - 1
    if labels.dtype == torch.bool:
        return
    lo, hi = torch.aminmax(labels.detach())
    lo_v, hi_v = lo.item(), hi.item()
    if lo_v < 0 or hi_v > upper:
        raise ValueError(
            f"{name} has labels in [{lo_v}, {hi_v}] but {num_classes} channel(s) allow [0, {upper}]"
        )


def check_no_target_grad(target: torch.Tensor, name: str) -> None:
    if torch.is_grad_enabled() and target.requires_grad:
        raise NotImplementedError(
            f"gradients with respect to {name} are not supported; pass {name}.detach()"
        )
