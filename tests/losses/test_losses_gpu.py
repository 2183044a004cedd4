"""GPU checks at realistic shapes (run by benchmarks/gpu_check.sh): the Triton path against
the reference by the tolerance rule, low precision, and CUDA-graph capture (no host sync)."""

import pytest
import torch

from qgfast import losses
from qgfast.backend import use_backend
from qgfast.testing import assert_matches_reference

pytestmark = pytest.mark.gpu


def _on(backend_name, fn):
    def run(*args):
        with use_backend(backend_name):
            return fn(*args)

    return run


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(4, 2, 112, 112, 80), (24, 4, 256, 256)], ids=["LA", "ACDC"])
def test_dice_ce_realistic_shapes(shape, dtype) -> None:
    b, c, *s = shape
    x = (2 * torch.randn(shape, device="cuda")).to(dtype)
    y = torch.randint(0, c, (b, 1, *s), device="cuda", dtype=torch.uint8)
    loss = losses.DiceCELoss(to_onehot_y=True, softmax=True)
    assert_matches_reference(
        _on("triton", loss), _on("reference", loss), [x, y], differentiable=[0]
    )


def test_quality_weighted_loss_realistic_shape() -> None:
    x = 2 * torch.randn(4, 3, 96, 96, 96, device="cuda")
    y = torch.randint(0, 3, (4, 1, 96, 96, 96), device="cuda")
    w = torch.tensor([0.0, 0.3, 0.9, 1.0], device="cuda")

    def qw(x, y):
        return losses.quality_weighted_dice_ce(x, y, w)

    assert_matches_reference(_on("triton", qw), _on("reference", qw), [x, y], differentiable=[0])


def test_dice_scores_paper_setting_equals_reference() -> None:
    gt = (torch.rand(32, 1, 224, 224, device="cuda") > 0.7).to(torch.uint8)
    cand = (torch.rand(32 * 50, 1, 224, 224, device="cuda") > 0.7).to(torch.uint8)

    def scores(c, g):
        return losses.dice_scores(c, g, num_classes=1, repeats=50)

    torch.testing.assert_close(_on("triton", scores)(cand, gt), _on("reference", scores)(cand, gt))


def test_quality_weighted_loss_is_cuda_graph_capturable() -> None:
    x = torch.randn(2, 3, 32, 32, 16, device="cuda", requires_grad=True)
    y = torch.randint(0, 3, (2, 1, 32, 32, 16), device="cuda")
    w = torch.tensor([0.4, 0.8], device="cuda")
    loss_fn = losses.QualityWeightedDiceCELoss()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(2):  # warm-up: Triton compiles outside the capture
            loss_fn(x, y, w).backward()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    x.grad = None
    with torch.cuda.graph(graph):
        static_loss = loss_fn(x, y, w)
        static_loss.backward()
    with torch.no_grad():
        x.copy_(torch.randn_like(x))
    x.grad.zero_()
    graph.replay()
    xe = x.detach().clone().requires_grad_()
    eager = loss_fn(xe, y, w)
    eager.backward()
    torch.testing.assert_close(static_loss, eager)
    torch.testing.assert_close(x.grad, xe.grad)
