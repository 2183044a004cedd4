"""Argument checks shared by every corruption op: what a batch of masks must be."""

from __future__ import annotations

import torch


def check_masks(masks: torch.Tensor) -> None:
    """masks: an integer or bool label map [B, 1, H, W] or [B, 1, H, W, D] with B >= 1."""
    if not isinstance(masks, torch.Tensor):
        raise TypeError(f"masks must be a torch.Tensor, got {type(masks).__name__}")
    if masks.dim() not in (4, 5) or masks.shape[1] != 1:
        raise ValueError(f"masks must be (B, 1, H, W) or (B, 1, H, W, D), got {tuple(masks.shape)}")
    if masks.shape[0] == 0:
        raise ValueError("masks is an empty batch (B = 0)")
    if masks.numel() == 0:
        raise ValueError(f"masks have an empty spatial axis: {tuple(masks.shape)}")
    if masks.is_floating_point() or masks.is_complex():
        raise TypeError(
            f"masks must be an integer or bool label map, got {masks.dtype}; threshold "
            "probabilities first (e.g. (probs >= 0.5).to(torch.uint8))"
        )
