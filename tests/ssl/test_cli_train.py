"""``qgfast train`` and ``qgfast predict`` end to end on a tiny synthetic set, and the
bad-input errors they give before any training starts."""

from __future__ import annotations

import json

import pytest

from qgfast.cli import main

pytest.importorskip("monai")
TINY = [
    "--synthetic",
    "organ3d",
    "--n",
    "8",
    "--synthetic-size",
    "24,24,16",
    "--labeled",
    "2",
    "--channels",
    "4,8",
    "--patch",
    "16,16,16",
    "--max-steps",
    "4",
    "--val-every",
    "2",
    "--no-progress",
]


def test_train_then_predict_end_to_end(tmp_path, capsys) -> None:
    run = tmp_path / "run"
    assert main(["train", "--method", "mt", *TINY, "--out", str(run)]) == 0
    for name in ("best.pt", "last.pt", "config.json", "split.json", "history.jsonl", "report.json"):
        assert (run / name).is_file(), name
    report = json.loads((run / "report.json").read_text())
    assert report["training"]["steps"] == 4
    assert "test_best" in report
    assert "test_final" in report
    split = json.loads((run / "split.json").read_text())
    used = [set(split[r]["cases"]) for r in ("labeled", "unlabeled", "validation", "test")]
    assert sum(map(len, used)) == 8
    assert len(set().union(*used)) == 8
    assert "Dice" in capsys.readouterr().out
    pred = tmp_path / "pred"
    assert (
        main(
            [
                "predict",
                "--ckpt",
                str(run / "best.pt"),
                "--data",
                str(run / "data"),
                "--out",
                str(pred),
            ]
        )
        == 0
    )
    assert len(list(pred.glob("*.nii.gz"))) == 8
    assert json.loads((pred / "metrics.json").read_text())["metrics"]["cases"] == 8


def test_bad_input_is_refused_before_training(tmp_path, capsys) -> None:
    run = tmp_path / "run"
    assert main(["train", "--method", "mt", *TINY[:-5], "--labeled", "7", "--out", str(run)]) == 2
    assert "only" in capsys.readouterr().err
    (tmp_path / "cfg.json").write_text('{"lerning_rate": 1}')
    assert main(["train", "--config", str(tmp_path / "cfg.json"), "--out", str(run)]) == 2
    assert "unknown config key" in capsys.readouterr().err
    assert main(["train", "--method", "mt-qw", *TINY, "--out", str(tmp_path / "q")]) == 2
    assert "needs --quality" in capsys.readouterr().err
