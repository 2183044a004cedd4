"""The ``qgfast`` command line: synthetic data, train-quality and eval-quality end to end."""

from __future__ import annotations

import json

import pytest

from qgfast.cli import main

pytest.importorskip("monai")
pytest.importorskip("PIL")


def test_synthetic_command_writes_a_dataset(tmp_path, capsys):
    assert main(["synthetic", "lesion2d", str(tmp_path / "d"), "--n", "2"]) == 0
    assert len(list((tmp_path / "d" / "imagesTr").glob("*.png"))) == 2
    assert "wrote 2 lesion2d cases" in capsys.readouterr().out


def test_train_quality_then_eval_quality_reproduces_the_report(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train-quality", "--synthetic", "lesion2d", "--n", "10", "--size", "32"]
    args += ["--epochs", "1", "--k", "3", "--eval-k", "3", "--backbone", "resnet10"]
    args += ["--weak-epochs", "1", "--p-weak", "0.3", "--out", str(out), "--quiet"]
    assert main(args) == 0
    for name in ("best.pt", "last.pt", "report.json", "calibration.png", "weak_models.pt"):
        assert (out / name).is_file(), name
    report = json.loads((out / "report.json").read_text())
    assert report["training"]["epochs_run"] == 1
    assert report["corrupted"]["n"] == 2 * 3  # 2 validation cases × k
    assert "held-out corrupted" in capsys.readouterr().out
    # the checkpoint records the split, preprocessing and corruption mix (weak models too)
    evaluate = ["eval-quality", str(out / "best.pt"), "--k", "3", "--out", str(tmp_path / "e")]
    assert main(evaluate) == 0
    again = json.loads((tmp_path / "e" / "report.json").read_text())
    assert again["corrupted"] == report["corrupted"]
    assert again["per_op"] == report["per_op"]


def test_train_quality_refuses_a_folder_without_labels(tmp_path):
    (tmp_path / "images").mkdir()
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "images" / "a.png")
    with pytest.raises(SystemExit, match="at least 2 labelled"):
        main(["train-quality", str(tmp_path), "--out", str(tmp_path / "o")])


def test_bad_size_is_refused(tmp_path):
    main(["synthetic", "lesion2d", str(tmp_path / "d"), "--n", "3"])
    with pytest.raises(SystemExit, match="does not suit 2D"):
        main(["train-quality", str(tmp_path / "d"), "--size", "8,8,8", "--out", str(tmp_path)])


def test_train_quality_twice_with_one_seed_gives_the_same_weights(tmp_path):
    import torch

    data = tmp_path / "data"
    main(["synthetic", "lesion2d", str(data), "--n", "6"])
    weights = []
    for run in ("a", "b"):
        args = ["train-quality", str(data), "--size", "32", "--epochs", "1", "--k", "2"]
        args += ["--eval-k", "2", "--backbone", "resnet10", "--p-weak", "0", "--quiet"]
        assert main([*args, "--out", str(tmp_path / run)]) == 0
        weights.append(torch.load(tmp_path / run / "last.pt", weights_only=True)["model"])
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
