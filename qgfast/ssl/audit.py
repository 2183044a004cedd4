"""Pseudolabel audit: does the quality guide's score of a pseudolabel track its true Dice
on this data? (docs/training.md, "Pseudolabel audit".)

At every validation the audit takes fixed batches of unlabelled-in-training cases whose
labels exist (synthetic data, the unlabelled remainder of a labelled folder, or an
``--audit-split`` held out of the labelled set), builds pseudolabels the way training
does (hard labels of the teacher where the framework has one, else of the evaluated
model) on the same kind of input (stream patches or images, un-augmented), and compares
the guide's predicted quality with the pseudolabels' true hard Dice (foreground classes
averaged; 1 when prediction and label are both empty): Pearson r, MAE, and both means.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from qgfast.losses import dice_scores
from qgfast.quality.metrics import agreement
from qgfast.ssl import distributed as dist
from qgfast.ssl.base import Framework, hard_labels, probabilities


class PseudolabelAudit:
    """``audit(framework)`` → {"pearson", "mae", "quality_mean", "dice_mean", "n"}.

    batches: labelled batches ({"image", "label"}) of audit cases, read once and kept (the
        same samples at every validation, so the curve shows the guide and the teacher
        changing, not the data).
    """

    def __init__(self, batches: Iterable[dict[str, Any]], device: torch.device | str) -> None:
        self.device = torch.device(device)
        self.batches = [{"image": b["image"].clone(), "label": b["label"].clone()} for b in batches]
        if not self.batches:
            raise ValueError("the audit has no batch (no unlabelled case with a label)")
        # The last audit's per-sample pairs (what a scatter of predicted quality against
        # true Dice plots); None until the first call.
        self.last_pairs: dict[str, list[float]] | None = None

    @torch.no_grad()
    def __call__(self, framework: Framework) -> dict[str, float]:
        guide = framework.quality or framework.qar
        if guide is None:
            return {}
        model = framework.teacher if framework.teacher is not None else framework.eval_model
        model = dist.for_inference(model)
        was_training = model.training
        model.eval()
        predicted, true = [], []
        try:
            for b in self.batches:
                x = b["image"].to(self.device)
                y = b["label"].to(self.device)
                probs = probabilities(model(x))
                pseudo = hard_labels(probs)
                classes = max(probs.shape[1], 2)
                predicted.append(guide.scores(x, pseudo).float().cpu())
                d = dice_scores(pseudo, y, num_classes=classes, include_background=False)
                true.append(d.mean(1).float().cpu())
        finally:
            model.train(was_training)
        q = torch.cat([t for part in dist.gather(predicted) for t in part])
        d = torch.cat([t for part in dist.gather(true) for t in part])
        stats = agreement(q, d)
        self.last_pairs = {"quality": q.tolist(), "dice": d.tolist()}
        return {
            "pearson": stats["pearson"],
            "mae": stats["mae"],
            "quality_mean": float(q.mean()),
            "dice_mean": float(d.mean()),
            "n": int(q.numel()),
        }
