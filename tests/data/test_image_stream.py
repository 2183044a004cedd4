"""ImageStream: Rust decode + anti-aliased resize against PIL + torch, augmentations against
a NumPy reference of the returned draws, mask formats, errors."""

from __future__ import annotations

import os
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from qgfast.data import (
    DataError,
    ImageStream,
    auto_jpeg_decoder,
    find_cases,
    make_synthetic_dataset,
)

Image = pytest.importorskip("PIL.Image")
pytest.importorskip("qgfast._native")

PLAIN = {"hflip": False, "vflip": False, "rot90": False, "brightness": None, "contrast": None}
PLAIN |= {"gain": None, "normalisation": "none"}


def _libjpeg_turbo_loads() -> bool:
    """CI sets QGFAST_REQUIRE_TURBOJPEG, so the libjpeg-turbo cases cannot pass by skipping."""
    loads = auto_jpeg_decoder()[0] == "libjpeg-turbo"
    if not loads and os.environ.get("QGFAST_REQUIRE_TURBOJPEG"):
        pytest.fail(f"libjpeg-turbo is required here: {auto_jpeg_decoder()[1]}")
    return loads


# each JPEG decoder with how far its pixels may be from PIL's (in levels of 255)
JPEG_DECODERS = [
    pytest.param("libjpeg-turbo", 0, id="libjpeg-turbo"),  # PIL's own decoder
    pytest.param("zune", 3, id="zune"),  # IDCT and upsampling round differently
]


@pytest.fixture(scope="module")
def lesions(tmp_path_factory):
    root = make_synthetic_dataset("lesion2d", 6, tmp_path_factory.mktemp("lesions"), size=53)
    return find_cases(root)


def _torch_reference(case, size):
    rgb = np.asarray(Image.open(case.images[0]).convert("RGB"), np.float32) / 255
    img = torch.from_numpy(rgb).permute(2, 0, 1)[None]
    img = F.interpolate(img, size, mode="bilinear", antialias=True, align_corners=False)[0]
    mask = torch.from_numpy(np.asarray(Image.open(case.label)).copy())[None, None].float()
    mask = F.interpolate(mask, size, mode="nearest-exact")[0].to(torch.uint8)
    return img.numpy(), mask.numpy()


@pytest.mark.parametrize("size", [(32, 32), (40, 27), (80, 64)], ids=str)
def test_decode_and_resize_match_pil_and_torch(lesions, size):
    stream = ImageStream(lesions, size, labeled_batch_size=2, **PLAIN)
    for batch in stream:
        for j in range(2):
            want_i, want_l = _torch_reference(lesions[int(batch["case"][j])], size)
            np.testing.assert_allclose(batch["image"][j].numpy(), want_i, atol=2e-6)
            np.testing.assert_array_equal(batch["label"][j].numpy(), want_l)


def _rotated(image, label, degrees):
    """scipy as the oracle: pixel o reads h + R(o − h) (h the image centre), bilinear for
    the image, nearest for the mask, zero outside the image."""
    from scipy import ndimage

    t = np.deg2rad(degrees)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    h = (np.asarray(image.shape[1:], np.float64) - 1) / 2

    def warp(plane, order):
        return ndimage.affine_transform(plane, rot, h - rot @ h, order=order, mode="grid-constant")

    image = np.stack([warp(c.astype(np.float64), 1) for c in image]).astype(np.float32)
    return image, np.stack([warp(c, 0) for c in label])


def _reference(image, label, batch, j, normalise=True):
    if "angle" in batch and float(batch["angle"][j]) != 0:
        image, label = _rotated(image, label, float(batch["angle"][j]))
    flips = [1 + d for d in range(2) if batch["flip"][j, d]]
    if flips:
        image, label = np.flip(image, flips), np.flip(label, flips)
    k = int(batch["rot90"][j])
    image, label = np.rot90(image, k, axes=(1, 2)), np.rot90(label, k, axes=(1, 2))
    image = np.clip(image * batch["brightness"][j].numpy(), 0, 1)
    c = batch["contrast"][j].numpy()
    if c != 1:
        grey = (0.299 * image[0] + 0.587 * image[1] + 0.114 * image[2]).astype(np.float64).mean()
        image = np.clip(c * image + (1 - c) * np.float32(grey), 0, 1)
    image = np.clip(image * batch["gain"][j].numpy()[:, None, None], 0, 1)
    if not normalise:
        return image, label
    mean = np.array([0.485, 0.456, 0.406], np.float32)[:, None, None]
    std = np.array([0.229, 0.224, 0.225], np.float32)[:, None, None]
    return (image - mean) / std, label


