"""Morphology equals scipy.ndimage exactly on the same footprint (skimage disk/ball or a
cube), border value 0, 2D and 3D, radii 0..6, binary and multi-class, per-sample radii;
on CPU both the default bit-packed path and the forced PyTorch reference."""

import numpy as np
import pytest
import torch

from qgfast import corrupt
from qgfast.reference.morphology import chord_half_lengths, footprint

ndi = pytest.importorskip("scipy.ndimage")
skm = pytest.importorskip("skimage.morphology")

SHAPES = {2: (3, 1, 23, 17), 3: (2, 1, 15, 13, 11)}


@pytest.fixture(params=["packed", "reference"])
def cpu_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """CPU tensors take the bit-packed path by default; QGFAST_BACKEND=reference forces
    the chord reference. Both must equal scipy."""
    if request.param == "reference":
        monkeypatch.setenv("QGFAST_BACKEND", "reference")
    else:
        monkeypatch.delenv("QGFAST_BACKEND", raising=False)
    return request.param


def _skimage_footprint(radius: int, nd: int, shape: str) -> np.ndarray:
    if shape == "cube":
        return np.ones((2 * radius + 1,) * nd, dtype=bool)
    return (skm.disk(radius) if nd == 2 else skm.ball(radius)).astype(bool)


def _random_masks(nd: int, p: float = 0.55) -> torch.Tensor:
    # blobby masks: thresholded smoothed noise, so erosion and dilation both do something
    noise = torch.rand(SHAPES[nd])
    pool = torch.nn.functional.avg_pool2d if nd == 2 else torch.nn.functional.avg_pool3d
    smooth = pool(noise, 3, stride=1, padding=1, count_include_pad=False)
    return (smooth > p).to(torch.uint8)


@pytest.mark.parametrize("nd", [2, 3])
@pytest.mark.parametrize("shape", ["ball", "cube"])
def test_footprints_equal_skimage(nd, shape) -> None:
    for r in range(7):
        want = _skimage_footprint(r, nd, shape)
        assert np.array_equal(footprint(r, nd, shape).numpy(), want), r


def test_chords_cover_the_ball_exactly() -> None:
    for r in range(7):
        covered = np.zeros((2 * r + 1,) * 3, dtype=bool)
        for (dy, dz), h in chord_half_lengths(r, 2):
            covered[dy + r, dz + r, r - h : r + h + 1] = True
        assert np.array_equal(covered, skm.ball(r).astype(bool))


@pytest.mark.parametrize("nd", [2, 3])
@pytest.mark.parametrize("shape", ["ball", "cube"])
@pytest.mark.parametrize("radius", range(7))
def test_binary_ops_equal_scipy(cpu_path, nd, shape, radius) -> None:
    masks = _random_masks(nd)
    fp = _skimage_footprint(radius, nd, shape)
    ops = {
        "erode": (corrupt.erode, ndi.binary_erosion),
        "dilate": (corrupt.dilate, ndi.binary_dilation),
        "open": (corrupt.open, ndi.binary_opening),
        "close": (corrupt.close, ndi.binary_closing),
    }
    for name, (ours, scipy_op) in ops.items():
        got = ours(masks, radius, shape=shape)
        assert got.dtype == masks.dtype
        for b in range(masks.shape[0]):
            m = masks[b, 0].numpy().astype(bool)
            want = m if radius == 0 else scipy_op(m, structure=fp, border_value=0)
            assert np.array_equal(got[b, 0].numpy().astype(bool), want), (name, b)


@pytest.mark.parametrize("nd", [2, 3])
@pytest.mark.parametrize("radius", [1, 2, 4])
def test_multiclass_shrinks_and_grows_without_one_hot(cpu_path, nd, radius) -> None:
    noise = torch.rand(SHAPES[nd])
    labels = torch.bucketize(noise, torch.tensor([0.4, 0.6, 0.8])).to(torch.uint8)
    labels = torch.where(_random_masks(nd, 0.5).bool(), labels, torch.zeros_like(labels))
    fp = _skimage_footprint(radius, nd, "ball")
    eroded = corrupt.erode(labels, radius)
    dilated = corrupt.dilate(labels, radius)
    for b in range(labels.shape[0]):
        lab = labels[b, 0].numpy()
        want_e = np.zeros_like(lab)
        for c in range(1, 4):
            want_e[ndi.binary_erosion(lab == c, structure=fp, border_value=0)] = c
        grey = ndi.grey_dilation(lab, footprint=fp, mode="constant", cval=0)
        want_d = np.where(lab == 0, grey, lab)
        assert np.array_equal(eroded[b, 0].numpy(), want_e)
        assert np.array_equal(dilated[b, 0].numpy(), want_d)


