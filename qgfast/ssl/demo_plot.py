"""``demo.png`` of ``qgfast demo``: test Dice per method, the pseudolabel audit scatter, and
a grid of unlabelled images with their pseudolabels, predicted quality and weight."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch


def examples(
    run_dir: Path, quality_ckpt: Path, cases, hard: set[str], count: int = 6
) -> list[dict[str, Any]]:
    """Pseudolabels of a trained run's validation-selected network on unlabelled ``cases``
    (easy and hard alternately where the data marks hard cases), with the guide's
    predicted quality and weight and the true Dice against the hidden label."""
    from qgfast.data import read_case
    from qgfast.losses import dice_scores
    from qgfast.quality import QualityGuide, load_predictor
    from qgfast.ssl.base import hard_labels, probabilities
    from qgfast.ssl.inference import Preprocessing, prepare_image
    from qgfast.ssl.predict import load_run_model

    device = torch.device("cpu")
    model, run = load_run_model(run_dir / "best.pt", device)
    pre = Preprocessing.from_dict(run["preprocessing"])
    guide = QualityGuide(load_predictor(quality_ckpt, device)[0])
    easy = [c for c in cases if c.case_id not in hard and c.label is not None]
    difficult = [c for c in cases if c.case_id in hard and c.label is not None]
    picked = []
    for i in range(count):
        pool = difficult if (i % 2 and difficult) else easy or difficult
        if pool:
            picked.append(pool.pop(0))
    out = []
    with torch.no_grad():
        for case in picked:
            image, label = read_case(case)
            x = prepare_image(image, pre)
            pseudo = hard_labels(probabilities(model(x)))
            y = torch.from_numpy(np.ascontiguousarray(label)).long()[None]
            if tuple(y.shape[2:]) != tuple(x.shape[2:]):
                y = torch.nn.functional.interpolate(
                    y.float(), size=x.shape[2:], mode="nearest"
                ).long()
            classes = max(2, int(run["num_classes"]))
            dice = dice_scores(pseudo, y, num_classes=classes, include_background=False)
            shown = np.asarray(image, np.float32)
            shown = (shown - shown.min()) / max(float(np.ptp(shown)), 1e-6)
            out.append(
                {
                    "case": case.case_id,
                    "hard": case.case_id in hard,
                    "image": shown,  # [C, H, W] at the case's size, in [0, 1]
                    "pseudolabel": pseudo[0, 0].numpy(),
                    "label": y[0, 0].numpy(),
                    "quality": float(guide.scores(x, pseudo)[0]),
                    "weight": float(guide.weights(x, pseudo)[0]),
                    "dice": float(dice.mean()),
                }
            )
    return out


def plot_demo(report: dict[str, Any], path: Path, shown: list[dict[str, Any]]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch.nn.functional as F

    from qgfast.ssl.demo import NAMES

    methods = [m for m in report["config"]["methods"] if m in report["methods"]]
    cols = max(3, len(shown))
    fig = plt.figure(figsize=(3.2 * cols, 7.6), constrained_layout=True)
    grid = fig.add_gridspec(2, cols)
    bars = fig.add_subplot(grid[0, : cols // 2 + cols % 2])
    for i, m in enumerate(methods):
        row = report["methods"][m]
        colour = "tab:orange" if m.endswith("-qw") or m == "qar" else "tab:blue"
        bars.bar(i, row["dice"]["mean"], yerr=row["dice"]["sd"], color=colour, capsize=4)
        bars.plot([i] * len(row["dice"]["values"]), row["dice"]["values"], "k.", ms=4)
    bars.set_xticks(range(len(methods)), [NAMES[m] for m in methods], rotation=30)
    values = [v for m in methods for v in report["methods"][m]["dice"]["values"]]
    if values:
        bars.set_ylim(max(0.0, min(values) - 0.05), min(1.0, max(values) + 0.03))
    bars.set_ylabel("test Dice (mean ± sd over seeds; dots: seeds)")
    bars.set_title(
        f"{report['split']['labeled']} labelled + {report['split']['unlabeled']} "
        f"unlabelled, {report['steps']} steps"
    )
    scatter = fig.add_subplot(grid[0, cols // 2 + cols % 2 :])
    for m, a in report.get("audit", {}).items():
        scatter.scatter(
            a["dice"],
            a["quality"],
            s=8,
            alpha=0.6,
            label=f"{NAMES[m]} (r = {a['pearson']:.2f}, n = {a['n']})",
        )
    scatter.plot([0, 1], [0, 1], "k--", lw=0.8)
    scatter.set_xlabel("true Dice of the pseudolabel (hidden label, audit only)")
    scatter.set_ylabel("predicted quality g")
    scatter.set_title("pseudolabel audit (last validation)")
    scatter.set_xlim(0, 1)
    scatter.set_ylim(0, 1)
    if report.get("audit"):
        scatter.legend(fontsize=8, loc="upper left")
    for i, ex in enumerate(shown):
        ax = fig.add_subplot(grid[1, i])
        image = torch.from_numpy(ex["image"])[None]
        size = ex["pseudolabel"].shape
        if tuple(image.shape[2:]) != tuple(size):
            image = F.interpolate(image, size=size, mode="bilinear", align_corners=False)
        rgb = image[0].movedim(0, -1).numpy()
        ax.imshow(rgb if rgb.shape[-1] == 3 else rgb[..., 0], cmap="gray")
        ax.contour(ex["label"] > 0, levels=[0.5], colors="lime", linewidths=1)
        ax.contour(ex["pseudolabel"] > 0, levels=[0.5], colors="red", linewidths=1)
        ax.set_title(
            f"{'hard' if ex['hard'] else 'easy'}: q {ex['quality']:.2f}, "
            f"w {ex['weight']:.2f}\ntrue Dice {ex['dice']:.2f}",
            fontsize=9,
        )
        ax.axis("off")
    if shown:
        fig.text(
            0.5,
            0.005,
            f"unlabelled images: pseudolabel of {shown[0]['source']} (red), "
            "hidden label (green); q: predicted quality, w: PL-QW weight",
            ha="center",
            fontsize=9,
        )
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
