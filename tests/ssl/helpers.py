"""Tiny nets, batches and a controllable quality predictor for the framework tests."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from qgfast.quality import QualityGuide


class TinyNet(nn.Module):
    """conv → norm → ReLU → dropout → conv: (B, C_in, *S) → (B, C, *S) logits.
    ``norm="batch"`` couples the samples of a batch; ``"group"`` keeps them independent."""

    def __init__(
        self, dims: int = 2, in_ch: int = 1, out_ch: int = 2, norm: str = "group", dropout=0.2
    ):
        super().__init__()
        conv = nn.Conv2d if dims == 2 else nn.Conv3d
        self.encoder = conv(in_ch, 4, 3, padding=1)
        self.norm = (
            nn.GroupNorm(2, 4)
            if norm == "group"
            else (nn.BatchNorm2d if dims == 2 else nn.BatchNorm3d)(4)
        )
        self.drop = nn.Dropout(dropout)
        self.head = conv(4, out_ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(F.relu(self.norm(self.encoder(x)))))


class StubPredictor(nn.Module):
    """g(x) = sigmoid(10·mean(image channel 0) + mean(conv(x))): images with a very
    negative mean score ~0 (weight 0), others ~1; differentiable in its input, with a
    parameter so tests can check it never receives a gradient."""

    def __init__(self, dims: int = 2, image_channels: int = 1, num_classes: int = 2):
        super().__init__()
        self.spatial_dims = dims
        self.image_channels = image_channels
        self.num_classes = num_classes
        self.mask_channels = num_classes - 1
        conv = nn.Conv2d if dims == 2 else nn.Conv3d
        self.conv = conv(image_channels + self.mask_channels, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == self.image_channels + self.num_classes:  # drop the background
            x = torch.cat([x[:, : self.image_channels], x[:, self.image_channels + 1 :]], 1)
        image_mean = x[:, 0].flatten(1).mean(1)
        return torch.sigmoid(10 * image_mean + self.conv(x).flatten(1).mean(1))

    def score(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        if not masks.is_floating_point():
            onehot = F.one_hot(masks[:, 0].long(), self.num_classes).movedim(-1, 1)
            masks = onehot[:, 1:].float()
        return self(torch.cat([images, masks.to(images.dtype)], 1))


def guide(dims: int = 2, image_channels: int = 1, num_classes: int = 2, **kw) -> QualityGuide:
    return QualityGuide(StubPredictor(dims, image_channels, num_classes), **kw)


def batches(
    dims: int = 2,
    b_l: int = 2,
    b_u: int = 3,
    in_ch: int = 1,
    classes: int = 2,
    size: tuple[int, ...] | None = None,
    seed: int = 0,
):
    """A labelled and an unlabelled batch of odd sizes; the images' means are ~0."""
    g = torch.Generator().manual_seed(seed)
    size = size or ((9, 11) if dims == 2 else (7, 9, 5))
    labeled = {
        "image": torch.randn(b_l, in_ch, *size, generator=g),
        "label": torch.randint(0, classes, (b_l, 1, *size), generator=g).to(torch.uint8),
    }
    unlabeled = {"image": torch.randn(b_u, in_ch, *size, generator=g)}
    return labeled, unlabeled


class ToyStream:
    """A two-stream source like ``VolumeStream``: ``steps`` batches per epoch of
    {"labeled", "unlabeled"}, each drawn from (seed, epoch, index) alone, with
    ``set_epoch`` and ``len`` (so a resumed run can re-enter an epoch)."""

    def __init__(self, dims=2, steps=3, classes=2, seed=0, size=None, nan_at=None):
        self.dims, self.steps, self.classes, self.seed = dims, steps, classes, seed
        self.size, self.epoch, self.nan_at = size, 0, nan_at

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        for i in range(self.steps):
            seed = (self.seed * 1000 + self.epoch) * 100 + i
            labeled, unlabeled = batches(self.dims, classes=self.classes, size=self.size, seed=seed)
            if self.nan_at == (self.epoch, i):
                labeled["image"][0, 0, 0, 0] = float("nan")
            yield {"labeled": labeled, "unlabeled": unlabeled}
        self.epoch += 1
