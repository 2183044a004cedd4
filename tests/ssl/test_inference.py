"""Whole-case inference repeats the streams' preprocessing, and sliding windows agree with
a full-volume forward."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from qgfast.data import ImageStream, VolumeStream, find_cases, make_synthetic_dataset, read_case
from qgfast.ssl.inference import (
    Preprocessing,
    Validator,
    normalise_volume,
    predict_probabilities,
    prepare_image,
)

pytest.importorskip("monai")
NO_AUG_3D = {"flip_axes": (), "rot90_plane": None, "scale": None, "shift": None, "gamma": None}


@pytest.fixture(scope="module")
def organ(tmp_path_factory):
    return make_synthetic_dataset("organ3d", 2, tmp_path_factory.mktemp("o"), size=(13, 11, 9))


@pytest.mark.parametrize("mode", ["zscore", "zscore-nonzero", "percentile", "window"])
def test_volume_normalisation_equals_the_stream(organ, mode) -> None:
    case = find_cases(organ)[0]
    image, _ = read_case(case)
    image[0, :3] = 0  # some zeros, so zscore-nonzero differs from zscore
    path = organ / "imagesTr" / "zeros_0000.nii.gz"
    from qgfast.data import write_nifti

    write_nifti(path, image[0].astype(np.int16), np.diag([1.5, 1.5, 2.0, 1.0]))
    stream = VolumeStream(
        [{"images": [path], "label": case.label}],
        image.shape[1:],
        labeled_batch_size=1,
        samples_per_volume=1,
        noise_std=0.0,
        normalisation=mode,
        window=(100.0, 700.0),
        threads=1,
        **NO_AUG_3D,
    )
    from_stream = next(iter(stream))["image"][0].numpy()
    ours = normalise_volume(image.astype(np.int16), mode, window=(100.0, 700.0))
    np.testing.assert_allclose(ours, from_stream, rtol=1e-5, atol=1e-5)
    path.unlink()


def test_image_preprocessing_equals_the_image_stream(tmp_path) -> None:
    root = make_synthetic_dataset("lesion2d", 1, tmp_path, size=24)
    case = find_cases(root)[0]
    stream = ImageStream(
        [case],
        24,
        labeled_batch_size=1,
        hflip=False,
        vflip=False,
        rot90=False,
        brightness=None,
        contrast=None,
        gain=None,
        threads=1,
    )
    from_stream = next(iter(stream))["image"]
    image, _ = read_case(case)
    ours = prepare_image(image, Preprocessing(2, "imagenet", size=(24, 24)))
    torch.testing.assert_close(ours, from_stream, rtol=1e-5, atol=1e-5)


class Conv(nn.Module):
    def __init__(self, k: int):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv3d(1, 3, k, padding=k // 2)

    def forward(self, x):
        return self.conv(x)


def test_sliding_windows_agree_with_a_full_volume_forward(organ) -> None:
    image, _ = read_case(find_cases(organ)[0])  # 13 x 11 x 9 voxels
    x = prepare_image(image, Preprocessing(3, "zscore"))
    for k, patch in ((1, (8, 8, 8)), (3, (13, 11, 9))):  # pointwise net: any window agrees
        net = Conv(k).eval()
        pre = Preprocessing(3, "zscore", patch=patch, sw_batch_size=3)
        windows = predict_probabilities(net, image, pre, torch.device("cpu"))
        with torch.no_grad():
            full = torch.softmax(net(x), 1)[0]
        torch.testing.assert_close(windows, full, rtol=1e-5, atol=1e-5)


def test_the_validator_scores_every_case_with_millimetre_spacing(organ) -> None:
    cases = find_cases(organ)
    v = Validator(cases, Preprocessing(3, "zscore", patch=(8, 8, 8)), 4)
    out = v(Conv(1))
    assert out["cases"] == 2
    assert len(out["dice_per_class"]) == 3
    assert [c["case"] for c in out["per_case"]] == [c.case_id for c in cases]
    with pytest.raises(ValueError, match="without a label"):
        Validator([type(cases[0])("x", cases[0].images, None)], v.pre, 4)
