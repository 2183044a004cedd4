"""Weak-model snapshots: schedule scaling, frozen outputs, saved with the checkpoint."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("monai")

from qgfast.quality import (
    PredictorTrainConfig,
    QualityPredictor,
    generator_from_checkpoint,
    load_predictor,
    train_predictor,
    train_weak_models,
)
from qgfast.quality.weak import snapshot_epochs


def test_snapshot_epochs_scale_the_paper_schedule():
    assert snapshot_epochs(20) == [1, 3, 5, 10, 15, 20]
    assert snapshot_epochs(40) == [2, 6, 10, 20, 30, 40]
    assert snapshot_epochs(3) == [1, 2, 3]
    with pytest.raises(ValueError, match="epochs"):
        snapshot_epochs(0)


def _blobs(n=4, size=16, classes=2):
    images = torch.randn(n, 1, size, size)
    labels = torch.randint(0, classes, (n, 1, size, size), dtype=torch.uint8)
    return [{"image": images, "label": labels}]


@pytest.mark.parametrize(("classes", "channels"), [(2, 1), (3, 3)])
def test_snapshots_are_frozen_with_the_right_outputs(classes, channels):
    models = train_weak_models(
        _blobs(classes=classes),
        spatial_dims=2,
        in_channels=1,
        num_classes=classes,
        epochs=3,
        channels=(4, 8),
    )
    assert len(models) == 3
    out = models[0](torch.randn(2, 1, 16, 16))
    assert out.shape == (2, channels, 16, 16)
    assert all(not m.training for m in models)
    assert all(not p.requires_grad for m in models for p in m.parameters())
    # snapshots differ: training went on between them
    assert not torch.equal(models[0](torch.ones(1, 1, 16, 16)), models[2](torch.ones(1, 1, 16, 16)))


def test_training_with_weak_models_saves_them_for_evaluation(tmp_path):
    g = QualityPredictor(2, 1, 2, backbone="resnet10")
    config = PredictorTrainConfig(
        epochs=1, k=4, p_weak=0.5, weak_epochs=2, weak_channels=(4, 8), val_k=1
    )
    result = train_predictor(g, _blobs(size=32), config=config, out_dir=tmp_path, progress=False)
    assert len(result["generator"].weak_models) == 2
    _, ckpt = load_predictor(tmp_path / "best.pt")
    assert ckpt["generator"]["weak_models"] == "weak_models.pt"
    generator = generator_from_checkpoint(ckpt, tmp_path)
    assert generator.p_weak == 0.5
    assert len(generator.weak_models) == 2
    x = torch.randn(1, 1, 32, 32)
    torch.testing.assert_close(generator.weak_models[1](x), result["generator"].weak_models[1](x))


def test_weak_unet_takes_sides_its_strides_do_not_divide(tmp_path):
    from qgfast.quality.weak import build_weak_unet, load_weak_models, save_weak_models

    net = build_weak_unet(3, 1, 4, (4, 8, 16, 32)).eval()
    x = torch.randn(1, 1, 20, 18, 13)  # 2^3 divides none of them
    out = net(x)
    assert out.shape == (1, 4, 20, 18, 13)
    # padding is on the far side only: the output at the origin corner sees the same input
    padded = torch.nn.functional.pad(x, (0, 3, 0, 6, 0, 4))
    torch.testing.assert_close(out, net(padded)[..., :20, :18, :13])
    # and the snapshots still save and load with MONAI's parameter names
    config = {"spatial_dims": 3, "in_channels": 1, "num_classes": 4, "channels": (4, 8, 16, 32)}
    save_weak_models([net], tmp_path / "w.pt", config)
    (loaded,) = load_weak_models(tmp_path / "w.pt")
    torch.testing.assert_close(loaded(x), out)
