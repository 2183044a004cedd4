"""Dataset-folder discovery and file readers: layouts, value handling, clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from qgfast.data import Case, DataError, find_cases, read_case, read_image, read_label

Image = pytest.importorskip("PIL.Image")


def _png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_plain_layout_matches_masks_by_name_with_suffix(tmp_path):
    rgb = np.zeros((9, 7, 3), np.uint8)
    for name in ("ISIC_0000001", "ISIC_0000002", "case_0003"):
        _png(tmp_path / "images" / f"{name}.jpg", rgb)
    _png(tmp_path / "masks" / "ISIC_0000001_segmentation.png", np.zeros((9, 7), np.uint8))
    _png(tmp_path / "masks" / "case_0003.png", np.zeros((9, 7), np.uint8))
    cases = find_cases(tmp_path)
    assert [c.case_id for c in cases] == ["ISIC_0000001", "ISIC_0000002", "case_0003"]
    assert cases[0].label.name == "ISIC_0000001_segmentation.png"
    assert cases[1].label is None  # unlabelled image
    assert all(len(c.images) == 1 and c.spatial_dims == 2 for c in cases)


def test_nnunet_layout_groups_channel_files(tmp_path):
    nib = pytest.importorskip("nibabel")
    (tmp_path / "imagesTr").mkdir()
    (tmp_path / "labelsTr").mkdir()
    for ch, value in enumerate((1.0, 2.0)):
        vol = np.full((5, 4, 3), value, np.float32)
        nib.save(nib.Nifti1Image(vol, np.eye(4)), tmp_path / "imagesTr" / f"brain_{ch:04d}.nii.gz")
    labels = np.zeros((5, 4, 3), np.uint8)
    labels[1, 1, 1] = 3
    nib.save(nib.Nifti1Image(labels, np.eye(4)), tmp_path / "labelsTr" / "brain.nii.gz")
    (case,) = find_cases(tmp_path)
    assert case.case_id == "brain"
    assert len(case.images) == 2
    assert case.spatial_dims == 3
    image, label = read_case(case)
    assert image.shape == (2, 5, 4, 3)
    assert image.dtype == np.float32
    assert image[0].max() == 1.0
    assert image[1].max() == 2.0
    assert label.shape == (1, 5, 4, 3)
    assert label.dtype == np.uint8
    assert label.max() == 3


def test_msd_4d_volume_gives_channels_last_axis(tmp_path):
    nib = pytest.importorskip("nibabel")
    vol = np.random.default_rng(0).random((4, 5, 3, 2)).astype(np.float32)
    path = tmp_path / "v.nii.gz"
    nib.save(nib.Nifti1Image(vol, np.eye(4)), path)
    np.testing.assert_array_equal(read_image(path), np.moveaxis(vol, -1, 0))


def test_masks_0_255_become_0_1_and_palette_indices_stay(tmp_path):
    mask = np.zeros((6, 5), np.uint8)
    mask[2:4, 1:3] = 255
    _png(tmp_path / "m.png", mask)
    np.testing.assert_array_equal(read_label(tmp_path / "m.png")[0], mask // 255)
    labels = np.array([[0, 1, 2], [3, 2, 1]], np.uint8)
    pal = Image.fromarray(labels, mode="P")
    pal.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 756)
    pal.save(tmp_path / "p.png")
    np.testing.assert_array_equal(read_label(tmp_path / "p.png")[0], labels)


def test_grey_image_has_one_channel_and_rgb_three(tmp_path):
    _png(tmp_path / "g.png", np.arange(12, dtype=np.uint8).reshape(3, 4))
    _png(tmp_path / "c.png", np.zeros((3, 4, 3), np.uint8))
    assert read_image(tmp_path / "g.png").shape == (1, 3, 4)
    assert read_image(tmp_path / "c.png").shape == (3, 3, 4)


@pytest.mark.parametrize(
    ("setup", "match"),
    [
        (lambda p: None, "no image folder"),
        (lambda p: (p / "images").mkdir(), "no image files"),
    ],
)
def test_find_cases_errors_name_the_folder(tmp_path, setup, match):
    setup(tmp_path)
    with pytest.raises(DataError, match=match) as info:
        find_cases(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_missing_root_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="not a directory"):
        find_cases(tmp_path / "absent")


def test_corrupt_png_is_a_data_error(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    with pytest.raises(DataError, match="cannot decode") as info:
        read_image(bad)
    assert info.value.path == str(bad)


def test_truncated_nifti_is_a_data_error(tmp_path):
    nib = pytest.importorskip("nibabel")
    path = tmp_path / "v.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8), np.int16), np.eye(4)), path)
    path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(DataError, match=r"truncated|corrupt"):
        read_image(path)


def test_colour_mask_and_out_of_range_labels_are_refused(tmp_path):
    colour = np.zeros((4, 4, 3), np.uint8)
    colour[0, 0] = (255, 0, 0)
    _png(tmp_path / "c.png", colour)
    with pytest.raises(DataError, match="colour mask"):
        read_label(tmp_path / "c.png")
    nib = pytest.importorskip("nibabel")
    frac = tmp_path / "f.nii"
    nib.save(nib.Nifti1Image(np.full((2, 2, 2), 0.5, np.float32), np.eye(4)), frac)
    with pytest.raises(DataError, match="whole numbers"):
        read_label(frac)
    big = tmp_path / "b.nii"
    nib.save(nib.Nifti1Image(np.full((2, 2, 2), 300, np.int16), np.eye(4)), big)
    with pytest.raises(DataError, match=r"0\.\.255"):
        read_label(big)


def test_shape_mismatch_between_image_and_label(tmp_path):
    _png(tmp_path / "i.png", np.zeros((4, 5, 3), np.uint8))
    _png(tmp_path / "l.png", np.zeros((4, 6), np.uint8))
    case = Case("x", (tmp_path / "i.png",), tmp_path / "l.png")
    with pytest.raises(DataError, match="label shape"):
        read_case(case)


def test_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_image(tmp_path / "nothing.png")


def test_declared_num_classes_reads_dataset_json_and_refuses_nonsense(tmp_path):
    from qgfast.data import declared_num_classes

    assert declared_num_classes(tmp_path) is None
    meta = tmp_path / "dataset.json"
    meta.write_text(json.dumps({"labels": {"background": 0, "organ": 1, "tumour": 2}}))
    assert declared_num_classes(tmp_path) == 3
    meta.write_text(json.dumps({"labels": {"background": 0, "organ": "one"}}))
    with pytest.raises(DataError, match=r"dataset\.json"):
        declared_num_classes(tmp_path)
