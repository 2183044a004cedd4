"""Whole-case inference and validation: the training streams' preprocessing, MONAI's
sliding-window inference for volumes, and the metrics of ``qgfast.ssl.metrics``.

3D cases are normalised exactly as ``VolumeStream`` normalises them (the same statistics
of the whole volume: z-score, z-score of the nonzero voxels, percentile clip then z-score,
a fixed window), then predicted at their native resolution with
``monai.inferers.sliding_window_inference`` (windows of the training patch, batched,
overlap 0.5, Gaussian weighting). 2D cases go through ``ImageStream``'s preprocessing
(values in [0, 1], resized to the training size with anti-aliased bilinear filtering,
then ImageNet / per-image / no normalisation); their probabilities are resized back to
the image's own size, so every metric is computed against the label as stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from qgfast.data.folders import Case, read_case
from qgfast.data.intensity import normalise_image, normalise_volume
from qgfast.ssl import distributed as dist
from qgfast.ssl.base import hard_labels, probabilities
from qgfast.ssl.metrics import case_metrics, summarise


@dataclass(frozen=True)
class Preprocessing:
    """How the training stream prepared images; what inference must repeat.

    spatial_dims 3: ``normalisation`` of VolumeStream (zscore, zscore-nonzero, percentile,
    window, none), ``clip`` (percentiles) and ``window``; ``patch`` is the sliding window.
    spatial_dims 2: ``normalisation`` of ImageStream (imagenet, per-image, none), ``size``.
    """

    spatial_dims: int
    normalisation: str
    patch: tuple[int, ...] = ()
    size: tuple[int, ...] = ()
    clip: tuple[float, float] = (0.5, 99.5)
    window: tuple[float, float] = (-1000.0, 1000.0)
    overlap: float = 0.5
    sw_batch_size: int = 4
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preprocessing:
        d = dict(d)
        for k in ("patch", "size", "clip", "window"):
            d[k] = tuple(d[k])
        return cls(**d)


def prepare_image(image: np.ndarray, pre: Preprocessing) -> torch.Tensor:
    """A case's image as read (``read_case``: [C, *S], 2D in 0..255) → the network's input
    [1, C, *S'] float32 (2D resized to ``pre.size``)."""
    if pre.spatial_dims == 3:
        return torch.from_numpy(normalise_volume(image, pre.normalisation, pre.clip, pre.window))[
            None
        ]
    x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None] / 255.0
    if pre.size and tuple(x.shape[2:]) != tuple(pre.size):
        x = F.interpolate(x, size=pre.size, mode="bilinear", align_corners=False, antialias=True)
    return normalise_image(x, pre.normalisation)


@torch.no_grad()
def predict_probabilities(
    model: nn.Module,
    image: np.ndarray,
    pre: Preprocessing,
    device: torch.device,
    amp_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Class probabilities [C, *S] (float32, on ``device``) of one case at its own size."""
    from monai.inferers import sliding_window_inference

    x = prepare_image(image, pre).to(device)
    was_training = model.training
    model.eval()
    try:
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            if pre.spatial_dims == 3:
                logits = sliding_window_inference(
                    x,
                    roi_size=pre.patch,
                    sw_batch_size=pre.sw_batch_size,
                    predictor=model,
                    overlap=pre.overlap,
                    mode="gaussian",
                )
            else:
                logits = model(x)
    finally:
        model.train(was_training)
    probs = probabilities(logits)
    native = tuple(image.shape[1:])
    if tuple(probs.shape[2:]) != native:
        probs = F.interpolate(probs, size=native, mode="bilinear", align_corners=False)
    return probs[0]


def predict_labels(probs: torch.Tensor) -> torch.Tensor:
    """[C, *S] probabilities → [*S] label map (uint8)."""
    return hard_labels(probs[None])[0, 0]


class Validator:
    """Scores a model on labelled cases: ``validator(model)`` → summary of ``summarise``
    plus "per_case" (each rank predicts its share of the cases; the metrics are gathered,
    so every rank returns the same summary).

    spacing of each case comes from its NIfTI header (1 per axis for 2D images).
    cache_bytes: decoded cases kept in memory between validations.
    """

    def __init__(
        self,
        cases: Sequence[Case],
        pre: Preprocessing,
        num_classes: int,
        device: torch.device | str = "cpu",
        amp_dtype: torch.dtype | None = None,
        cache_bytes: int = 2 << 30,
    ) -> None:
        if not cases:
            raise ValueError("Validator needs at least one case")
        missing = [c.case_id for c in cases if c.label is None]
        if missing:
            raise ValueError(f"validation cases without a label: {missing[:5]}")
        self.cases = list(cases)
        self.pre = pre
        self.num_classes = max(2, num_classes)
        self.device = torch.device(device)
        self.amp_dtype = amp_dtype
        self.cache_bytes = cache_bytes
        self._cache: dict[int, tuple[np.ndarray, np.ndarray, list[float]]] = {}
        self._cached = 0

    def _load(self, i: int) -> tuple[np.ndarray, np.ndarray, list[float]]:
        if i in self._cache:
            return self._cache[i]
        image, label = read_case(self.cases[i])
        assert label is not None
        spacing = case_spacing(self.cases[i], image.ndim - 1)
        item = (image, label[0], spacing)
        size = image.nbytes + label.nbytes
        if self._cached + size <= self.cache_bytes:
            self._cache[i] = item
            self._cached += size
        return item

    def __call__(self, model: nn.Module) -> dict[str, Any]:
        model = dist.for_inference(model)
        mine = []
        for i in range(dist.rank(), len(self.cases), dist.world_size()):
            image, label, spacing = self._load(i)
            probs = predict_probabilities(model, image, self.pre, self.device, self.amp_dtype)
            pred = predict_labels(probs).cpu()
            metrics = case_metrics(pred, torch.from_numpy(label), self.num_classes, spacing)
            mine.append({"case": self.cases[i].case_id, "index": i, **metrics})
        per_case = sorted((c for part in dist.gather(mine) for c in part), key=lambda c: c["index"])
        return {**summarise(per_case), "per_case": per_case}


def case_spacing(case: Case, spatial_dims: int) -> list[float]:
    """Voxel size in mm of a case (its label's NIfTI zooms; 1 per axis for 2D files)."""
    if spatial_dims == 2:
        return [1.0, 1.0]
    from qgfast.data.nifti import header_zooms, nifti_header

    path = case.label if case.label is not None else case.images[0]
    return list(header_zooms(nifti_header(path))[:3])
