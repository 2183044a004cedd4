"""``qgfast predict``: a trained run's network over a folder of cases, written as files.

The checkpoint (``best.pt`` or ``last.pt`` of ``qgfast train``) carries the network spec,
the classes and the preprocessing, so the prediction repeats validation exactly: NIfTI
volumes by sliding windows, written as ``<case>.nii.gz`` label maps with the input's affine
and voxel sizes; 2D images at the training size, resized back, written as PNG (label
values; ×255 for a binary mask, as the masks of ISIC-style folders are stored). Where the
folder has labels, per-case and mean metrics go to ``metrics.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from qgfast.data import find_cases, read_case
from qgfast.ssl.checkpoint import load_checkpoint
from qgfast.ssl.inference import (
    Preprocessing,
    case_spacing,
    predict_labels,
    predict_probabilities,
)
from qgfast.ssl.metrics import case_metrics, summarise


def load_run_model(ckpt_path: str | Path, device: torch.device):
    """(the evaluated network with the checkpoint's weights, in eval mode; the run info)."""
    from qgfast.ssl.networks import build_network

    state = load_checkpoint(ckpt_path, "cpu")
    run = state.get("run") or {}
    if "preprocessing" not in run:
        raise ValueError(f"{ckpt_path}: holds no run description (not written by qgfast train)")
    cfg = run["config"]
    model = build_network(
        cfg["model"], run["spatial_dims"], run["in_channels"], run["num_classes"], cfg["channels"]
    )
    model.load_state_dict(state["models"][0])
    return model.to(device).eval(), run


def _write(pred: torch.Tensor, case, out: Path, num_classes: int) -> Path:
    labels = pred.cpu().numpy().astype(np.uint8)
    if labels.ndim == 3:
        from qgfast.data.nifti import read_nifti, write_nifti

        ref = read_nifti(case.images[0])
        path = out / f"{case.case_id}.nii.gz"
        write_nifti(path, labels, ref.affine, zooms=ref.zooms[:3])
        return path
    from PIL import Image

    path = out / f"{case.case_id}.png"
    Image.fromarray(labels * 255 if num_classes == 2 else labels).save(path)
    return path


def predict_folder(
    ckpt: str | Path, data: str | Path, out: str | Path, device: str | None = None
) -> dict[str, Any]:
    """Predict every case under ``data`` into ``out``; returns the metrics summary (or
    {"cases": N} when the folder has no labels)."""
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model, run = load_run_model(ckpt, dev)
    pre = Preprocessing.from_dict(run["preprocessing"])
    num_classes = max(2, int(run["num_classes"]))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cases = find_cases(data)
    if cases[0].spatial_dims != pre.spatial_dims:
        raise ValueError(
            f"{data} holds {cases[0].spatial_dims}D cases; the network is {pre.spatial_dims}D"
        )
    per_case = []
    for case in cases:
        image, label = read_case(case)
        if image.shape[0] != run["in_channels"]:
            raise ValueError(
                f"case {case.case_id}: {image.shape[0]} channel(s), the network reads "
                f"{run['in_channels']}"
            )
        pred = predict_labels(predict_probabilities(model, image, pre, dev))
        _write(pred, case, out, num_classes)
        if label is not None:
            spacing = case_spacing(case, pre.spatial_dims)
            m = case_metrics(pred.cpu(), torch.from_numpy(label[0]), num_classes, spacing)
            per_case.append({"case": case.case_id, **m})
    report: dict[str, Any] = {"cases": len(cases), "checkpoint": str(ckpt)}
    if per_case:
        report |= {"metrics": summarise(per_case), "per_case": per_case}
        (out / "metrics.json").write_text(json.dumps(report, indent=1) + "\n")
    return report
