"""evaluate_predictor: report structure, probes, per-op rows, the calibration plot."""

from __future__ import annotations

import math

import pytest
import torch

pytest.importorskip("monai")

from qgfast.corrupt import VQMGenerator
from qgfast.quality import QualityPredictor, evaluate_predictor


def _data(batches=2, n=3, classes=2):
    gen = torch.Generator().manual_seed(0)
    out = []
    for _ in range(batches):
        labels = torch.zeros(n, 1, 32, 32, dtype=torch.uint8)
        labels[:, :, 8:24, 10:22] = torch.randint(1, classes, (n, 1, 1, 1), generator=gen).to(
            torch.uint8
        )
        out.append({"image": torch.randn(n, 1, 32, 32, generator=gen), "label": labels})
    return out


def test_report_has_every_probe_and_plot(tmp_path):
    g = QualityPredictor(2, 1, 2, backbone="resnet10").eval()
    report = evaluate_predictor(g, _data(), k=5, plot=tmp_path / "cal.png")
    for probe in ("corrupted", "blackout", "shuffle"):
        assert report[probe]["n"] == 2 * 3 * 5
        assert 0 <= report[probe]["mae"] <= 1
    assert set(report["per_op"]) <= set(VQMGenerator().op_names)
    assert sum(row["n"] for row in report["per_op"].values()) == 30
    assert report["weak_model"]["n"] == 0
    assert math.isnan(report["weak_model"]["mae"])
    dep = report["image_dependence"]
    assert dep["blackout_mae_increase"] == pytest.approx(
        report["blackout"]["mae"] - report["corrupted"]["mae"]
    )
    assert (tmp_path / "cal.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_same_seed_same_report_and_blackout_really_blanks():
    g = QualityPredictor(2, 1, 2, backbone="resnet10").eval()
    a = evaluate_predictor(g, _data(), k=3, seed=5)
    b = evaluate_predictor(g, _data(), k=3, seed=5)
    assert a["corrupted"] == b["corrupted"]
    zeroed = [{"image": torch.zeros_like(d["image"]), "label": d["label"]} for d in _data()]
    c = evaluate_predictor(g, zeroed, k=3, seed=5)
    assert c["corrupted"]["mae"] == pytest.approx(a["blackout"]["mae"], abs=1e-6)


def test_per_class_predictor_scores_every_class():
    g = QualityPredictor(2, 1, 3, backbone="resnet10", per_class=True).eval()
    report = evaluate_predictor(g, _data(classes=3), k=2)
    assert report["corrupted"]["n"] == 2 * 3 * 2 * 2  # images × k × foreground classes


def test_single_image_batches_skip_the_shuffle_probe():
    g = QualityPredictor(2, 1, 2, backbone="resnet10").eval()
    report = evaluate_predictor(g, _data(n=1), k=2)
    assert report["corrupted"]["n"] == 4
    assert report["shuffle"]["n"] == 0


def test_empty_data_is_refused():
    g = QualityPredictor(2, 1, 2, backbone="resnet10").eval()
    with pytest.raises(ValueError, match="no batches"):
        evaluate_predictor(g, [], k=2)
