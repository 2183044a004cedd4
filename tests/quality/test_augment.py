"""Predictor-training augmentation: off means identity, draws depend on the seed alone,
spatial transforms move image and ground truth together (labels stay labels), intensity
transforms touch the image only, 2D and 3D, clear errors for bad shapes."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from qgfast.quality.augment import LEVELS, Augment, augment_batch, level
from qgfast.quality.train import PredictorTrainConfig

SPATIAL_ONLY = Augment(intensity=0.0, blur=0.0, noise=0.0)


def _pair(dims: int = 2, b: int = 6, classes: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    size = (21, 21) if dims == 2 else (13, 13, 7)
    labels = torch.zeros(b, 1, *size, dtype=torch.uint8)
    for i in range(b):  # an off-centre block per sample, so flips and turns are visible
        sl = tuple(slice(1 + i % 3, s // 2 + 2) for s in size)
        labels[(i, 0, *sl)] = 1 + i % (classes - 1)
    images = labels.float() * 4 + 0.1 * torch.randn(b, 1, *size, generator=g)
    return images, labels


def test_none_is_the_identity_and_levels_are_named() -> None:
    images, labels = _pair()
    a, b = augment_batch(images, labels, level("none"), 0)
    assert a is images
    assert b is labels
    assert set(LEVELS) == {"none", "light", "strong"}
    with pytest.raises(ValueError, match="augment must be one of"):
        level("heavy")
    with pytest.raises(ValueError, match="augment must be one of"):
        PredictorTrainConfig(augment="heavy")


def test_draws_depend_on_the_seed_alone() -> None:
    images, labels = _pair()
    one = augment_batch(images, labels, level("strong"), 5)
    again = augment_batch(images.clone(), labels.clone(), level("strong"), 5)
    other = augment_batch(images, labels, level("strong"), 6)
    assert torch.equal(one[0], again[0])
    assert torch.equal(one[1], again[1])
    assert not torch.equal(one[0], other[0])


@pytest.mark.parametrize("dims", [2, 3])
def test_spatial_moves_image_and_labels_together(dims) -> None:
    images, labels = _pair(dims, b=8, classes=3)
    flips_turns = dataclasses.replace(SPATIAL_ONLY, affine=0.0, flip=0.5, rot90=0.5)
    a, b = augment_batch(images, labels, flips_turns, 1)
    assert b.dtype == labels.dtype
    assert torch.equal(b, (a / 4).round().clamp(0, 2).to(b.dtype))  # exact for flips/turns
    assert not torch.equal(b, labels)  # something moved
    warped = dataclasses.replace(SPATIAL_ONLY, affine=1.0, max_degrees=25.0)
    a, b = augment_batch(images, labels, warped, 2)
    assert set(b.unique().tolist()) <= {0, 1, 2}
    agree = (b == (a / 4).round().clamp(0, 2)).float().mean()
    assert agree > 0.9  # bilinear image vs nearest labels differ only at borders


def test_intensity_touches_the_image_only() -> None:
    images, labels = _pair(b=8)
    a, b = augment_batch(images, labels, Augment(flip=0, rot90=0, affine=0, intensity=1.0), 3)
    assert torch.equal(b, labels)
    assert not torch.allclose(a, images)
    assert torch.isfinite(a).all()
    rgb = images.repeat(1, 3, 1, 1)
    c, _ = augment_batch(rgb, labels, Augment(flip=0, rot90=0, affine=0, intensity=1.0), 3)
    assert not torch.allclose(c[:, 0], c[:, 1])  # colour jitter: channels change apart


def test_bad_shapes_are_refused() -> None:
    images, labels = _pair()
    with pytest.raises(ValueError, match="differ in size"):
        augment_batch(images, labels[..., :-1], level("light"), 0)
    with pytest.raises(ValueError, match=r"\[B, C, \*S\]"):
        augment_batch(images[0], labels[0], level("light"), 0)
