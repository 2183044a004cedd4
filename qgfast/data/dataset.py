"""A map-style torch dataset over folder cases, resized to one shape and normalised.

Used to train and evaluate the quality predictor, which sees whole images (2D) or whole
volumes resampled to a fixed grid (3D): images are resized with (anti-aliased) bilinear /
trilinear interpolation, labels with nearest neighbour, so label values stay labels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from qgfast.data.errors import DataError
from qgfast.data.folders import Case, read_case
from qgfast.data.intensity import (
    IMAGE_NORMALISATIONS,
    VOLUME_NORMALISATIONS,
    normalise_image,
    normalise_volume,
)


def normalise(image: torch.Tensor, mode: str) -> torch.Tensor:
    """[C, *S] float as read (``read_case``: 2D images in 0..255, volumes as stored) →
    normalised with the streams' vocabulary (``qgfast.data.intensity``): 2D images are
    scaled to [0, 1], then "imagenet", "per-image" or "none"; volumes take "zscore",
    "zscore-nonzero", "percentile" (0.5–99.5), "window" (−1000..1000) or "none"."""
    if image.dim() == 3:  # [C, H, W]
        if mode not in IMAGE_NORMALISATIONS:
            raise ValueError(
                f"normalise must be one of {IMAGE_NORMALISATIONS} for 2D, got {mode!r}"
            )
        return normalise_image(image / 255.0, mode)
    if mode not in VOLUME_NORMALISATIONS:
        raise ValueError(f"normalise must be one of {VOLUME_NORMALISATIONS} for 3D, got {mode!r}")
    return torch.from_numpy(normalise_volume(image.numpy(), mode))


def resize(image: torch.Tensor, label: torch.Tensor | None, size: Sequence[int]):
    """Resize [C, *S] image (linear, anti-aliased in 2D) and [1, *S] label (nearest)."""
    size = tuple(int(s) for s in size)
    if tuple(image.shape[1:]) == size:
        return image, label
    mode = "bilinear" if len(size) == 2 else "trilinear"
    antialias = len(size) == 2  # torch offers anti-aliasing for 2D only
    image = F.interpolate(image[None], size, mode=mode, align_corners=False, antialias=antialias)[0]
    if label is not None:
        label = F.interpolate(label[None].float(), size, mode="nearest-exact")[0].to(torch.uint8)
    return image, label


class CaseDataset(Dataset):
    """Folder cases as ``{"image": float32 [C, *size], "label": uint8 [1, *size], "case": i}``.

    size: the common spatial shape (an int means a square/cube); None keeps file shapes
        (then every case must share one shape to be batched).
    normalisation: see ``normalise`` ("imagenet" suits 2D images, "zscore-nonzero" MR and
        "percentile" CT volumes).
    cache: keep decoded, resized tensors in memory (the sets a predictor trains on are
        small; every epoch then skips decoding).
    """

    def __init__(
        self,
        cases: Sequence[Case],
        size: int | Sequence[int] | None = None,
        normalisation: str = "imagenet",
        cache: bool = True,
        require_labels: bool = True,
    ) -> None:
        if not cases:
            raise ValueError("CaseDataset needs at least one case")
        known = IMAGE_NORMALISATIONS + VOLUME_NORMALISATIONS
        if normalisation not in known:
            raise ValueError(f"normalisation must be one of {known}, got {normalisation!r}")
        self.cases = list(cases)
        self.spatial_dims = self.cases[0].spatial_dims
        if isinstance(size, int):
            size = (size,) * self.spatial_dims
        if size is not None and (len(size) != self.spatial_dims or min(size) < 1):
            raise ValueError(f"size {size} does not suit {self.spatial_dims}D cases")
        if require_labels:
            missing = [c.case_id for c in self.cases if c.label is None]
            if missing:
                raise DataError(self.cases[0].images[0].parent, f"cases without label: {missing}")
        self.size = None if size is None else tuple(size)
        self.normalisation = normalisation
        self._cache: dict[int, dict[str, torch.Tensor]] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.cases)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        image_np, label_np = read_case(self.cases[index])
        image = torch.from_numpy(np.ascontiguousarray(image_np))
        label = None if label_np is None else torch.from_numpy(label_np)
        if self.size is not None:
            image, label = resize(image, label, self.size)
        item = {"image": normalise(image, self.normalisation), "case": torch.tensor(index)}
        if label is not None:
            item["label"] = label
        if self._cache is not None:
            self._cache[index] = item
        return item

    def num_classes(self) -> int:
        """1 + the largest label over the cases (reads every label once)."""
        return 1 + max(int(self[i]["label"].max()) for i in range(len(self)))
