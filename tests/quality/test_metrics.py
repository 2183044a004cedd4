"""Agreement metrics against scipy, ties included."""

from __future__ import annotations

import math

import pytest
import torch

from qgfast.quality import agreement

stats = pytest.importorskip("scipy.stats")
hypothesis = pytest.importorskip("hypothesis")
st = pytest.importorskip("hypothesis.strategies")


@hypothesis.given(
    st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6)), min_size=3, max_size=40).filter(
        lambda rows: len({a for a, _ in rows}) > 1 and len({b for _, b in rows}) > 1
    )
)
def test_matches_scipy_with_ties(rows):
    a = torch.tensor([r[0] for r in rows], dtype=torch.float32) / 6
    b = torch.tensor([r[1] for r in rows], dtype=torch.float32) / 6
    got = agreement(a, b)
    assert got["n"] == len(rows)
    assert math.isclose(got["mae"], float((a.double() - b.double()).abs().mean()), rel_tol=1e-9)
    assert math.isclose(got["pearson"], stats.pearsonr(a.double(), b.double())[0], abs_tol=1e-9)
    assert math.isclose(got["spearman"], stats.spearmanr(a, b)[0], abs_tol=1e-9)


def test_constant_input_gives_nan_correlation_and_empty_gives_nan():
    got = agreement(torch.ones(5), torch.rand(5))
    assert math.isnan(got["pearson"])
    assert math.isnan(got["spearman"])
    assert agreement(torch.empty(0), torch.empty(0))["n"] == 0


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="differ"):
        agreement(torch.rand(4), torch.rand(5))
