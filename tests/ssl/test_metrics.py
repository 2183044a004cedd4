"""Metric conventions on hand-made cases: values MONAI gives, millimetres from the spacing,
per case then averaged, and the stated values for empty masks."""

from __future__ import annotations

import math

import pytest
import torch

from qgfast.ssl.metrics import case_metrics, image_diagonal, summarise

pytest.importorskip("monai")


def square(shape, lo, hi, value=1):
    m = torch.zeros(shape, dtype=torch.uint8)
    m[lo[0] : hi[0], lo[1] : hi[1]] = value
    return m


def test_overlapping_squares_by_hand() -> None:
    label = square((20, 20), (4, 4), (12, 12))  # 64 px
    pred = square((20, 20), (6, 4), (14, 12))  # shifted 2 rows: 48 px overlap
    m = case_metrics(pred, label, 2)
    assert m["dice"] == [pytest.approx(2 * 48 / 128)]
    assert m["jaccard"] == [pytest.approx(48 / 80)]
    assert m["hd95"] == [pytest.approx(2.0)]  # every boundary point is at most 2 px away
    assert m["empty_prediction"] == [0.0]
    assert m["empty_label"] == [0.0]


def test_distances_are_in_millimetres_of_the_spacing() -> None:
    label = square((20, 20), (4, 4), (12, 12))
    pred = square((20, 20), (6, 4), (14, 12))  # the shift is along axis 0
    assert case_metrics(pred, label, 2, spacing=(0.5, 3.0))["hd95"] == [pytest.approx(1.0)]
    assert case_metrics(pred, label, 2, spacing=(2.0, 1.0))["hd95"] == [pytest.approx(4.0)]


def test_empty_masks_have_stated_values_never_a_silent_zero() -> None:
    empty = torch.zeros(10, 12, 8, dtype=torch.uint8)
    full = empty.clone()
    full[2:5, 2:5, 2:5] = 1
    spacing = (1.0, 2.0, 3.0)
    diagonal = math.sqrt((9 * 1.0) ** 2 + (11 * 2.0) ** 2 + (7 * 3.0) ** 2)
    assert image_diagonal(empty.shape, spacing) == pytest.approx(diagonal)
    both = case_metrics(empty, empty, 2, spacing)
    assert both["dice"] == [1.0]
    assert both["jaccard"] == [1.0]
    assert both["hd95"] == [0.0]
    assert both["asd"] == [0.0]
    for pred, label in ((empty, full), (full, empty)):
        one = case_metrics(pred, label, 2, spacing)
        assert one["dice"] == [0.0]
        assert one["jaccard"] == [0.0]
        assert one["hd95"] == [pytest.approx(diagonal)]
        assert one["asd"] == [pytest.approx(diagonal)]
    summary = summarise([both, case_metrics(empty, full, 2, spacing)])
    assert summary["hd95_empty"] == 1
    assert summary["asd_empty"] == 1
    assert summary["dice"] == pytest.approx(0.5)


def test_multi_class_scores_each_foreground_class_and_averages_per_case() -> None:
    label = square((16, 16), (2, 2), (8, 8), 1) + square((16, 16), (10, 10), (14, 14), 2)
    perfect = label.clone()
    half = label.clone()
    half[label == 2] = 0  # class 2 missed
    a = case_metrics(perfect, label, 3)
    b = case_metrics(half, label, 3)
    assert a["dice"] == [1.0, 1.0]
    assert b["dice"] == [1.0, 0.0]
    s = summarise([a, b])
    assert s["dice_per_class"] == [1.0, 0.5]
    assert s["dice"] == 0.75
    assert s["cases"] == 2
    assert s["dice_sd"] == pytest.approx(0.25)  # per-case means 1.0 and 0.5


def test_bad_metric_input_is_refused() -> None:
    a = torch.zeros(4, 4, dtype=torch.uint8)
    with pytest.raises(ValueError, match="differ in shape"):
        case_metrics(a, torch.zeros(4, 5, dtype=torch.uint8), 2)
    with pytest.raises(ValueError, match=r"0\.\.1"):
        case_metrics(a + 2, a, 2)
    with pytest.raises(ValueError, match="spacing"):
        case_metrics(a, a, 2, spacing=(1.0,))