def test_augmentations_equal_the_numpy_reference(lesions):
    stream = ImageStream(lesions, 48, labeled_batch_size=3, jitter_prob=0.9, seed=4)
    drew_colour = False
    for batch in stream:
        for j in range(3):
            base_i, base_l = _torch_reference(lesions[int(batch["case"][j])], (48, 48))
            want_i, want_l = _reference(base_i, base_l, batch, j)
            np.testing.assert_array_equal(batch["label"][j].numpy(), want_l)
            np.testing.assert_allclose(batch["image"][j].numpy(), want_i, atol=3e-5)
            drew_colour |= bool(batch["contrast"][j] != 1)
    assert drew_colour


@pytest.mark.parametrize("size", [(48, 48), (40, 29)], ids=str)
def test_rotation_equals_scipy(lesions, size):
    """SSL4MIS-style rotation by any angle about the image centre (zero outside the image),
    before flips, rot90 (square sizes), jitter and ImageNet normalisation."""
    stream = ImageStream(
        lesions,
        size,
        labeled_batch_size=3,
        samples_per_volume=3,
        rotation=(-30, 30),
        rotation_prob=0.7,
        seed=6,
    )
    angles = []
    for batch in stream:
        for j in range(3):
            base_i, base_l = _torch_reference(lesions[int(batch["case"][j])], size)
            want_i, want_l = _reference(base_i, base_l, batch, j)
            np.testing.assert_array_equal(batch["label"][j].numpy(), want_l)
            np.testing.assert_allclose(batch["image"][j].numpy(), want_i, atol=1e-4)
            angles.append(float(batch["angle"][j]))
    assert any(a != 0 for a in angles)
    assert all(-30 <= a <= 30 for a in angles)


def test_per_image_normalisation_after_jitter(lesions):
    """normalisation="per-image": each channel of the jittered image z-scored over itself
    (population std), flips and colour draws as returned. 29 columns: mirrored rows end
    in a part shorter than a vector."""
    stream = ImageStream(
        lesions,
        (40, 29),
        labeled_batch_size=3,
        jitter_prob=0.9,
        rot90=False,
        seed=5,
        normalisation="per-image",
    )
    for batch in stream:
        for j in range(3):
            base_i, base_l = _torch_reference(lesions[int(batch["case"][j])], (40, 29))
            jittered, want_l = _reference(base_i, base_l, batch, j, normalise=False)
            jittered = jittered.astype(np.float64)
            mean = jittered.mean(axis=(1, 2), keepdims=True)
            want_i = (jittered - mean) / jittered.std(axis=(1, 2), keepdims=True)
            np.testing.assert_array_equal(batch["label"][j].numpy(), want_l)
            np.testing.assert_allclose(batch["image"][j].numpy(), want_i, atol=1e-5)


def test_grey_contrast_uses_the_image_mean(tmp_path):
    """One channel: contrast blends with the image's own mean level."""
    grey = (np.add.outer(np.arange(21), np.arange(33)) * 3).astype(np.uint8)
    path = _write(tmp_path / "g.png", grey)
    mask = _write(tmp_path / "m.png", np.zeros(grey.shape, np.uint8))
    stream = ImageStream(
        [{"images": [path], "label": mask}],
        grey.shape,
        labeled_batch_size=1,
        **(PLAIN | {"contrast": (0.5, 0.7)}),
        jitter_prob=1.0,
    )
    batch = next(iter(stream))
    c = float(batch["contrast"][0])
    assert 0.5 <= c <= 0.7
    v = grey.astype(np.float32) / 255
    want = np.clip(c * v + (1 - c) * np.float32(v.astype(np.float64).mean()), 0, 1)
    np.testing.assert_allclose(batch["image"][0, 0].numpy(), want, atol=1e-6)


