"""Agreement between predicted and true quality: MAE, MSE, Pearson r, Spearman ρ."""

from __future__ import annotations

import torch


def _ranks(x: torch.Tensor) -> torch.Tensor:
    """Average ranks (ties share the mean of their positions), 0-based, float64."""
    order = torch.argsort(x, stable=True)
    sorted_x = x[order]
    _, inverse, counts = torch.unique_consecutive(sorted_x, return_inverse=True, return_counts=True)
    ends = torch.cumsum(counts, 0).to(torch.float64)
    mean_rank = ends - (counts.to(torch.float64) + 1) / 2  # mean of positions start..end-1
    ranks = torch.empty_like(x, dtype=torch.float64)
    ranks[order] = mean_rank[inverse]
    return ranks


def pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    """Pearson r; NaN when either side is constant (r is undefined then)."""
    a, b = a.double() - a.double().mean(), b.double() - b.double().mean()
    denom = torch.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denom) if denom > 0 else float("nan")


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman ρ: Pearson r of the average ranks (matches scipy.stats.spearmanr)."""
    return pearson(_ranks(a.flatten()), _ranks(b.flatten()))


def agreement(predicted: torch.Tensor, true: torch.Tensor) -> dict[str, float]:
    """{"n", "mae", "mse", "pearson", "spearman"} over all elements (e.g. samples × classes)."""
    p, t = predicted.detach().flatten().double().cpu(), true.detach().flatten().double().cpu()
    if p.shape != t.shape:
        raise ValueError(f"predicted {tuple(predicted.shape)} and true {tuple(true.shape)} differ")
    if p.numel() == 0:
        nan = float("nan")
        return {"n": 0, "mae": nan, "mse": nan, "pearson": nan, "spearman": nan}
    err = p - t
    return {
        "n": p.numel(),
        "mae": float(err.abs().mean()),
        "mse": float((err * err).mean()),
        "pearson": pearson(p, t),
        "spearman": spearman(p, t),
    }
