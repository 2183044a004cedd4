"""VolumeStream against a NumPy reference of the same draws, plus determinism, sharding,
two-stream composition, caching, padding, foreground oversampling, errors and shutdown."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from qgfast.data import DataError, VolumeStream, find_cases, make_synthetic_dataset, read_nifti
from qgfast.data.nifti import write_nifti

pytest.importorskip("qgfast._native")
hypothesis = pytest.importorskip("hypothesis")
st = pytest.importorskip("hypothesis.strategies")

SHAPE = (21, 17, 13)
# no augmentation: crops as they are
PLAIN = {"flip_axes": (), "rot90_plane": None, "scale": None, "shift": None, "gamma": None}
PLAIN |= {"noise_std": 0}


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    root = make_synthetic_dataset("organ3d", 6, tmp_path_factory.mktemp("organs"), size=SHAPE)
    return find_cases(root)


def _reference_volume(case, norm="zscore"):
    image = read_nifti(case.images[0]).data.astype(np.float64)
    values = image[image != 0] if norm == "zscore-nonzero" else image.ravel()
    image = ((image - values.mean()) / max(values.std(), 1e-6)).astype(np.float32)
    label = read_nifti(case.label).data.astype(np.uint8)
    return image[None], label[None]


def _rotated_crop(image, label, origin, patch, angle, plane):
    """scipy's affine_transform as the oracle: output voxel o reads origin + h + R(o − h),
    h the patch centre, R the rotation by `angle` degrees in `plane`; bilinear for the
    image, nearest for the label, zero outside the volume (mode "grid-constant")."""
    from scipy import ndimage

    a, b = plane
    t = np.deg2rad(float(angle))
    rot = np.eye(3)
    rot[a, a], rot[a, b], rot[b, a], rot[b, b] = np.cos(t), -np.sin(t), np.sin(t), np.cos(t)
    h = (np.asarray(patch, np.float64) - 1) / 2
    offset = np.asarray(origin, np.float64) + h - rot @ h

    def warp(volume, order):
        return ndimage.affine_transform(
            volume, rot, offset, output_shape=tuple(patch), order=order, mode="grid-constant"
        )

    out_i = np.stack([warp(c.astype(np.float64), 1) for c in image]).astype(np.float32)
    return out_i, np.stack([warp(c, 0) for c in label])


def _reference_sample(image, label, part, j, patch, plane, rotation_plane=(0, 1)):
    """Crop (zero outside; rotated when an angle was drawn), flip, rot90, then scale/shift
    and gamma, as the stream does."""
    o = part["origin"][j].numpy()
    angle = float(part["angle"][j])
    if angle != 0.0:
        out_i, out_l = _rotated_crop(image, label, o, patch, angle, rotation_plane)
    else:
        out_i = np.zeros((image.shape[0], *patch), np.float32)
        out_l = np.zeros((1, *patch), np.uint8)
        src = [slice(max(0, o[d]), min(image.shape[1 + d], o[d] + patch[d])) for d in range(3)]
        dst = [slice(s.start - o[d], s.stop - o[d]) for d, s in enumerate(src)]
        out_i[(slice(None), *dst)] = image[(slice(None), *src)]
        out_l[(slice(None), *dst)] = label[(slice(None), *src)]
    flips = [1 + d for d in range(3) if part["flip"][j, d]]
    if flips:
        out_i, out_l = np.flip(out_i, flips), np.flip(out_l, flips)
    k = int(part["rot90"][j])
    out_i = np.rot90(out_i, k, axes=(1 + plane[0], 1 + plane[1]))
    out_l = np.rot90(out_l, k, axes=(1 + plane[0], 1 + plane[1]))
    out_i = out_i * part["scale"][j].numpy() + part["shift"][j].numpy()
    g = float(part["gamma"][j])
    if g != 1.0:
        for c in range(out_i.shape[0]):
            mn, mx = out_i[c].min(), out_i[c].max()
            span = np.float32(mx - mn + np.float32(1e-7))
            out_i[c] = ((out_i[c] - mn) / span) ** np.float32(g) * span + mn
    return out_i, out_l


@hypothesis.settings(max_examples=15, deadline=None)
@hypothesis.given(
    patch=st.tuples(st.integers(4, 26), st.integers(4, 20), st.integers(2, 16)),
    square=st.booleans(),
    seed=st.integers(0, 1000),
    plane=st.sampled_from([(0, 1), (0, 2), (1, 2)]),
    fg=st.sampled_from([0.0, 0.5, 1.0]),
)
def test_batches_equal_the_numpy_reference(cases, patch, square, seed, plane, fg):
    if square:  # rot90 needs a square plane
        patch = list(patch)
        patch[plane[1]] = patch[plane[0]]
    _assert_batches_equal_the_reference(
        cases, patch, tol=1e-5, foreground_prob=fg, rot90_plane=plane, intensity_prob=0.7, seed=seed
    )


def _assert_batches_equal_the_reference(cases, patch, *, tol, **kw):
    """Every sample of an epoch of ``VolumeStream(cases, patch, **kw)`` (batches of 3, two
    samples per volume, no noise) against `_reference_sample` of its draws: labels exactly,
    images within `tol`."""
    stream = VolumeStream(
        cases, patch, labeled_batch_size=3, samples_per_volume=2, noise_std=0.0, **kw
    )
    planes = (kw.get("rot90_plane", (0, 1)), kw.get("rotation_plane", (0, 1)))
    refs = {}
    for batch in stream:
        for j in range(3):
            case = int(batch["case"][j])
            if case not in refs:
                refs[case] = _reference_volume(cases[case])
            want_i, want_l = _reference_sample(*refs[case], batch, j, patch, *planes)
            np.testing.assert_array_equal(batch["label"][j].numpy(), want_l)
            np.testing.assert_allclose(batch["image"][j].numpy(), want_i, rtol=tol, atol=tol)


@hypothesis.settings(max_examples=12, deadline=None)
@hypothesis.given(
    patch=st.tuples(st.integers(3, 24), st.integers(3, 19), st.integers(1, 9)),
    seed=st.integers(0, 1000),
    rotation_plane=st.sampled_from([(0, 1), (0, 2), (1, 2), (2, 0)]),
    fg=st.sampled_from([0.0, 1.0]),
)
def test_rotation_equals_scipy_affine_transform(cases, patch, seed, rotation_plane, fg):
    """Any-angle rotation sampled from the volume (corners from around the patch, zero
    only outside the volume), then flips and rot90, with the intensity draws on top; half
    the samples unrotated (rotation_prob)."""
    patch = (patch[0], patch[0], patch[2])  # rot90 in (0, 1) needs a square plane
    _assert_batches_equal_the_reference(
        cases,
        patch,
        tol=1e-4,
        foreground_prob=fg,
        rot90_plane=(0, 1),
        rotation=(-180, 180),
        rotation_prob=0.5,
        rotation_plane=rotation_plane,
        intensity_prob=0.5,
        seed=seed,
    )


def test_rotation_draws_follow_the_range_and_probability(cases):
    stream = VolumeStream(
        cases,
        (6, 6, 4),
        labeled_batch_size=2,
        samples_per_volume=40,
        rotation=(-20, 10),
        rotation_prob=0.25,
        **PLAIN,
    )
    angles = torch.cat([b["angle"] for b in stream]).numpy()
    rotated = angles[angles != 0]
    assert rotated.min() >= -20
    assert rotated.max() <= 10
    assert 0.15 < rotated.size / angles.size < 0.35
    # no rotation configured: no angle drawn, and the other draws are unchanged by the option
    plain = VolumeStream(cases, (6, 6, 4), labeled_batch_size=2, samples_per_volume=40, **PLAIN)
    base = [b["origin"] for b in plain]
    assert all(float(b["angle"].abs().max()) == 0 for b in plain)
    turned = VolumeStream(
        cases, (6, 6, 4), labeled_batch_size=2, samples_per_volume=40, rotation=(-5, 5), **PLAIN
    )
    assert all(torch.equal(x, b["origin"]) for x, b in zip(base, turned, strict=True))


def _normalised(channel, norm, clip, window):
    """The NumPy reference of each normalisation (float64 statistics, float32 result)."""
    x = channel.astype(np.float32).astype(np.float64)
    if norm == "percentile":
        flat = np.sort(x.ravel())
        lo, hi = (flat[round(q / 100 * (flat.size - 1))] for q in clip)
        x = np.clip(x, lo, hi)
    if norm == "window":
        return ((np.clip(x, *window) - window[0]) / (window[1] - window[0])).astype(np.float32)
    if norm == "none":
        return x.astype(np.float32)
    values = x[x != 0] if norm == "zscore-nonzero" and (x != 0).any() else x.ravel()
    return ((x - values.mean()) / max(values.std(), 1e-6)).astype(np.float32)


@pytest.mark.parametrize("norm", ["zscore", "zscore-nonzero", "percentile", "window", "none"])
@pytest.mark.parametrize("layout", ["int16", "uint8", "scaled", "4d-float32"])
def test_every_normalisation_equals_numpy(tmp_path, norm, layout):
    """Crops of whole volumes: each channel normalised from its own statistics, for
    8/16-bit voxels (statistics from a histogram), header-scaled voxels (a negative slope
    reverses the histogram's order) and a 4D float file whose channels share a buffer."""
    rng = np.random.default_rng(3)
    shape = (9, 7, 5)
    base = rng.integers(-300, 900, size=shape).astype(np.int16)
    base[:3] = 0  # background for the nonzero z-score
    kwargs = {}
    if layout == "4d-float32":
        data = np.stack([base * 0.5, base * -2.0 + 40.0], -1).astype(np.float32)
    elif layout == "uint8":
        data = np.clip(base // 4, 0, 255).astype(np.uint8)
    else:
        data = base
        if layout == "scaled":
            kwargs = {"slope": -0.25, "inter": -7.0}
    path = write_nifti(tmp_path / "v.nii.gz", data, **kwargs)
    clip, window = (2.0, 97.0), (-100.0, 300.0)
    stream = VolumeStream(
        [{"images": [path]}],
        shape,
        labeled_batch_size=0,
        unlabeled_batch_size=1,
        **PLAIN,
        normalisation=norm,
        clip=clip,
        window=window,
    )
    got = next(iter(stream))["image"][0].numpy()
    values = read_nifti(path).data
    channels = [values[..., c] for c in range(values.shape[-1])] if values.ndim == 4 else [values]
    for c, channel in enumerate(channels):
        want = _normalised(channel, norm, clip, window)
        np.testing.assert_allclose(got[c], want, rtol=1e-5, atol=1e-5)


def _collect(stream):
    return [{k: v.clone() for k, v in b.items()} for b in stream]


def test_same_seed_same_epoch_whatever_the_threads(cases):
    kw = {"labeled_batch_size": 2, "samples_per_volume": 3, "seed": 7}
    a = _collect(VolumeStream(cases, (8, 8, 8), threads=1, **kw))
    b = _collect(VolumeStream(cases, (8, 8, 8), threads=4, prefetch=2, **kw))
    assert len(a) == len(b) == 6 * 3 // 2
    for x, y in zip(a, b, strict=True):
        for key in x:
            assert torch.equal(x[key], y[key]), key


def test_recycled_batch_buffers_change_nothing(cases):
    """Batch memory goes back to the stream when Python drops a batch and is reused without
    zeroing; every element must still be written (padding, flips and rot90 included)."""
    kw = {"labeled_batch_size": 2, "unlabeled_batch_size": 1, "seed": 3, "threads": 1}
    kw |= {"rot90_plane": (0, 1), "prefetch": 1}
    mixed = list(cases[:4]) + [{"images": c.images} for c in cases[4:]]
    patch = (24, 24, 9)  # larger than the volume in x and y: zero padding
    kept = [
        {p: {k: v.clone() for k, v in b[p].items()} for p in b}
        for b in list(VolumeStream(mixed, patch, **kw))  # all alive at once: none recycled
    ]
    pointers, reused = set(), False
    for want, got in zip(kept, VolumeStream(mixed, patch, **kw), strict=True):
        for part in want:
            for key in want[part]:
                assert torch.equal(want[part][key], got[part][key]), (part, key)
        ptr = got["labeled"]["image"].data_ptr()
        reused |= ptr in pointers
        pointers.add(ptr)
        del got  # the batch's buffers go back to the stream
    assert reused, "no batch buffer was recycled"


def test_recycled_volume_buffers_change_nothing(tmp_path):
    """Without a cache, a finished volume's voxel and compressed-file buffers (>= 4 MiB)
    are reused, unzeroed, by the next decodes: sizes within a quarter of each other share
    buffers, stale bytes past a shorter volume's end must never show. The cached stream
    (nothing recycled) is the reference."""
    rng = np.random.default_rng(5)
    shapes = [(130, 128, 128), (128, 128, 140), (144, 128, 128), (128, 132, 128)]
    cases = []
    for i, shape in enumerate(shapes):
        ext = ".nii.gz" if i % 2 == 0 else ".nii"
        image = rng.integers(-3000, 3000, shape, dtype=np.int16)
        image[: shape[0] // 3] = 0  # compressible enough to write quickly
        label = (rng.random(shape) < 0.2).astype(np.int16)  # int16: large enough to recycle
        write_nifti(tmp_path / f"i{i}{ext}", image, compresslevel=1)
        write_nifti(tmp_path / f"l{i}{ext}", label, compresslevel=1)
        labelled = {"images": [tmp_path / f"i{i}{ext}"], "label": tmp_path / f"l{i}{ext}"}
        cases.append(labelled if i < 3 else {"images": labelled["images"]})
    kw = {"labeled_batch_size": 1, "unlabeled_batch_size": 1, "samples_per_volume": 1}
    kw |= {"seed": 2, "foreground_prob": 0.5}

    def collect(stream):
        return [{p: {k: v.clone() for k, v in b[p].items()} for p in b} for b in stream]

    cached = collect(VolumeStream(cases, (20, 24, 16), cache_bytes=1 << 30, **kw))
    for threads in (1, 2):
        stream = VolumeStream(cases, (20, 24, 16), cache_bytes=0, threads=threads, **kw)
        got = collect(stream)
        assert len(got) == len(cached) == 3
        for x, y in zip(cached, got, strict=True):
            for part in x:
                for key in x[part]:
                    assert torch.equal(x[part][key], y[part][key]), (threads, part, key)
        assert stream.stats()["reused_volume_buffers"] > 0, "nothing was recycled"


def test_epochs_differ_and_set_epoch_replays(cases):
    stream = VolumeStream(cases, (8, 8, 8), labeled_batch_size=2, seed=1)
    first, second = _collect(stream), _collect(stream)
    assert not torch.equal(first[0]["image"], second[0]["image"])
    stream.set_epoch(0)
    assert torch.equal(_collect(stream)[0]["image"], first[0]["image"])


def test_shards_split_each_epoch_without_overlap(cases):
    seen = []
    for rank in range(3):
        stream = VolumeStream(
            cases,
            (8, 8, 8),
            labeled_batch_size=1,
            samples_per_volume=1,
            rank=rank,
            world_size=3,
            seed=5,
        )
        assert len(stream) == 2
        seen.append({int(c) for b in stream for c in b["case"]})
    assert set().union(*seen) == set(range(6))
    assert sum(len(s) for s in seen) == 6


def test_two_stream_batches(cases):
    mixed = [cases[0], cases[1], cases[2]] + [{"images": c.images} for c in cases[3:]]
    stream = VolumeStream(mixed, (8, 8, 8), labeled_batch_size=2, unlabeled_batch_size=3)
    batch = next(iter(stream))
    assert batch["labeled"]["image"].shape == (2, 1, 8, 8, 8)
    assert batch["labeled"]["label"].shape == (2, 1, 8, 8, 8)
    assert batch["unlabeled"]["image"].shape == (3, 1, 8, 8, 8)
    assert "label" not in batch["unlabeled"]
    assert set(batch["labeled"]["case"].tolist()) <= {0, 1, 2}
    assert set(batch["unlabeled"]["case"].tolist()) <= {3, 4, 5}


def test_cache_budget_is_respected(cases):
    one = 4 * np.prod(SHAPE) + np.prod(SHAPE)  # float32 image + uint8 label (+ fg list)
    stream = VolumeStream(cases, (8, 8, 8), labeled_batch_size=2, cache_bytes=int(2.5 * one))
    for _ in stream:
        assert stream.stats()["cache_bytes"] <= 2.5 * one
    none = VolumeStream(cases, (8, 8, 8), labeled_batch_size=2, cache_bytes=0)
    batches = _collect(none)
    assert none.stats()["cache_hits"] == 0
    assert none.stats()["cache_bytes"] == 0
    # samples_per_volume = 4: both slots of a batch crop one case, decoded once
    assert all(b["case"][0] == b["case"][1] for b in batches)
    assert none.stats()["cache_misses"] == len(batches)


def test_patch_larger_than_volume_is_zero_padded(cases):
    patch = (30, 20, 16)
    stream = VolumeStream(
        cases,
        patch,
        labeled_batch_size=1,
        **PLAIN,
        normalisation="none",
    )
    batch = next(iter(stream))
    o = batch["origin"][0]
    assert all(o[d] <= 0 and o[d] >= SHAPE[d] - patch[d] for d in range(3))
    raw = read_nifti(cases[int(batch["case"][0])].images[0]).data
    img = batch["image"][0, 0].numpy()
    inside = img[-o[0] : -o[0] + SHAPE[0], -o[1] : -o[1] + SHAPE[1], -o[2] : -o[2] + SHAPE[2]]
    np.testing.assert_array_equal(inside, raw.astype(np.float32))
    assert img.sum() == inside.sum()  # everything else is zero padding


def test_foreground_oversampling(cases):
    always = VolumeStream(cases, (4, 4, 4), labeled_batch_size=2, foreground_prob=1.0)
    assert all(bool((b["label"] > 0).flatten(1).any(1).all()) for b in always)


def test_dataloader_workers_shard_the_cases(cases):
    stream = VolumeStream(cases, (8, 8, 8), labeled_batch_size=1, samples_per_volume=1)
    loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=2)
    seen = [int(b["case"][0]) for b in loader]
    assert sorted(seen) == list(range(6))


def test_bad_cases_raise_or_are_skipped(cases, tmp_path):
    missing = {"images": [tmp_path / "gone.nii.gz"], "label": cases[0].label}
    stream = VolumeStream(
        [missing, *cases[1:]], (8, 8, 8), labeled_batch_size=1, samples_per_volume=1
    )
    with pytest.raises(DataError, match=r"gone\.nii\.gz"):
        _collect(stream)
    skipping = VolumeStream(
        [missing, *cases[1:]],
        (8, 8, 8),
        labeled_batch_size=1,
        samples_per_volume=1,
        on_error="skip",
    )
    batches = _collect(skipping)
    assert len(batches) == 6
    assert 0 not in {int(b["case"][0]) for b in batches}
    assert [c for c, _ in skipping.stats()["skipped"]] == [0]


def test_label_shape_mismatch_is_a_data_error(cases, tmp_path):
    bad_label = write_nifti(tmp_path / "l.nii.gz", np.zeros((5, 5, 5), np.uint8))
    stream = VolumeStream(
        [{"images": cases[0].images, "label": bad_label}], (4, 4, 4), labeled_batch_size=1
    )
    with pytest.raises(DataError, match="does not match"):
        _collect(stream)


def test_breaking_out_stops_the_threads(cases):
    stream = VolumeStream(
        cases, (8, 8, 8), labeled_batch_size=1, samples_per_volume=8, threads=3, prefetch=1
    )
    for i, _ in enumerate(stream):
        if i == 1:
            break  # the generator's finally closes the epoch and joins its threads
    assert len(_collect(stream)) == 48


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"patch_size": (8, 8)}, "3 positive"),
        ({"labeled_batch_size": 0}, "must be > 0"),
        ({"normalisation": "minmax"}, "normalisation"),
        ({"on_error": "ignore"}, "on_error"),
        ({"rank": 2, "world_size": 2}, "rank"),
        ({"rot90_plane": (1, 1)}, "rot90_plane"),
        ({"rotation": (-10, 10), "rotation_plane": (0, 3)}, "rotation_plane"),
        ({"rotation": (-10, 10), "rotation_prob": 1.5}, "rotation_prob"),
        ({"rotation": (10, -10)}, "rotation range"),
        ({"rotation": (float("nan"), 10)}, "rotation range must be finite"),
        ({"scale": (0.9, float("inf"))}, "scale range must be finite"),
        ({"unlabeled_batch_size": 2}, "no unlabelled"),
    ],
)
def test_bad_arguments(cases, kwargs, match):
    args = {"patch_size": (8, 8, 8), **kwargs}
    with pytest.raises(ValueError, match=match):
        VolumeStream(cases, **args)