@pytest.mark.parametrize(("decoder", "levels"), JPEG_DECODERS)
def test_images_of_different_sizes_through_one_thread(tmp_path, decoder, levels):
    """Per-thread decode buffers are reused from image to image: sizes that grow and shrink
    must each decode and resize as if alone (a JPEG decoder's own tolerance against PIL).
    Odd input sizes: no nearest-neighbour source lands exactly on a pixel edge, where
    torch's float32 scale may round down and our exact arithmetic does not."""
    rng = np.random.default_rng(0)
    cases = []
    for i, (h, w) in enumerate([(41, 53), (97, 61), (23, 31), (97, 61), (65, 63)]):
        rgb = (rng.random((h, w, 3)) * 255).astype(np.uint8)
        path = tmp_path / (f"{i}.png" if i % 2 else f"{i}.jpg")
        Image.fromarray(rgb).save(path, quality=92)
        mask = _write(tmp_path / f"{i}m.png", (rng.random((h, w)) > 0.5).astype(np.uint8))
        cases.append(SimpleNamespace(images=[path], label=mask))
    plain = [{"images": c.images, "label": c.label} for c in cases]
    if decoder == "libjpeg-turbo" and not _libjpeg_turbo_loads():
        pytest.skip("libturbojpeg does not load here")
    stream = ImageStream(
        plain, (33, 41), labeled_batch_size=5, threads=1, jpeg_decoder=decoder, **PLAIN
    )
    batch = next(iter(stream))
    assert sorted(batch["case"].tolist()) == list(range(5))
    for j in range(5):
        case = cases[int(batch["case"][j])]
        want_i, want_l = _torch_reference(case, (33, 41))
        tol = 2e-6 if case.images[0].suffix == ".png" else levels / 255 + 2e-6
        np.testing.assert_allclose(batch["image"][j].numpy(), want_i, atol=tol)
        np.testing.assert_array_equal(batch["label"][j].numpy(), want_l)


@pytest.mark.parametrize(("decoder", "levels"), JPEG_DECODERS)
def test_grey_jpeg_has_one_channel(tmp_path, decoder, levels):
    if decoder == "libjpeg-turbo" and not _libjpeg_turbo_loads():
        pytest.skip("libturbojpeg does not load here")
    grey = np.add.outer(np.arange(24), np.arange(30)).astype(np.uint8) * 4
    path = tmp_path / "g.jpg"
    Image.fromarray(grey).save(path, quality=95)
    mask = _write(tmp_path / "m.png", np.zeros(grey.shape, np.uint8))
    stream = ImageStream(
        [{"images": [path], "label": mask}],
        grey.shape,
        labeled_batch_size=1,
        jpeg_decoder=decoder,
        **PLAIN,
    )
    img = next(iter(stream))["image"]
    assert img.shape == (1, 1, *grey.shape)
    pil = np.asarray(Image.open(path), np.float32) / 255
    assert np.abs(img[0, 0].numpy() - pil).max() <= levels / 255 + 1e-7


def test_same_seed_same_batches(lesions):
    a = [b["image"].clone() for b in ImageStream(lesions, 32, labeled_batch_size=2, seed=9)]
    b = [
        b["image"].clone()
        for b in ImageStream(lesions, 32, labeled_batch_size=2, seed=9, threads=3)
    ]
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def _write(path, array, **kw):
    Image.fromarray(array, **kw).save(path)
    return path


def test_mask_formats(tmp_path):
    rgb = np.zeros((10, 12, 3), np.uint8)
    labels = np.zeros((10, 12), np.uint8)
    labels[2:6, 3:9] = 1
    labels[7:, :4] = 2
    image = _write(tmp_path / "i.png", rgb)
    palette = Image.fromarray(labels, mode="P")
    palette.putpalette([0, 0, 0, 200, 0, 0, 0, 200, 0] + [0] * 759)
    palette.save(tmp_path / "p.png")
    binary = _write(tmp_path / "b.png", (labels == 1).astype(np.uint8) * 255)
    one_bit = Image.fromarray(labels == 1).convert("1")
    one_bit.save(tmp_path / "one.png")
    expected = {"p.png": labels, "b.png": labels == 1, "one.png": labels == 1}
    for name, want in expected.items():
        stream = ImageStream(
            [{"images": [image], "label": tmp_path / name}], (10, 12), labeled_batch_size=1, **PLAIN
        )
        got = next(iter(stream))["label"][0, 0].numpy()
        np.testing.assert_array_equal(got, want.astype(np.uint8), err_msg=name)
    del binary


