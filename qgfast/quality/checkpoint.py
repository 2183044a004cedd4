"""Predictor checkpoints: weights plus everything that reproduces training and evaluation.

A checkpoint is one ``torch.save`` dict of plain types and tensors (loadable with
``weights_only=True``): ``format``, ``model`` (state dict), ``predictor`` (constructor
config), ``generator`` (``VQMGenerator.config()`` + the weak-model file name, so evaluation
draws the same corruption mix), ``train`` (the training config), ``data`` (preprocessing
and split, set by the caller), ``epoch``, ``best_val_loss``, ``best_epoch``, ``bad_epochs``,
``history``, and — in ``last.pt`` only, for resuming — ``optimizer``, ``scheduler``,
``scaler``.
Writes are atomic (temporary file, fsync, rename; ``qgfast._atomic``), so an interrupted
save never leaves a truncated checkpoint behind.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from qgfast._atomic import atomic_torch_save
from qgfast.corrupt import VQMGenerator
from qgfast.quality.model import QualityPredictor
from qgfast.quality.weak import load_weak_models

FORMAT = "qgfast.quality/1"


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    atomic_torch_save({"format": FORMAT, **state}, path)


def read_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # torch raises several types for a damaged file
        raise ValueError(f"{path}: not a readable checkpoint ({err})") from err
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ValueError(f"{path}: not a qgfast quality-predictor checkpoint ({FORMAT})")
    return ckpt


def load_predictor(
    path: str | Path, device: torch.device | str = "cpu"
) -> tuple[QualityPredictor, dict[str, Any]]:
    """(predictor in eval mode with the checkpoint's weights, the checkpoint dict)."""
    ckpt = read_checkpoint(path, device)
    cfg = dict(ckpt["predictor"])
    cfg["dropout"] = tuple(cfg["dropout"])
    predictor = QualityPredictor(**cfg)
    predictor.load_state_dict(ckpt["model"])
    return predictor.to(device).eval(), ckpt


def generator_from_checkpoint(
    ckpt: dict[str, Any], folder: str | Path, device: torch.device | str = "cpu"
) -> VQMGenerator:
    """The training corruption mix; weak models are loaded from ``folder`` (the
    checkpoint's folder) when training used them."""
    cfg = dict(ckpt["generator"])
    weak_file = cfg.pop("weak_models", None)
    weak = load_weak_models(Path(folder) / weak_file, device) if weak_file else []
    if not weak:
        cfg["p_weak"] = 0.0
    return VQMGenerator(weak_models=weak, **cfg)
