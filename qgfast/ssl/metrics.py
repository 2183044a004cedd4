"""Segmentation metrics per case and their summary, through MONAI's implementations.

Per case and foreground class: Dice (``DiceMetric``), Jaccard (``MeanIoU``), HD95
(``HausdorffDistanceMetric(percentile=95)``) and ASD (symmetric
``SurfaceDistanceMetric``), distances in millimetres from the voxel spacing. Cases are
scored one by one and then averaged (per class over cases, then over classes), never
pooled into one big volume.

Empty masks have stated values (docs/training.md, "Metric conventions"), never a silent 0:
- Dice and Jaccard: 1 when prediction and label are both empty, 0 when only one is.
- HD95 and ASD: 0 mm when both are empty; when exactly one is empty, the distance is
  undefined (MONAI returns inf or nan) and qgfast scores it as the image diagonal in mm,
  the largest distance two points of the image can be apart, and counts it in
  ``<metric>_empty`` so a summary shows how many cases carry that penalty.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

METRICS = ("dice", "jaccard", "hd95", "asd")
DISTANCES = ("hd95", "asd")


def _onehot(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """[*S] integer → [1, C, *S] float one-hot."""
    return F.one_hot(labels.long(), num_classes).movedim(-1, 0)[None].float()


def image_diagonal(shape: Sequence[int], spacing: Sequence[float]) -> float:
    """Length in mm of the image's diagonal: the penalty distance of an empty mask."""
    return math.sqrt(sum(((n - 1) * s) ** 2 for n, s in zip(shape, spacing, strict=True)))


def case_metrics(
    prediction: torch.Tensor,
    label: torch.Tensor,
    num_classes: int,
    spacing: Sequence[float] | None = None,
) -> dict[str, list[float]]:
    """Metrics of one case: {metric: [value per foreground class]} plus "empty_prediction"
    and "empty_label" flags per class. prediction, label: integer label maps [*S] (2D or 3D)
    of the same shape; spacing: voxel size in mm per axis (default 1)."""
    from monai.metrics import (
        DiceMetric,
        HausdorffDistanceMetric,
        MeanIoU,
        SurfaceDistanceMetric,
    )

    if prediction.shape != label.shape:
        raise ValueError(
            f"prediction {tuple(prediction.shape)} and label {tuple(label.shape)} differ in shape"
        )
    if prediction.dim() not in (2, 3):
        raise ValueError(f"label maps must be 2D or 3D [*S], got {tuple(prediction.shape)}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2 (background + foreground), got {num_classes}")
    spacing = [1.0] * label.dim() if spacing is None else [float(s) for s in spacing]
    if len(spacing) != label.dim() or min(spacing) <= 0:
        raise ValueError(f"spacing {spacing} does not suit a {label.dim()}D label map")
    hi = int(max(prediction.max(), label.max())) if label.numel() else 0
    if hi >= num_classes or int(min(prediction.min(), label.min())) < 0:
        raise ValueError(f"label values must lie in 0..{num_classes - 1}, found up to {hi}")
    p, y = _onehot(prediction.cpu(), num_classes), _onehot(label.cpu(), num_classes)
    common: dict[str, Any] = {"include_background": False, "reduction": "none"}
    dice = DiceMetric(ignore_empty=False, **common)(p, y)[0]
    jaccard = MeanIoU(ignore_empty=False, **common)(p, y)[0]
    with warnings.catch_warnings():  # MONAI warns about the empty masks handled below
        warnings.simplefilter("ignore")
        hd95 = HausdorffDistanceMetric(percentile=95, **common)(p, y, spacing=spacing)[0]
        asd = SurfaceDistanceMetric(symmetric=True, **common)(p, y, spacing=spacing)[0]
    empty_p = (p[0, 1:].flatten(1).sum(1) == 0).tolist()
    empty_y = (y[0, 1:].flatten(1).sum(1) == 0).tolist()
    diagonal = image_diagonal(label.shape, spacing)
    out: dict[str, list[float]] = {"dice": dice.tolist(), "jaccard": jaccard.tolist()}
    for name, values in (("hd95", hd95), ("asd", asd)):
        row = []
        for c, v in enumerate(values.tolist()):
            if empty_p[c] and empty_y[c]:
                v = 0.0
            elif empty_p[c] or empty_y[c]:
                v = diagonal
            row.append(float(v))
        out[name] = row
    out["empty_prediction"] = [float(e) for e in empty_p]
    out["empty_label"] = [float(e) for e in empty_y]
    return out


def summarise(cases: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Mean of per-case metrics: "<metric>" (over classes of the per-class means),
    "<metric>_per_class" [C − 1], "<metric>_sd" (over cases of the class-mean), "cases",
    and for HD95/ASD "<metric>_empty" (cases × classes scored with the empty-mask penalty)."""
    if not cases:
        raise ValueError("no case to summarise")
    out: dict[str, Any] = {"cases": len(cases)}
    for name in METRICS:
        table = torch.tensor([c[name] for c in cases], dtype=torch.float64)  # [N, C − 1]
        out[name] = float(table.mean())
        out[f"{name}_per_class"] = table.mean(0).tolist()
        out[f"{name}_sd"] = float(table.mean(1).std(unbiased=False))
    for name in DISTANCES:
        out[f"{name}_empty"] = int(
            sum(
                (ep != el)
                for c in cases
                for ep, el in zip(c["empty_prediction"], c["empty_label"], strict=True)
            )
        )
    return out