@pytest.mark.parametrize(
    ("key", "value"),
    [("rotation_plane", (1, 1)), ("rot90_plane", (0, 3)), ("rotation", (float("nan"), 1.0))],
)
def test_the_native_config_checks_every_option(cases, key, value):
    """The options are checked once, by the native StreamConfig: a config built another way
    than through VolumeStream must not index out of range or draw NaN angles either."""
    from qgfast import _native

    fields = VolumeStream(cases, (8, 8, 8), rotation=(-5, 5)).config.fields()
    _native.StreamConfig(**fields)  # the stream's own options pass
    with pytest.raises(ValueError, match=key):
        _native.StreamConfig(**{**fields, key: value})
    with pytest.raises(ValueError, match=r"unknown option \"rotaton\""):
        _native.StreamConfig(**fields, rotaton=(1, 2))
    del fields["seed"]
    with pytest.raises(ValueError, match="missing options"):
        _native.StreamConfig(**fields)


def test_ranges_may_be_lists(cases):
    """Ranges read from JSON/YAML configs are lists; they mean what the tuples mean."""
    as_lists = VolumeStream(cases, [8, 8, 8], rotation=[-5, 5], clip=[1, 99], scale=[0.9, 1.1])
    as_tuples = VolumeStream(cases, (8, 8, 8), rotation=(-5, 5), clip=(1, 99), scale=(0.9, 1.1))
    torch.testing.assert_close(next(iter(as_lists))["image"], next(iter(as_tuples))["image"])


