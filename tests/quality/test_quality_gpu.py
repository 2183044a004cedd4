"""GPU checks for the predictor (run by benchmarks/gpu_check.sh when monai is present):
a short CUDA training run drawing masks with the Triton corruption path under bf16
autocast, and QAR gradients on CUDA."""

import pytest
import torch

pytestmark = pytest.mark.gpu
pytest.importorskip("monai")

from qgfast.quality import (  # noqa: E402
    PredictorTrainConfig,
    QualityGuide,
    QualityPredictor,
    train_predictor,
)


def _batches(n=8, size=96):
    gen = torch.Generator().manual_seed(0)
    labels = torch.zeros(n, 1, size, size, dtype=torch.uint8)
    for i in range(n):
        r, c = torch.randint(10, size - 40, (2,), generator=gen).tolist()
        labels[i, :, r : r + 30, c : c + 25] = 1
    images = torch.randn(n, 3, size, size, generator=gen) + 2 * labels
    return [{"image": images, "label": labels}]


def test_cuda_training_run_draws_masks_on_the_gpu():
    g = QualityPredictor(2, 3, 2, backbone="resnet18")
    config = PredictorTrainConfig(epochs=2, k=16, p_weak=0.0, val_k=4)
    data = _batches()
    result = train_predictor(g, data, data, config=config, device="cuda", progress=False)
    assert next(g.parameters()).is_cuda
    row = result["history"][-1]
    assert row["generate_masks_per_s"] > 0
    assert row["val_n"] == 8 * 4
    assert 0 <= row["val_mae"] <= 1


def test_qar_on_cuda_reaches_probs_only():
    guide = QualityGuide(QualityPredictor(2, 3, 2, backbone="resnet10").cuda())
    logits = torch.randn(2, 2, 64, 64, device="cuda", requires_grad=True)
    with torch.autocast("cuda", torch.bfloat16):
        loss = guide.qar_loss(torch.randn(2, 3, 64, 64, device="cuda"), logits.softmax(1))
    loss.backward()
    assert logits.grad is not None
    assert all(p.grad is None for p in guide.predictor.parameters())