def test_per_sample_radii_and_zero_is_identity(cpu_path) -> None:
    masks = _random_masks(3)
    radii = torch.tensor([0, 3])
    got = corrupt.dilate(masks, radii)
    assert torch.equal(got[0], masks[0])
    assert torch.equal(got[1:], corrupt.dilate(masks[1:], 3))


def test_bool_masks_round_trip() -> None:
    masks = _random_masks(2).bool()
    got = corrupt.erode(masks, 2, shape="cube")
    assert got.dtype == torch.bool
    assert torch.equal(got, corrupt.erode(masks.to(torch.uint8), 2, shape="cube").bool())


@pytest.mark.parametrize(
    ("masks", "radius", "error", "match"),
    [
        (torch.rand(2, 1, 5, 5), 1, TypeError, "integer or bool label map"),
        (torch.zeros(2, 5, 5, dtype=torch.uint8), 1, ValueError, r"\(B, 1, H, W\)"),
        (torch.zeros(0, 1, 5, 5, dtype=torch.uint8), 1, ValueError, "empty batch"),
        (torch.zeros(2, 1, 4, 0, dtype=torch.uint8), 1, ValueError, "empty spatial axis"),
        (torch.zeros(2, 1, 5, 5, dtype=torch.uint8), -1, ValueError, "radius must be >= 0"),
        (torch.zeros(2, 1, 5, 5, dtype=torch.uint8), 6, ValueError, "larger than the volume"),
        (
            torch.zeros(2, 1, 5, 5, dtype=torch.uint8),
            torch.tensor([1]),
            ValueError,
            r"shape \(2,\)",
        ),
        (torch.zeros(2, 1, 5, 5, dtype=torch.uint8), 1.5, TypeError, "radius must be an int"),
    ],
)
def test_bad_input_is_named(masks, radius, error, match) -> None:
    with pytest.raises(error, match=match):
        corrupt.erode(masks, radius)


def test_unknown_footprint() -> None:
    with pytest.raises(ValueError, match="shape must be one of"):
        corrupt.dilate(torch.zeros(1, 1, 4, 4, dtype=torch.uint8), 1, shape="diamond")


@pytest.mark.parametrize("nd", [2, 3])
@pytest.mark.parametrize("shape", ["ball", "cube"])
def test_triton_equals_reference(monkeypatch, nd, shape) -> None:
    """One launch for a batch with per-sample radii 0..3, binary and multi-class (int64):
    the kernel equals the reference (itself equal to scipy above)."""
    size = (3, 1, 12, 9) if nd == 2 else (3, 1, 8, 7, 6)
    binary = (torch.rand(size) > 0.5).to(torch.uint8)
    labels = (binary * torch.randint(1, 4, size, dtype=torch.uint8)).to(torch.int64)
    radii = torch.tensor([3, 0, 2])
    for masks in (binary, labels):
        for op in (corrupt.erode, corrupt.dilate):
            monkeypatch.setenv("QGFAST_BACKEND", "triton")
            got = op(masks, radii, shape=shape)
            monkeypatch.setenv("QGFAST_BACKEND", "reference")
            want = op(masks, radii, shape=shape)
            assert got.dtype == masks.dtype
            assert torch.equal(got, want), op.__name__


@pytest.mark.gpu
@pytest.mark.parametrize("shape", ["ball", "cube"])
def test_triton_equals_reference_on_gpu_at_benchmark_shape(monkeypatch, shape) -> None:
    masks = (torch.rand(8, 1, 128, 128, 128, device="cuda") > 0.9).to(torch.uint8)
    radii = torch.tensor([0, 1, 2, 3, 4, 5, 6, 3], device="cuda")
    for op in (corrupt.erode, corrupt.dilate):
        got = op(masks, radii, shape=shape)
        monkeypatch.setenv("QGFAST_BACKEND", "reference")
        want = op(masks, radii, shape=shape)
        monkeypatch.delenv("QGFAST_BACKEND")
        assert torch.equal(got, want), op.__name__


@pytest.mark.parametrize("backend_name", ["packed", "reference", "triton"])
def test_tiny_volumes_and_radius_equal_to_the_volume(monkeypatch, backend_name) -> None:
    if backend_name == "packed":  # the CPU default
        monkeypatch.delenv("QGFAST_BACKEND", raising=False)
    else:
        monkeypatch.setenv("QGFAST_BACKEND", backend_name)
    one = torch.ones(2, 1, 1, 1, 1, dtype=torch.uint8)
    assert torch.equal(corrupt.dilate(one, 1), one)
    assert torch.count_nonzero(corrupt.erode(one, 1)) == 0  # the 0 border erodes everything
    line = torch.zeros(1, 1, 1, 5, dtype=torch.uint8)
    line[..., 2] = 1
    assert corrupt.dilate(line, 5).tolist() == [[[[1, 1, 1, 1, 1]]]]