def test_grey_images_have_one_channel(tmp_path):
    grey = _write(tmp_path / "g.png", np.arange(120, dtype=np.uint8).reshape(10, 12))
    mask = _write(tmp_path / "m.png", np.zeros((10, 12), np.uint8))
    stream = ImageStream(
        [{"images": [grey], "label": mask}], (10, 12), labeled_batch_size=1, **PLAIN
    )
    img = next(iter(stream))["image"]
    assert img.shape == (1, 1, 10, 12)
    np.testing.assert_allclose(img[0, 0].numpy(), np.arange(120).reshape(10, 12) / 255, atol=1e-6)


@pytest.mark.parametrize(("decoder", "levels"), JPEG_DECODERS)
def test_jpeg_decodes_like_pil(tmp_path, lesions, decoder, levels):
    if decoder == "libjpeg-turbo" and not _libjpeg_turbo_loads():
        pytest.skip("libturbojpeg does not load here")
    rgb = np.asarray(Image.open(lesions[0].images[0]).convert("RGB"))
    path = tmp_path / "x.jpg"
    Image.fromarray(rgb).save(path, quality=90)  # 4:2:0: chroma upsampling matters
    mask = _write(tmp_path / "m.png", np.zeros(rgb.shape[:2], np.uint8))
    case = [{"images": [path], "label": mask}]
    stream = ImageStream(case, rgb.shape[:2], labeled_batch_size=1, jpeg_decoder=decoder, **PLAIN)
    ours = next(iter(stream))["image"][0].numpy()
    pil = np.asarray(Image.open(path).convert("RGB"), np.float32).transpose(2, 0, 1) / 255
    assert np.abs(ours - pil).max() <= levels / 255 + 1e-7


def test_jpeg_decoder_is_checked():
    with pytest.raises(ValueError, match="jpeg_decoder must be one of"):
        ImageStream(
            [{"images": ["a.jpg"]}],
            8,
            labeled_batch_size=0,
            unlabeled_batch_size=1,
            jpeg_decoder="pil",
        )


def test_libjpeg_turbo_that_does_not_load_is_refused_or_replaced():
    """A library that does not load: "auto" reads with zune, asking for libjpeg-turbo is a
    clear error at construction (a fresh process: the library is looked up once)."""
    code = (
        "from qgfast.data import ImageStream, auto_jpeg_decoder\n"
        "print(auto_jpeg_decoder()[0])\n"
        "try:\n"
        "    ImageStream([{'images': ['a.jpg']}], 8, labeled_batch_size=0,"
        " unlabeled_batch_size=1, jpeg_decoder='libjpeg-turbo')\n"
        "except ValueError as e:\n"
        "    print(e)\n"
    )
    env = dict(os.environ, QGFAST_TURBOJPEG="/no/such/libturbojpeg.so")
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out[0] == "zune"
    assert "does not load here" in out[1]
    assert "/no/such/libturbojpeg.so" in out[1]


def test_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    mask = _write(tmp_path / "m.png", np.zeros((4, 4), np.uint8))
    stream = ImageStream([{"images": [bad], "label": mask}], 8, labeled_batch_size=1)
    with pytest.raises(DataError, match=r"bad\.jpg"):
        next(iter(stream))
    img = _write(tmp_path / "i.png", np.zeros((5, 4, 3), np.uint8))
    stream = ImageStream([{"images": [img], "label": mask}], 8, labeled_batch_size=1)
    with pytest.raises(DataError, match="does not match"):
        next(iter(stream))
    colour = _write(tmp_path / "c.png", (np.eye(5, 4)[..., None] * [255, 0, 0]).astype(np.uint8))
    stream = ImageStream([{"images": [img], "label": colour}], 8, labeled_batch_size=1)
    with pytest.raises(DataError, match="colour mask"):
        next(iter(stream))


def test_non_image_files_are_refused(tmp_path):
    with pytest.raises(ValueError, match="2D image files"):
        ImageStream(
            [{"images": [tmp_path / "v.nii.gz"]}], 8, unlabeled_batch_size=1, labeled_batch_size=0
        )
