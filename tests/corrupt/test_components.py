"""Connected components against scipy.ndimage.label (face connectivity)."""

import numpy as np
import pytest
import torch

from qgfast.corrupt import components

ndi = pytest.importorskip("scipy.ndimage")


@pytest.mark.parametrize("size", [(3, 1, 25, 21), (2, 1, 13, 12, 11)])
def test_labels_partition_like_scipy(size) -> None:
    masks = (torch.rand(size) > 0.55).to(torch.uint8)
    lab = components.label_components(masks)
    for b in range(size[0]):
        want, count = ndi.label(masks[b, 0].numpy())
        got = lab[b].numpy()
        assert (got > 0).sum() == (want > 0).sum()
        # same partition: a bijection between our labels and scipy's
        pairs = {(g, w) for g, w in zip(got[want > 0], want[want > 0], strict=True)}
        assert len(pairs) == count == len({g for g, _ in pairs})


def test_keep_largest_and_drop_random() -> None:
    m = torch.zeros(2, 1, 20, 20, dtype=torch.uint8)
    m[0, 0, 1:4, 1:4] = 1  # 9 voxels
    m[0, 0, 10:15, 10:15] = 1  # 25 voxels
    m[0, 0, 18, 18] = 1  # 1 voxel
    m[1, 0, 5:8, 5:8] = 1  # a single component
    largest = components.keep_largest_component(m)
    assert largest[0].sum() == 25
    assert largest[0, 0, 12, 12] == 1
    assert torch.equal(largest[1], m[1])
    dropped = components.drop_random_component(m, seed=3)
    assert m[0].sum() == 35
    assert dropped[0].sum().item() in (35 - 9, 35 - 25, 35 - 1)
    assert torch.equal(dropped[1], m[1])  # one component only: unchanged
    kinds = {components.drop_random_component(m, seed=s)[0].sum().item() for s in range(30)}
    assert kinds == {35 - 9, 35 - 25, 35 - 1}


def test_empty_masks() -> None:
    empty = torch.zeros(2, 1, 6, 7, dtype=torch.uint8)
    assert components.keep_largest_component(empty).sum() == 0
    assert components.drop_random_component(empty).sum() == 0
    assert np.all(components.label_components(empty).numpy() == 0)


@pytest.mark.parametrize("size", [(3, 1, 25, 21), (2, 1, 13, 12, 11), (1, 1, 1, 9)])
def test_native_and_propagated_labels_are_identical(size) -> None:
    pytest.importorskip("qgfast._native")
    masks = (torch.rand(size) > 0.5).to(torch.uint8)
    native = components._native_labels(masks)
    assert native is not None
    assert torch.equal(native, components._propagated_labels(masks))


def test_native_labelling_handles_empty_arrays_and_refuses_floats() -> None:
    native = pytest.importorskip("qgfast._native")
    labels, count = native.label_components(np.zeros((0, 3), dtype=np.uint8))
    assert labels.shape == (0, 3)
    assert count == 0
    with pytest.raises(TypeError):
        native.label_components(np.zeros((3, 3), dtype=np.float32))