def test_streams_pickle_without_their_native_state(cases):
    """DataLoader workers started by spawn receive the stream by pickle: it must pickle
    before and after iterating and give the same batches."""
    import pickle

    stream = VolumeStream(cases, (8, 8, 8), labeled_batch_size=2, seed=3)
    first = next(iter(stream))
    stream.set_epoch(0)
    again = pickle.loads(pickle.dumps(stream))
    assert again.config.fields() == stream.config.fields()
    torch.testing.assert_close(next(iter(again))["image"], first["image"])


def test_no_hang_at_interpreter_exit_with_a_live_epoch(cases, tmp_path):
    import subprocess
    import sys

    script = (
        "from qgfast.data import VolumeStream, find_cases\n"
        f"s = VolumeStream(find_cases({str(cases[0].images[0].parents[1])!r}), (8, 8, 8),\n"
        "                  labeled_batch_size=1, samples_per_volume=50, threads=3, prefetch=2)\n"
        "it = iter(s)\nnext(it)\nprint('ok')\n"  # exits with the epoch's threads still waiting
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_fork_after_the_parent_iterated(cases):
    stream = VolumeStream(cases, (8, 8, 8), labeled_batch_size=1, samples_per_volume=1)
    assert len(_collect(stream)) == 6  # the parent now holds a native core
    loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=2)
    assert sorted(int(b["case"][0]) for b in loader) == list(range(6))
