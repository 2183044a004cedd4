"""CaseDataset: resizing keeps labels labels, normalisations, caching, label checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from qgfast.data import CaseDataset, DataError, find_cases, make_synthetic_dataset, normalise

pytest.importorskip("PIL")


@pytest.fixture(scope="module")
def lesions(tmp_path_factory):
    return make_synthetic_dataset("lesion2d", 3, tmp_path_factory.mktemp("lesions"), size=40)


def test_items_have_the_requested_shape_and_types(lesions):
    ds = CaseDataset(find_cases(lesions), size=(24, 31))
    item = ds[1]
    assert item["image"].shape == (3, 24, 31)
    assert item["image"].dtype == torch.float32
    assert item["label"].shape == (1, 24, 31)
    assert item["label"].dtype == torch.uint8
    assert set(item["label"].unique().tolist()) <= {0, 1}
    assert int(item["case"]) == 1
    assert ds.num_classes() == 2


def test_nearest_resize_keeps_label_values():
    from qgfast.data import resize

    label = torch.randint(0, 4, (1, 13, 11), dtype=torch.uint8)
    image = torch.rand(2, 13, 11)
    img2, lab2 = resize(image, label, (29, 7))
    assert img2.shape == (2, 29, 7)
    assert lab2.dtype == torch.uint8
    assert set(lab2.unique().tolist()) <= set(label.unique().tolist())


def test_cache_returns_the_same_tensors(lesions):
    ds = CaseDataset(find_cases(lesions), size=32)
    assert ds[0]["image"] is ds[0]["image"]
    uncached = CaseDataset(find_cases(lesions), size=32, cache=False)
    assert uncached[0]["image"] is not uncached[0]["image"]
    torch.testing.assert_close(uncached[0]["image"], ds[0]["image"])


def test_normalisations():
    img = torch.rand(3, 5, 6) * 255
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    torch.testing.assert_close(normalise(img, "imagenet"), (img / 255 - mean) / std)
    vol = torch.zeros(1, 6, 6, 6)
    vol[0, 1:5, 1:5, 1:5] = torch.rand(4, 4, 4) + 1
    z = normalise(vol, "zscore-nonzero")
    inside = z[vol != 0]
    assert abs(float(inside.mean())) < 1e-5
    assert abs(float(inside.std(unbiased=False)) - 1) < 1e-4  # population std, as the streams
    with pytest.raises(ValueError, match="normalise must be one of"):
        normalise(img, "minmax")


def test_unlabelled_cases_are_refused_when_labels_are_required(lesions, tmp_path):
    cases = find_cases(lesions)
    from dataclasses import replace

    with pytest.raises(DataError, match="without label"):
        CaseDataset([replace(cases[0], label=None)])
    assert "label" not in CaseDataset([replace(cases[0], label=None)], require_labels=False)[0]


def test_bad_size_is_refused(lesions):
    with pytest.raises(ValueError, match="does not suit 2D"):
        CaseDataset(find_cases(lesions), size=(8, 8, 8))
    assert np.isfinite(CaseDataset(find_cases(lesions))[0]["image"].numpy()).all()
