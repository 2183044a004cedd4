"""The bit-packed CPU morphology: packing round trips, word shifts against a plain index
shift, planes against scipy across word boundaries, and label maps against the PyTorch
reference (several classes, negative labels, more classes than it takes, int64, views)."""

import numpy as np
import pytest
import torch

from qgfast.corrupt import morphology_packed as packed
from qgfast.reference import morphology as reference
from qgfast.reference.morphology import footprint

ndi = pytest.importorskip("scipy.ndimage")

WIDTHS = [1, 5, 63, 64, 65, 130]  # inside one word, exactly one, across two and three
RNG = np.random.default_rng(7)


@pytest.mark.parametrize("width", WIDTHS)
def test_pack_and_unpack_round_trip(width) -> None:
    bits = (RNG.random((3, 4, width)) > 0.5).astype(np.uint8)
    words = packed.pack_rows(bits)
    assert words.dtype == np.dtype("<u8")
    assert words.shape == (3, 4, -(-width // 64))
    assert np.array_equal(packed.unpack_rows(words, width), bits)
    # voxel i of a row is bit i % 64 of word i // 64, and bits past the row are 0
    i = width - 1
    assert (int(words[0, 0, i // 64]) >> (i % 64)) & 1 == bits[0, 0, i]
    assert int(packed.pack_rows(np.ones((1, width), np.uint8))[0, -1]) >> (width % 64 or 64) == 0


@pytest.mark.parametrize("width", WIDTHS)
def test_moving_rows_equals_an_index_shift(width) -> None:
    bits = (RNG.random((2, width)) > 0.5).astype(np.uint8)
    words = packed.pack_rows(bits)
    for by in sorted({0, 1, -1, 7, -7, 63, -63, 64, -64, 65, -65, width, -width, width + 70}):
        source = np.arange(width) - by  # out[i] = in[i - by], 0 from outside the row
        inside = (source >= 0) & (source < width)
        want = np.zeros_like(bits)
        want[:, inside] = bits[:, source[inside]]
        got = packed.unpack_rows(packed._moved(words, by), width)
        assert np.array_equal(got, want), by


@pytest.mark.parametrize("shape", ["ball", "cube"])
@pytest.mark.parametrize("size", [(2, 9, 70), (2, 5, 6, 130)])
def test_planes_equal_scipy_across_word_boundaries(shape, size) -> None:
    nd = len(size) - 1
    plane = RNG.random(size) > 0.6
    for r in (0, 1, 2, 4):
        fp = footprint(r, nd, shape).numpy()
        for erode, scipy_op in ((True, ndi.binary_erosion), (False, ndi.binary_dilation)):
            got = packed.filter_plane(plane, r, shape, erode)
            assert got.dtype == np.uint8
            for b in range(size[0]):
                want = plane[b] if r == 0 else scipy_op(plane[b], structure=fp, border_value=0)
                assert np.array_equal(got[b].astype(bool), want), (r, erode)


def _label_maps() -> dict[str, torch.Tensor]:
    size = (3, 1, 11, 9, 70)
    base = torch.rand(size)
    classes = torch.bucketize(torch.rand(size), torch.tensor([0.3, 0.5, 0.7])).to(torch.uint8)
    labels = torch.where(base > 0.4, classes, torch.zeros_like(classes))
    many = torch.randint(0, packed.MAX_PLANES + 2, size, dtype=torch.int64)  # 9 nonzero classes
    return {
        "empty": torch.zeros(size, dtype=torch.uint8),
        "binary": (base > 0.5).to(torch.uint8),
        "binary-int64": (base > 0.5).to(torch.int64),
        "classes": labels,
        "large labels": labels.to(torch.int32) * 2000,  # past the bincount range: unique
        "negative": labels.to(torch.int64) - 2 * (labels == 1).to(torch.int64),  # -1, 2, 3
        "non-contiguous": labels.transpose(2, 4).contiguous().transpose(2, 4),
        "binary non-contiguous": (base > 0.5)
        .to(torch.uint8)
        .transpose(2, 4)
        .contiguous()
        .transpose(2, 4),
        "many": many,
    }


@pytest.mark.parametrize("shape", ["ball", "cube"])
@pytest.mark.parametrize("name", list(_label_maps()))
def test_label_maps_equal_the_reference(name, shape) -> None:
    x = _label_maps()[name]
    for r in (1, 3):
        for ours, ref in ((packed.erode, reference.erode), (packed.dilate, reference.dilate)):
            got = ours(x, r, shape)
            if name == "many":  # more classes than planes: the caller uses the reference
                assert got is None
                continue
            assert got is not None
            assert got.dtype == x.dtype
            assert torch.equal(got, ref(x, r, shape)), (name, r, ours.__name__)


def test_a_zero_length_axis_gives_an_empty_map() -> None:
    x = torch.zeros(2, 1, 0, 5, dtype=torch.uint8)
    for op in (packed.erode, packed.dilate):
        got = op(x, 1)
        assert got is not None
        assert got.shape == x.shape
