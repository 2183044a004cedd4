"""convert: lossless uncompressed copies that stream exactly like the originals."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch

from qgfast.data import DataError, VolumeStream, convert, find_cases, make_synthetic_dataset
from qgfast.data.nifti import read_nifti, write_nifti

pytest.importorskip("qgfast._native")


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    root = make_synthetic_dataset("organ3d", 4, tmp_path_factory.mktemp("organs"), size=(15, 13, 9))
    return find_cases(root)


def test_copies_hold_the_same_voxels_header_and_batches(cases, tmp_path):
    out = convert(cases, tmp_path / "raw")
    assert [c.case_id for c in out] == [c.case_id for c in cases]
    assert find_cases(tmp_path / "raw") == out  # the copy is a dataset folder of its own
    for before, after in zip(cases, out, strict=True):
        for a, b in zip((*before.images, before.label), (*after.images, after.label), strict=True):
            assert b == tmp_path / "raw" / a.parent.name / a.name[: -len(".gz")]
            assert b.read_bytes() == gzip.decompress(a.read_bytes())
            va, vb = read_nifti(a), read_nifti(b)
            np.testing.assert_array_equal(va.data, vb.data)
            np.testing.assert_array_equal(va.affine, vb.affine)
    kw = {"labeled_batch_size": 2, "samples_per_volume": 2, "seed": 3}
    batches = zip(
        VolumeStream(cases, (8, 8, 8), **kw), VolumeStream(out, (8, 8, 8), **kw), strict=True
    )
    for x, y in batches:
        for key in ("image", "label", "origin"):
            assert torch.equal(x[key], y[key]), key


def test_fresh_copies_are_reused_unless_overwrite(cases, tmp_path):
    first = convert(cases[:1], tmp_path)
    path = first[0].images[0]
    stamp = path.stat().st_mtime_ns
    convert(cases[:1], tmp_path)
    assert path.stat().st_mtime_ns == stamp
    convert(cases[:1], tmp_path, overwrite=True)
    assert path.stat().st_mtime_ns >= stamp


def test_dicts_stay_dicts_and_uncompressed_files_are_used_in_place(tmp_path):
    plain = write_nifti(tmp_path / "a.nii", np.arange(24, dtype=np.int16).reshape(2, 3, 4))
    packed = write_nifti(tmp_path / "b.nii.gz", np.ones((2, 3, 4), np.uint8))
    out = convert([{"images": plain, "label": packed, "extra": 1}], tmp_path / "out")
    assert out == [{"images": [plain], "label": tmp_path / "out" / "b.nii", "extra": 1}]


def test_corrupt_input_raises_and_leaves_nothing_behind(cases, tmp_path):
    src = cases[0].images[0]
    broken = tmp_path / "in" / src.name
    broken.parent.mkdir()
    broken.write_bytes(src.read_bytes()[: src.stat().st_size // 2])  # truncated gzip
    with pytest.raises(DataError, match="corrupt or truncated"):
        convert([{"images": [broken]}], tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []


def test_short_voxel_data_is_refused(tmp_path):
    good = write_nifti(tmp_path / "v.nii", np.zeros((4, 4, 4), np.float32)).read_bytes()
    short = tmp_path / "short.nii.gz"
    short.write_bytes(gzip.compress(good[:-10]))  # a valid gzip stream, 10 voxel bytes short
    with pytest.raises(DataError, match="header implies"):
        convert([{"images": [short]}], tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []


def test_folders_are_mirrored_so_same_names_stay_apart(tmp_path):
    (tmp_path / "data" / "labelled").mkdir(parents=True)
    (tmp_path / "data" / "unlabelled").mkdir()
    a = write_nifti(tmp_path / "data" / "labelled" / "v.nii.gz", np.zeros((2, 2, 2), np.uint8))
    b = write_nifti(tmp_path / "data" / "unlabelled" / "v.nii.gz", np.ones((2, 2, 2), np.uint8))
    out = convert([{"images": [a]}, {"images": [b]}], tmp_path / "out")
    assert [c["images"] for c in out] == [
        [tmp_path / "out" / "labelled" / "v.nii"],
        [tmp_path / "out" / "unlabelled" / "v.nii"],
    ]
    assert read_nifti(out[1]["images"][0]).data.sum() == 8
