"""Every op of the pool keeps the contract the VQM generator relies on: a uint8 batch in, a
uint8 batch of the same shape with values 0/1 out (the generator copies the result into
its work buffer as it is, with no thresholding pass)."""

from __future__ import annotations

import pytest
import torch

from qgfast.corrupt.pool import (
    blob_category_pool,
    catastrophic_pool,
    heavy_pool,
    single_pool,
)

POOL = single_pool() + single_pool("ball") + heavy_pool() + catastrophic_pool()
POOL += blob_category_pool()


def _blobs(shape: tuple[int, ...]) -> torch.Tensor:
    """Two ellipsoids and one empty sample, uint8 [3, 1, *shape]."""
    grids = torch.meshgrid(*(torch.linspace(-1, 1, n) for n in shape), indexing="ij")
    r2 = sum(g**2 for g in grids)
    offset = sum((g - 0.3) ** 2 for g in grids)
    masks = torch.stack([r2 < 0.4, (offset < 0.2) | (r2 < 0.05), torch.zeros(shape, dtype=bool)])
    return masks[:, None].to(torch.uint8)


@pytest.mark.parametrize("op", POOL, ids=lambda op: op.name)
@pytest.mark.parametrize("shape", [(37, 29), (13, 11, 9)], ids=["2d", "3d"])
def test_ops_return_0_1_uint8_of_the_input_shape(op, shape):
    if len(shape) not in op.spatial_dims:
        pytest.skip(f"{op.name} is {op.spatial_dims}D only")
    masks = _blobs(shape)
    out = op.fn(masks.clone(), 7, max(shape) / 224)
    assert out.dtype == torch.uint8
    assert out.shape == masks.shape
    assert set(out.unique().tolist()) <= {0, 1}
