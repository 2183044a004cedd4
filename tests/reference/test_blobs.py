"""The blob-painting reference (a box around each blob) against the inside test evaluated
over the whole volume in numpy: balls, ellipsoids, flat blobs, blobs over the border,
absent blobs, 2D and 3D."""

import numpy as np
import pytest
import torch

from qgfast.reference.blobs import paint_blobs


def _whole_volume(x: np.ndarray, centres: np.ndarray, axes: np.ndarray, fill: int) -> np.ndarray:
    """Σ (d_a / r_a)² ≤ 1 over the nonzero semi-axes, offset 0 along zero ones, in integers."""
    out = x.copy()
    grids = np.indices(x.shape[2:])
    for i in range(x.shape[0]):
        for j in range(centres.shape[1]):
            r = axes[i, j].astype(np.int64)
            if r[0] < 0:
                continue
            d = [grids[a] - centres[i, j, a] for a in range(len(r))]
            flat = [a for a in range(len(r)) if r[a] == 0]
            round_ = [a for a in range(len(r)) if r[a] > 0]
            inside = np.ones(x.shape[2:], bool)
            for a in flat:
                inside &= d[a] == 0
            whole = int(np.prod([r[a] ** 2 for a in round_]))
            lhs = sum(d[a] ** 2 * (whole // r[a] ** 2) for a in round_)
            out[i, 0][inside & (lhs <= whole)] = fill
    return out


@pytest.mark.parametrize("spatial", [(29, 23), (13, 12, 10)])
def test_box_painting_equals_the_whole_volume_test(spatial) -> None:
    g = np.random.default_rng(4)
    b, n, nd = 3, 4, len(spatial)
    x = torch.from_numpy(g.integers(0, 3, (b, 1, *spatial)).astype(np.uint8))
    centres = np.stack([g.integers(-2, s + 2, (b, n)) for s in spatial], -1)  # some outside
    axes = g.integers(0, 7, (b, n, nd))
    axes[0, 1] = -1  # absent blobs
    axes[2, :, 0] = -1
    axes[1, 2] = [0] + [3] * (nd - 1)  # flat along the first axis
    got = paint_blobs(x, torch.from_numpy(centres), torch.from_numpy(axes), 2)
    want = _whole_volume(x.numpy(), centres, axes, 2)
    np.testing.assert_array_equal(got.numpy(), want)
    assert not np.array_equal(want, x.numpy())  # something was painted


def test_no_blob_returns_an_unchanged_copy() -> None:
    x = torch.ones(2, 1, 5, 6, dtype=torch.uint8)
    out = paint_blobs(x, torch.zeros(2, 0, 2, dtype=torch.int64), torch.zeros(2, 0, 2), 0)
    assert torch.equal(out, x)
    assert out.data_ptr() != x.data_ptr()
