"""Synthetic datasets: deterministic per case, images that show their masks, readable files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from qgfast.data import find_cases, make_synthetic_dataset, read_case
from qgfast.data.synthetic import _case_generator, cardiac_case, lesion_case, organ_case

pytest.importorskip("PIL")


def test_case_depends_on_seed_and_index_only():
    a = lesion_case(32, _case_generator(7, 3))
    b = lesion_case(32, _case_generator(7, 3))
    c = lesion_case(32, _case_generator(8, 3))
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[0], c[0])


def test_lesions_are_darker_than_skin_and_masks_binary():
    for i in range(6):
        rgb, mask = lesion_case(64, _case_generator(0, i))
        assert rgb.shape == (64, 64, 3)
        assert rgb.dtype == np.uint8
        assert set(np.unique(mask).tolist()) == {0, 1}
        grey = rgb.astype(float).mean(-1)
        assert grey[mask == 1].mean() < grey[mask == 0].mean() - 10


def test_organs_nest_and_differ_in_intensity():
    volume, labels = organ_case((32, 30, 24), _case_generator(0, 1))
    assert volume.dtype == np.int16
    assert labels.dtype == np.uint8
    present = set(np.unique(labels).tolist())
    assert {0, 1, 2} <= present <= {0, 1, 2, 3}
    means = [volume[labels == c].mean() for c in (1, 2)]
    assert abs(means[0] - means[1]) > 100  # the nested structure is visible
    # nested: every label-2 voxel's 6-neighbourhood holds only organ labels (1, 2) or the border
    two = np.argwhere(labels == 2)
    inner = two[(two > 0).all(1) & (two < np.array(labels.shape) - 1).all(1)]
    for axis in range(3):
        for step in (-1, 1):
            nb = inner.copy()
            nb[:, axis] += step
            assert set(np.unique(labels[tuple(nb.T)]).tolist()) <= {1, 2}


def test_cardiac_label_is_a_myocardial_ring_round_a_brighter_cavity():
    from scipy import ndimage

    for i in range(6):
        gray, mask = cardiac_case(64, _case_generator(0, i))
        assert gray.shape == (64, 64)
        assert gray.dtype == np.uint8
        assert set(np.unique(mask).tolist()) == {0, 1}
        ring = mask.astype(bool)
        cavity = ndimage.binary_fill_holes(ring) & ~ring
        assert cavity.sum() > 10  # a ring, not a disc
        assert gray[cavity].mean() > gray[ring].mean() + 20  # bright blood, darker muscle
    np.testing.assert_array_equal(
        cardiac_case(32, _case_generator(3, 1))[0], cardiac_case(32, _case_generator(3, 1))[0]
    )


def test_written_cardiac_dataset_has_one_channel(tmp_path):
    root = make_synthetic_dataset("cardiac2d", 2, tmp_path, seed=4, size=40)
    image, label = read_case(find_cases(root)[1])
    gray, mask = cardiac_case(40, _case_generator(4, 1))
    np.testing.assert_array_equal(image, gray[None].astype(np.float32))
    np.testing.assert_array_equal(label[0], mask)
    assert json.loads((root / "dataset.json").read_text())["labels"]["myocardium"] == 1


def test_written_2d_dataset_round_trips(tmp_path):
    root = make_synthetic_dataset("lesion2d", 3, tmp_path, seed=2, size=32)
    cases = find_cases(root)
    assert [c.case_id for c in cases] == ["lesion_0000", "lesion_0001", "lesion_0002"]
    image, label = read_case(cases[1])
    rgb, mask = lesion_case(32, _case_generator(2, 1))
    np.testing.assert_array_equal(image, np.moveaxis(rgb, -1, 0).astype(np.float32))
    np.testing.assert_array_equal(label[0], mask)
    meta = json.loads((root / "dataset.json").read_text())
    assert meta["labels"] == {"background": 0, "lesion": 1}
    assert meta["numTraining"] == 3


def test_written_3d_dataset_is_nifti_with_spacing(tmp_path):
    nib = pytest.importorskip("nibabel")
    root = make_synthetic_dataset("organ3d", 2, tmp_path, seed=1, size=(16, 14, 12))
    (case, _) = find_cases(root)
    img = nib.load(case.images[0])
    assert img.shape == (16, 14, 12)
    assert img.header.get_zooms() == (1.5, 1.5, 2.0)
    volume, labels = organ_case((16, 14, 12), _case_generator(1, 0))
    np.testing.assert_array_equal(np.asanyarray(img.dataobj), volume)
    np.testing.assert_array_equal(np.asanyarray(nib.load(case.label).dataobj), labels)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"kind": "cells"}, "kind must be one of"),
        ({"n": 0}, "n must be a positive int"),
        ({"size": 8}, "size must be >= 16"),
        ({"kind": "organ3d", "size": (4, 8, 8)}, "3 sides >= 8"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_synthetic_dataset(path=tmp_path, **kwargs)


def test_smooth_noise_is_seeded():
    from qgfast.data.synthetic import _smooth_noise

    a = _smooth_noise((9, 7), 3, torch.Generator().manual_seed(1))
    b = _smooth_noise((9, 7), 3, torch.Generator().manual_seed(1))
    assert a.shape == (9, 7)
    assert torch.equal(a, b)


def test_hard_fraction_marks_hard_cases_and_leaves_easy_ones_as_they_were(tmp_path):
    from PIL import Image

    plain = make_synthetic_dataset("lesion2d", 12, tmp_path / "plain", seed=3, size=32)
    mixed = make_synthetic_dataset(
        "lesion2d", 12, tmp_path / "mixed", seed=3, size=32, hard_fraction=0.5
    )
    hard = set(json.loads((mixed / "dataset.json").read_text())["hard_cases"])
    assert 0 < len(hard) < 12
    for i in range(12):
        name = f"lesion_{i:04d}_0000.png"
        a = np.asarray(Image.open(plain / "imagesTr" / name))
        b = np.asarray(Image.open(mixed / "imagesTr" / name))
        assert np.array_equal(a, b) == (f"lesion_{i:04d}" not in hard), name
    with pytest.raises(ValueError, match="hard_fraction"):
        make_synthetic_dataset("lesion2d", 2, tmp_path / "x", hard_fraction=1.5)
    with pytest.raises(ValueError, match="lesion2d only"):
        make_synthetic_dataset("organ3d", 2, tmp_path / "y", hard_fraction=0.5)
