"""Weak-model masks (docs/method.md, "Phase 1", training pairs): snapshots of a segmentation
net trained from scratch on the labelled split, whose thresholded outputs are realistic bad masks.

MONAI's UNet by default, Dice loss, Adam 1e-3, random flips and rot90 per sample;
snapshots after epochs {1, 3, 5, 10, 15, 20} of a 20-epoch schedule, scaled to others.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from qgfast.losses import DiceLoss

PAPER_SNAPSHOTS = (1, 3, 5, 10, 15, 20)


def snapshot_epochs(epochs: int) -> list[int]:
    """The paper's snapshot epochs of a 20-epoch schedule, scaled to ``epochs``."""
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    return sorted({max(1, round(e * epochs / 20)) for e in PAPER_SNAPSHOTS})


def build_weak_unet(
    spatial_dims: int, in_channels: int, num_classes: int, channels: Sequence[int]
) -> nn.Module:
    """MONAI UNet; one logit channel for binary masks, C channels otherwise. Inputs of any
    size: each side is zero-padded to a multiple of 2^(levels − 1) and the logits cropped
    back (MONAI's UNet itself fails on sides its strides do not divide)."""
    from monai.networks.nets import UNet

    class PaddedUNet(UNet):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            multiple = 2 ** (len(self.channels) - 1)
            sides = x.shape[2:]
            pad = [p for s in reversed(sides) for p in (0, -s % multiple)]
            y = super().forward(F.pad(x, pad) if any(pad) else x)
            return y[(..., *(slice(0, s) for s in sides))]

    return PaddedUNet(
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        out_channels=1 if num_classes == 2 else num_classes,
        channels=tuple(channels),
        strides=(2,) * (len(channels) - 1),
        num_res_units=2,
    )


def unpack_batch(batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(images, labels) from a loader batch: a dict with "image"/"label" or a pair."""
    if isinstance(batch, dict):
        if "label" not in batch:
            raise ValueError("batch has no 'label': the quality predictor trains on labelled data")
        return batch["image"], batch["label"]
    if isinstance(batch, (tuple, list)) and len(batch) >= 2:
        return batch[0], batch[1]
    raise TypeError("batches must be dicts with 'image' and 'label' or (image, label) pairs")


def _augment(images: torch.Tensor, labels: torch.Tensor, gen: torch.Generator):
    """Per-sample random flips along each spatial axis and rot90 in the first plane
    (square planes only)."""
    nd = images.dim() - 2
    out_i, out_l = [], []
    for x, y in zip(images, labels, strict=True):
        flips = [d + 1 for d in range(nd) if torch.rand((), generator=gen) < 0.5]
        if flips:
            x, y = x.flip(flips), y.flip(flips)
        if x.shape[1] == x.shape[2]:
            turns = int(torch.randint(4, (), generator=gen))
            x, y = x.rot90(turns, (1, 2)), y.rot90(turns, (1, 2))
        out_i.append(x)
        out_l.append(y)
    return torch.stack(out_i), torch.stack(out_l)


def train_weak_models(
    data: Iterable[Any],
    *,
    spatial_dims: int,
    in_channels: int,
    num_classes: int,
    epochs: int = 20,
    channels: Sequence[int] = (16, 32, 64, 128, 256),
    lr: float = 1e-3,
    device: torch.device | str = "cpu",
    seed: int = 0,
    progress: bool = False,
) -> list[nn.Module]:
    """Train one UNet from scratch on ``data`` (re-iterable labelled batches) and return
    frozen eval-mode snapshots taken at ``snapshot_epochs(epochs)``."""
    torch.manual_seed(seed)
    device = torch.device(device)
    model = build_weak_unet(spatial_dims, in_channels, num_classes, channels).to(device)
    binary = num_classes == 2
    loss_fn = DiceLoss(sigmoid=binary, softmax=not binary, to_onehot_y=not binary)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    keep = set(snapshot_epochs(epochs))
    snapshots: list[nn.Module] = []
    epoch_iter = range(1, epochs + 1)
    if progress:
        from tqdm.auto import tqdm

        epoch_iter = tqdm(epoch_iter, desc="weak models", unit="epoch")
    for epoch in epoch_iter:
        model.train()
        for batch in data:
            images, labels = unpack_batch(batch)
            images, labels = _augment(images, labels, gen)
            images, labels = images.to(device), labels.to(device)
            loss = loss_fn(model(images), labels.long())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if epoch in keep:
            snap = copy.deepcopy(model).eval().requires_grad_(False)
            snapshots.append(snap)
    return snapshots


def save_weak_models(models: Sequence[nn.Module], path: str | Path, config: dict) -> None:
    """Snapshots with the UNet config that rebuilds them (see ``load_weak_models``)."""
    torch.save({"config": dict(config), "states": [m.state_dict() for m in models]}, path)


def load_weak_models(path: str | Path, device: torch.device | str = "cpu") -> list[nn.Module]:
    saved = torch.load(path, map_location=device, weights_only=True)
    cfg = saved["config"]
    models = []
    for state in saved["states"]:
        model = build_weak_unet(
            cfg["spatial_dims"], cfg["in_channels"], cfg["num_classes"], cfg["channels"]
        )
        model.load_state_dict(state)
        models.append(model.to(device).eval().requires_grad_(False))
    return models
