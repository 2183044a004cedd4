"""``evaluate_predictor``: how well g's scores track the true Dice of held-out masks.

Reports (docs/method.md, "Phase 1", evaluation) agreement — MAE, MSE, Pearson r, Spearman ρ — on
corrupted held-out masks drawn with the training corruption mix, and the same metrics
under two image-dependence probes: "blackout" (the image zeroed) and "shuffle" (each mask
paired with another image of its batch). A predictor that reads the image degrades under
both; one that judges the mask's shape alone does not. Metrics restricted to weak-model
masks are reported when the mix has weak models, and per op family (the first op of each
copy) so failure modes show. Optionally saves a calibration plot (predicted vs true).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from qgfast.corrupt import VQMGenerator
from qgfast.quality.metrics import agreement
from qgfast.quality.model import QualityPredictor
from qgfast.quality.train import _batches, corrupt_batch

PROBES = ("corrupted", "blackout", "shuffle")


@torch.no_grad()
def evaluate_predictor(
    predictor: QualityPredictor,
    data: Iterable[Any],
    *,
    generator: VQMGenerator | None = None,
    k: int = 10,
    seed: int = 12345,
    device: torch.device | str | None = None,
    batch_size: int = 128,
    plot: str | Path | None = None,
    train_mae: float | None = None,
) -> dict[str, Any]:
    """Agreement of ``predictor`` with the true Dice on K corrupted masks per image of
    ``data`` (labelled batches; the shuffle probe needs batches of ≥ 2 images).

    Returns {"corrupted", "blackout", "shuffle": agreement dicts, "weak_model": agreement
    on weak-model copies (n = 0 without them), "per_op": {op name: agreement},
    "image_dependence": {"blackout_mae_increase", "shuffle_mae_increase",
    "blackout_pearson_drop", "shuffle_pearson_drop"}}, and with ``train_mae`` (the MAE on
    the training draws) "generalisation_gap": held-out MAE − train_mae, also in the plot's
    title.
    """
    generator = generator or VQMGenerator()
    device = torch.device(device or next(predictor.parameters()).device)
    predictor = predictor.to(device).eval()
    preds: dict[str, list[torch.Tensor]] = {p: [] for p in PROBES}
    truths: dict[str, list[torch.Tensor]] = {p: [] for p in PROBES}
    first_ops = []
    for i, (images, labels) in enumerate(_batches(data, device, predictor)):
        masks, target, ops = corrupt_batch(generator, predictor, images, labels, k, seed + i)
        source = torch.arange(masks.shape[0], device=device) // k
        partner = (source + 1) % images.shape[0]  # a derangement when the batch has ≥ 2
        if images.shape[0] < 2:
            partner = torch.full_like(source, -1)
        for chunk in torch.arange(masks.shape[0], device=device).split(batch_size):
            m = masks[chunk].to(images.dtype)
            img = images[source[chunk]]
            preds["corrupted"].append(predictor(torch.cat([img, m], 1)))
            preds["blackout"].append(predictor(torch.cat([torch.zeros_like(img), m], 1)))
            if partner[0] >= 0:
                preds["shuffle"].append(predictor(torch.cat([images[partner[chunk]], m], 1)))
        for probe in PROBES if partner[0] >= 0 else PROBES[:2]:  # shuffle needs a partner
            truths[probe].append(target.float())
        first_ops.append(ops[:, 0])
    if not first_ops:
        raise ValueError("data yielded no batches")
    true = torch.cat(truths["corrupted"])
    op_ids = torch.cat(first_ops).to(true.device)
    report: dict[str, Any] = {}
    for probe in PROBES:
        if len(preds[probe]) == 0:
            report[probe] = agreement(torch.empty(0), torch.empty(0))
            continue
        report[probe] = agreement(torch.cat(preds[probe]), torch.cat(truths[probe]))
    predicted = torch.cat(preds["corrupted"])
    per_op = {}
    for op_id in op_ids.unique().tolist():
        rows = op_ids == op_id
        per_op[generator.op_names[op_id]] = agreement(predicted[rows], true[rows])
    report["per_op"] = dict(sorted(per_op.items()))
    report["weak_model"] = per_op.get("weak_model", agreement(torch.empty(0), torch.empty(0)))
    base = report["corrupted"]
    report["image_dependence"] = {}
    for probe in ("blackout", "shuffle"):
        report["image_dependence"][f"{probe}_mae_increase"] = report[probe]["mae"] - base["mae"]
        report["image_dependence"][f"{probe}_pearson_drop"] = (
            base["pearson"] - report[probe]["pearson"]
        )
    gap = None if train_mae is None else report["corrupted"]["mae"] - train_mae
    if gap is not None:
        report["generalisation_gap"] = gap
    if plot is not None:
        calibration_plot(predicted, true, plot, report["corrupted"], gap)
    return report


def calibration_plot(
    predicted: torch.Tensor,
    true: torch.Tensor,
    path: str | Path,
    stats: dict[str, float],
    gap: float | None = None,
) -> None:
    """Predicted vs true Dice (2D histogram, log colour) with the identity line, as PNG."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    p = predicted.detach().flatten().float().cpu().numpy()
    t = true.detach().flatten().float().cpu().numpy()
    fig, ax = plt.subplots(figsize=(4.8, 4.4), dpi=120)
    *_, image = ax.hist2d(t, p, bins=40, range=[[0, 1], [0, 1]], norm=LogNorm(), cmap="viridis")
    fig.colorbar(image, ax=ax, label="masks")
    ax.plot([0, 1], [0, 1], color="white", lw=1, ls="--")
    ax.set_xlabel("true Dice")
    ax.set_ylabel("predicted quality")
    title = (
        f"MAE {stats['mae']:.3f} · r {stats['pearson']:.3f} · ρ {stats['spearman']:.3f}"
        f" · n {stats['n']}"
    )
    if gap is not None:
        title += f"\ngeneralisation gap {gap:+.3f} (held-out − training MAE)"
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
