"""train_predictor: learns on synthetic 2D data, checkpoints, resumes, stops early, refuses
bad input. One short CPU run (module fixture) backs the learning assertions."""

from __future__ import annotations

import shutil

import pytest
import torch
from torch.utils.data import DataLoader

pytest.importorskip("monai")
pytest.importorskip("PIL")

from qgfast.data import CaseDataset, find_cases, make_synthetic_dataset
from qgfast.quality import (
    PredictorTrainConfig,
    QualityPredictor,
    evaluate_predictor,
    load_predictor,
    train_predictor,
)

SHORT = {"epochs": 3, "k": 16, "batch_size": 32, "p_weak": 0.0, "t0": 3}


@pytest.fixture(scope="module")
def lesions(tmp_path_factory):
    root = make_synthetic_dataset("lesion2d", 40, tmp_path_factory.mktemp("data"), seed=1, size=64)
    cases = find_cases(root)
    train = DataLoader(CaseDataset(cases[:32], 64), batch_size=8, shuffle=True)
    val = DataLoader(CaseDataset(cases[32:], 64), batch_size=8)
    return train, val


@pytest.fixture(scope="module")
def trained(lesions, tmp_path_factory):
    train, val = lesions
    torch.manual_seed(1)
    out = tmp_path_factory.mktemp("run")
    g = QualityPredictor(2, 3, 2, backbone="resnet10")
    result = train_predictor(
        g, train, val, config=PredictorTrainConfig(**SHORT), out_dir=out, progress=False
    )
    return g, result, out


def test_short_run_predicts_held_out_quality_and_reads_the_image(trained, lesions):
    g, result, _ = trained
    report = evaluate_predictor(g, lesions[1], generator=result["generator"], k=16)
    assert report["corrupted"]["n"] == 8 * 16
    assert report["corrupted"]["pearson"] >= 0.8, report["corrupted"]
    assert report["corrupted"]["mae"] <= 0.15, report["corrupted"]
    # image dependence: no image, or the wrong image, must make the predictions worse
    assert report["blackout"]["mae"] > report["corrupted"]["mae"] + 0.03
    assert report["shuffle"]["mae"] > report["corrupted"]["mae"] + 0.03


def test_history_and_checkpoint_round_trip(trained, lesions):
    g, result, out = trained
    assert result["epochs_run"] == 3
    assert len(result["history"]) == 3
    row = result["history"][-1]
    for key in ("train_loss", "val_loss", "val_mae", "val_pearson", "lr", "masks_per_s"):
        assert key in row
    assert (out / "best.pt").is_file()
    assert (out / "last.pt").is_file()
    assert any((out / "tb").iterdir())  # TensorBoard event file
    loaded, ckpt = load_predictor(out / "best.pt")
    assert ckpt["best_epoch"] == result["best_epoch"]
    assert ckpt["train"]["k"] == 16
    assert ckpt["generator"]["footprint"] == "cube"
    batch = next(iter(lesions[1]))
    g.eval()
    torch.testing.assert_close(
        loaded.score(batch["image"], batch["label"]), g.score(batch["image"], batch["label"])
    )


def test_resume_continues_where_the_run_stopped(trained, lesions, tmp_path):
    _, result, out = trained
    shutil.copytree(out, tmp_path / "run")
    g = QualityPredictor(2, 3, 2, backbone="resnet10")
    config = PredictorTrainConfig(**{**SHORT, "epochs": 4})
    resumed = train_predictor(
        g,
        lesions[0],
        lesions[1],
        config=config,
        out_dir=tmp_path / "run",
        resume=True,
        progress=False,
    )
    assert resumed["epochs_run"] == 4
    assert len(resumed["history"]) == 4
    assert resumed["history"][:3] == result["history"]
    other = QualityPredictor(2, 3, 2, backbone="resnet18")
    with pytest.raises(ValueError, match="was trained with predictor"):
        train_predictor(
            other,
            lesions[0],
            config=config,
            out_dir=tmp_path / "run",
            resume=True,
            progress=False,
        )


def test_early_stopping_when_validation_stalls(lesions):
    g = QualityPredictor(2, 3, 2, backbone="resnet10")
    config = PredictorTrainConfig(epochs=6, k=1, lr=0.0, patience=1, p_weak=0.0, val_k=1)
    small = DataLoader(CaseDataset(lesions[0].dataset.cases[:4], 32), batch_size=4)
    result = train_predictor(g, small, small, config=config, progress=False)
    assert result["stopped_early"]
    assert result["epochs_run"] == 2
    assert result["best_epoch"] == 1


def test_bad_input_is_refused(lesions):
    g = QualityPredictor(2, 1, 2, backbone="resnet10")
    config = PredictorTrainConfig(epochs=1, k=1, p_weak=0.0)
    with pytest.raises(ValueError, match="expects 1"):
        train_predictor(g, lesions[0], config=config, progress=False)
    unlabelled = [{"image": torch.zeros(2, 1, 32, 32)}]
    with pytest.raises(ValueError, match="no 'label'"):
        train_predictor(g, unlabelled, config=config, progress=False)
    with pytest.raises(ValueError, match="resume needs out_dir"):
        train_predictor(g, unlabelled, config=config, resume=True, progress=False)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"k": 0}, "k must be >= 1"), ({"amp": "fp8"}, "amp must be"), ({"p_weak": 2}, "p_weak")],
)
def test_bad_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PredictorTrainConfig(**kwargs)


def test_trains_from_an_image_stream(lesions):
    from qgfast.data import ImageStream

    cases = lesions[0].dataset.cases[:8]
    stream = ImageStream(cases, 32, labeled_batch_size=4, seed=0)
    g = QualityPredictor(2, 3, 2, backbone="resnet10")
    config = PredictorTrainConfig(epochs=2, k=2, p_weak=0.0, val_k=1)
    result = train_predictor(g, stream, stream, config=config, progress=False)
    assert result["epochs_run"] == 2
    assert result["history"][-1]["val_n"] == 8 * 1  # one epoch of the stream, k = 1
