"""read_nifti against nibabel (the oracle): nibabel's own test files, a matrix of files
nibabel writes (dtype × byte order × .nii/.nii.gz × 3D/4D × scaling × NIfTI-1/2), the
writer, and every bad-file case as a DataError naming the path."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest

from qgfast.data import DataError
from qgfast.data.nifti import nifti_header, read_nifti, write_nifti

nib = pytest.importorskip("nibabel")
pytest.importorskip("qgfast._native")

DTYPES = ["uint8", "int8", "int16", "uint16", "int32", "uint32", "int64", "uint64"]
DTYPES += ["float32", "float64"]


def _nibabel_image(path: Path):
    if path.name.endswith(".gz"):
        with gzip.open(path) as f:
            first = f.read(4)
    else:
        first = path.read_bytes()[:4]
    size = int.from_bytes(first, "little")
    nifti2 = size == 540 or int.from_bytes(first, "big") == 540
    return (nib.Nifti2Image if nifti2 else nib.Nifti1Image).from_filename(path)


def _assert_matches_nibabel(path: Path) -> None:
    img = _nibabel_image(path)
    expected = np.asanyarray(img.dataobj)
    got = read_nifti(path)
    assert got.data.shape == expected.shape
    assert got.data.dtype == expected.dtype.newbyteorder("=")  # native byte order always
    np.testing.assert_array_equal(got.data, expected)
    np.testing.assert_array_equal(got.affine, img.affine)
    assert got.zooms == tuple(float(z) for z in img.header.get_zooms())
    raw = read_nifti(path, raw=True).data
    np.testing.assert_array_equal(raw, img.dataobj.get_unscaled())
    assert got.data.flags.f_contiguous  # nibabel's index order, no copy


def _nibabel_test_files() -> list[Path]:
    from nibabel.testing import data_path

    return sorted(p for p in Path(data_path).iterdir() if p.name.endswith((".nii", ".nii.gz")))


@pytest.mark.parametrize("path", _nibabel_test_files(), ids=lambda p: p.name)
def test_nibabel_test_data(path):
    _assert_matches_nibabel(path)


# float data stored as an integer type: nibabel picks a slope and intercept
SCALED = [(d, False) for d in DTYPES] + [(d, True) for d in DTYPES if d[0] in "iu"]


@pytest.mark.parametrize(("dtype", "scaled"), SCALED, ids=lambda v: str(v))
@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("ext", [".nii", ".nii.gz"])
@pytest.mark.parametrize("shape", [(5, 4, 3), (4, 3, 2, 3)], ids=["3d", "4d"])
def test_files_written_by_nibabel(tmp_path, dtype, order, ext, shape, scaled):
    rng = np.random.default_rng(0)
    if scaled:
        data = rng.normal(0, 50, shape).astype(np.float64)
    else:
        info = np.iinfo(dtype) if dtype[0] in "iu" else None
        lo, hi = (info.min, info.max) if info else (-1e6, 1e6)
        data = rng.uniform(max(lo, -(2**62)), min(hi, 2**62), shape).astype(dtype)
    header = nib.Nifti1Header(endianness=order)
    affine = np.diag([0.7, 0.8, 1.5, 1.0])
    affine[:3, 3] = [-10, 5, 2]
    img = nib.Nifti1Image(data, affine, header, dtype=np.dtype(dtype))
    path = tmp_path / f"v{ext}"
    nib.save(img, path)
    assert nifti_header(path)["big_endian"] == (order == ">")
    _assert_matches_nibabel(path)


@pytest.mark.parametrize("ext", [".nii", ".nii.gz"])
def test_nifti2_with_qform_only(tmp_path, ext):
    data = np.arange(60, dtype=np.int16).reshape(5, 4, 3)
    affine = nib.eulerangles.euler2mat(0.3, -0.2, 0.1)
    full = np.eye(4)
    full[:3, :3] = affine @ np.diag([1.1, 0.9, 2.0])
    full[:3, 3] = [3, -4, 5]
    img = nib.Nifti2Image(data, full)
    img.set_sform(None, code=0)
    img.set_qform(full, code=1)
    path = tmp_path / f"q{ext}"
    nib.save(img, path)
    assert nifti_header(path)["version"] == 2
    _assert_matches_nibabel(path)


def test_base_affine_when_no_transform_is_coded(tmp_path):
    img = nib.Nifti1Image(np.zeros((4, 6, 3), np.uint8), np.diag([2.0, 3.0, 4.0, 1.0]))
    img.set_sform(None, code=0)
    img.set_qform(None, code=0)
    path = tmp_path / "b.nii"
    nib.save(img, path)
    _assert_matches_nibabel(path)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ext", [".nii", ".nii.gz"])
def test_write_nifti_is_read_by_nibabel(tmp_path, dtype, ext):
    data = (np.arange(2 * 3 * 4 * 5) % 97).astype(dtype).reshape(2, 3, 4, 5)
    affine = np.diag([0.5, 0.6, 0.7, 1.0])
    path = write_nifti(tmp_path / f"w{ext}", data, affine)
    img = nib.load(path)
    np.testing.assert_array_equal(np.asanyarray(img.dataobj), data)
    np.testing.assert_allclose(img.affine, affine, rtol=1e-6)
    np.testing.assert_array_equal(read_nifti(path).data, data)


def test_write_nifti_with_scaling(tmp_path):
    path = write_nifti(tmp_path / "s.nii.gz", np.arange(6, dtype=np.int16), slope=0.5, inter=2)
    np.testing.assert_array_equal(read_nifti(path).data, np.arange(6) * 0.5 + 2)
    np.testing.assert_array_equal(np.asanyarray(nib.load(path).dataobj), read_nifti(path).data)


# -- bad files ---------------------------------------------------------------------------
@pytest.fixture
def good(tmp_path):
    return write_nifti(tmp_path / "good.nii", np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6))


def _expect(path, match, **kwargs):
    with pytest.raises(DataError, match=match) as info:
        read_nifti(path, **kwargs)
    assert info.value.path == str(path)


def test_missing_file(tmp_path):
    _expect(tmp_path / "nope.nii.gz", "cannot open")


def test_truncated_nii(good):
    good.write_bytes(good.read_bytes()[:-10])
    _expect(good, "truncated")


def test_truncated_gzip(tmp_path, good):
    gz = tmp_path / "t.nii.gz"
    gz.write_bytes(gzip.compress(good.read_bytes())[:-40])
    _expect(gz, r"truncated|corrupt")


def test_bad_magic(good):
    raw = bytearray(good.read_bytes())
    raw[344:348] = b"abcd"
    good.write_bytes(bytes(raw))
    _expect(good, "magic")


def test_header_image_pair_is_refused(good):
    raw = bytearray(good.read_bytes())
    raw[344:348] = b"ni1\0"
    good.write_bytes(bytes(raw))
    _expect(good, "pairs")


@pytest.mark.parametrize(("code", "match"), [(32, "complex"), (128, "RGB"), (1536, "float128")])
def test_unsupported_datatypes(good, code, match):
    raw = bytearray(good.read_bytes())
    raw[70:72] = code.to_bytes(2, "little")
    good.write_bytes(bytes(raw))
    _expect(good, match)


def test_absurd_dims_are_refused_before_allocating(good, tmp_path):
    raw = bytearray(good.read_bytes())
    raw[42:48] = (1000).to_bytes(2, "little") * 3  # 2 GB claimed by a 0.5 kB file
    good.write_bytes(bytes(raw))
    _expect(good, "truncated")
    _expect(good, "cap", max_bytes=1 << 20)
    gz = tmp_path / "a.nii.gz"
    gz.write_bytes(gzip.compress(bytes(raw)))
    _expect(gz, "truncated")
    raw[42:48] = (32767).to_bytes(2, "little") * 3  # 70 TB: over the default 16 GiB cap
    good.write_bytes(bytes(raw))
    _expect(good, "cap")


def test_not_nifti_at_all(tmp_path):
    path = tmp_path / "x.nii"
    path.write_bytes(os.urandom(2000))
    _expect(path, "not a NIfTI")


def test_nothing_is_written_to_inputs(good):
    before = good.read_bytes()
    read_nifti(good)
    assert good.read_bytes() == before
