"""convert: lossless uncompressed copies that stream exactly like the originals."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch

from qgfast.data import DataError, VolumeStream, convert, find_cases, make_synthetic_dataset
from qgfast.data.nifti import nifti_header, read_nifti, write_nifti

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


def _case(folder, name, image, label, **kw):
    """A .nii.gz case (image: 3D, or 4D with channels last) and its label."""
    folder.mkdir(parents=True, exist_ok=True)
    img = write_nifti(folder / f"{name}.nii.gz", image, **kw)
    lab = write_nifti(folder / f"{name}_seg.nii.gz", label)
    return {"images": [img], "label": lab}


def _volumes(tmp_path, dtype, channels=1, big_endian=False, **kw):
    """Two labelled cases of odd shapes with a foreground blob, noise-textured."""
    import nibabel as nib

    rng = np.random.default_rng(5)
    cases = []
    for i, shape in enumerate([(23, 19, 13), (21, 25, 11)]):
        full = (*shape, channels) if channels > 1 else shape
        if np.dtype(dtype).kind == "f":
            image = rng.normal(100, 30, full).astype(dtype)
        else:
            info = np.iinfo(dtype)
            image = rng.integers(max(info.min, -900), min(info.max, 900), full).astype(dtype)
        image.flat[::7] = 0  # zeros for the nonzero z-score
        label = np.zeros(shape, np.uint8)
        label[4:11, 5:9, 3:8] = 1 + i
        case = _case(tmp_path / "in", f"c{i}", image, label, **kw)
        if big_endian:
            path = case["images"][0]
            header = nib.Nifti1Header(endianness=">")
            header.set_data_dtype(image.dtype)
            nib.save(nib.Nifti1Image(image, np.eye(4), header), path)
            assert nifti_header(path)["big_endian"]
            assert nifti_header(path)["dtype"] == np.dtype(dtype).name
        cases.append(case)
    return cases


STREAM = {
    "labeled_batch_size": 3,
    "samples_per_volume": 2,
    "foreground_prob": 0.5,
    "scale": None,
    "shift": None,
    "gamma": None,
    "noise_std": 0.0,
    "seed": 11,
}


def _same_batches(a, b, epochs=2):
    for _ in range(epochs):
        for x, y in zip(a, b, strict=True):
            for key in x:
                assert torch.equal(x[key], y[key]), key


@pytest.mark.parametrize(
    ("dtype", "extra"),
    [
        (np.int16, {}),
        (np.uint8, {}),
        (np.int16, {"big_endian": True}),
        (np.int16, {"slope": 0.5, "inter": -3.0}),
        (np.float32, {}),
        (np.uint16, {"channels": 2}),
    ],
    ids=["int16", "uint8", "int16-big-endian", "int16-scaled", "float32", "uint16-2-channels"],
)
@pytest.mark.parametrize(
    "norm", ["zscore", "zscore-nonzero", "percentile", "window", "none"], ids=str
)
def test_copies_stream_patch_by_patch_like_the_originals(tmp_path, dtype, extra, norm):
    """A stream over converted copies reads only each sample's block (stats "block_reads")
    and gives the originals' batches bit for bit: odd shapes, patches that pad, flips,
    quarter turns, foreground oversampling; percentiles of float voxels need the whole
    volume, so those copies are read whole."""
    cases = _volumes(tmp_path, dtype, **extra)
    copies = convert(cases, tmp_path / "raw")
    kw = STREAM | {"normalisation": norm, "window": (-200.0, 300.0)}
    for patch in [(9, 9, 7), (24, 9, 14)]:
        a, b = VolumeStream(cases, patch, **kw), VolumeStream(copies, patch, **kw)
        _same_batches(a, b)
        whole = norm == "percentile" and np.dtype(dtype).kind == "f"
        assert (b.stats()["block_reads"] == 0) == whole
        assert a.stats()["block_reads"] == 0


def test_rotated_copies_read_their_windows(tmp_path):
    cases = _volumes(tmp_path, np.int16)
    copies = convert(cases, tmp_path / "raw")
    kw = STREAM | {"rotation": (-30, 30), "rotation_plane": (0, 2), "rot90_plane": (0, 1)}
    a, b = VolumeStream(cases, (9, 9, 9), **kw), VolumeStream(copies, (9, 9, 9), **kw)
    _same_batches(a, b)
    assert b.stats()["block_reads"] > 0


def _stats_of(path):
    return path.with_name(path.name + ".qgstats")


def _read_whole_too(copies, patch, **kw):
    """(stream as the files are now, stream with no statistics files at all): both read
    whole, so their batches must agree."""
    a = list(VolumeStream(copies, patch, **kw))
    for case in copies:
        for path in (*case["images"], case["label"]):
            _stats_of(path).unlink(missing_ok=True)
    return a, list(VolumeStream(copies, patch, **kw))


def test_stale_or_damaged_statistics_are_not_used(tmp_path):
    cases = _volumes(tmp_path, np.int16)
    copies = convert(cases, tmp_path / "raw")
    kw = STREAM | {"labeled_batch_size": 2}
    # a copy rewritten with other voxels after its statistics: read whole, not mis-normalised
    image = copies[0]["images"][0]
    changed = read_nifti(image).data.copy()
    changed[:3] = 500
    write_nifti(image, changed)
    stale = VolumeStream(copies[:1], (9, 9, 7), **kw)
    got = list(stale)
    assert stale.stats()["block_reads"] == 0
    _, want = _read_whole_too(copies[:1], (9, 9, 7), **kw)
    _same_batches(got, want, epochs=1)
    # damaged statistics: read whole as well
    label = copies[1]["label"]
    _stats_of(label).write_bytes(_stats_of(label).read_bytes()[:-3] + b"abc")
    damaged = VolumeStream(copies[1:], (9, 9, 7), **kw)
    got = list(damaged)
    assert damaged.stats()["block_reads"] == 0
    _, want = _read_whole_too(copies[1:], (9, 9, 7), **kw)
    _same_batches(got, want, epochs=1)


def test_statistics_are_rewritten_only_when_older_than_the_copy(tmp_path):
    cases = _volumes(tmp_path, np.int16)
    copies = convert(cases, tmp_path / "raw")
    stats = copies[0]["label"].with_name(copies[0]["label"].name + ".qgstats")
    stamp = stats.stat().st_mtime_ns
    convert(cases, tmp_path / "raw")
    assert stats.stat().st_mtime_ns == stamp
    stats.unlink()
    convert(cases, tmp_path / "raw")
    assert stats.exists()


def test_a_copy_truncated_under_a_running_stream_is_a_data_error(tmp_path):
    """Volumes opened by their statistics stay cached; a file cut short afterwards makes
    the next block read fail cleanly, naming the file (no SIGBUS, no crash)."""
    cases = _volumes(tmp_path, np.int16)
    copies = convert(cases, tmp_path / "raw")
    stream = VolumeStream(copies, (9, 9, 7), **STREAM | {"threads": 1, "prefetch": 1})
    next(iter(stream))
    for case in copies:
        path = case["images"][0]
        path.write_bytes(path.read_bytes()[:400])

    def drain():
        for _ in range(3):
            list(stream)

    with pytest.raises(DataError, match=r"c[01]\.nii"):
        drain()


def test_labels_that_are_not_whole_numbers_are_refused(tmp_path):
    (tmp_path / "in").mkdir()
    img = write_nifti(tmp_path / "in" / "a.nii.gz", np.ones((4, 5, 6), np.int16))
    lab = write_nifti(tmp_path / "in" / "a_seg.nii.gz", np.full((4, 5, 6), 0.5, np.float32))
    with pytest.raises(DataError, match="whole number"):
        convert([{"images": [img], "label": lab}], tmp_path / "out")
