"""Loss arithmetic on the (B, C) statistics; shared by every loss and both backends."""

from __future__ import annotations

import torch

from qgfast.losses.spec import Stats


def dice_loss_terms(
    stats: Stats,
    *,
    jaccard: bool = False,
    soft_label: bool = False,
    smooth_nr: float = 1e-5,
    smooth_dr: float = 1e-5,
) -> torch.Tensor:
    """1 − Dice (or 1 − Jaccard) per row of the statistics, MONAI's formulation:
    tp, fp, fn from the sums, halved fp/fn for Dice. With ``soft_label`` the true positives
    are (P + G − D)/2, which equals I for hard targets and stays correct for soft ones."""
    tp = (stats.P + stats.G - stats.D) / 2 if soft_label else stats.I
    fp = stats.P - tp
    fn = stats.G - tp
    if not jaccard:
        fp = fp * 0.5
        fn = fn * 0.5
    return 1.0 - (2.0 * tp + smooth_nr) / (2.0 * (tp + fp + fn) + smooth_dr)


def select_classes(stats: Stats, first: int) -> Stats:
    """Drop the channels before ``first`` (e.g. the background) from the Dice sums."""
    if first == 0:
        return stats
    return stats._replace(
        I=stats.I[:, first:], P=stats.P[:, first:], G=stats.G[:, first:], D=stats.D[:, first:]
    )


def sum_over_batch(stats: Stats) -> Stats:
    """MONAI ``batch=True``: one Dice per class over the whole batch; rows become (1, C)."""
    return stats._replace(
        I=stats.I.sum(0, keepdim=True),
        P=stats.P.sum(0, keepdim=True),
        G=stats.G.sum(0, keepdim=True),
        D=stats.D.sum(0, keepdim=True),
    )


def weighted_mean(values: torch.Tensor, weights: torch.Tensor, eps: float) -> torch.Tensor:
    """Σ w·v / (Σ w + eps): exactly 0, with zero gradient into v, when every weight is 0."""
    return (weights * values).sum() / (weights.sum() + eps)
