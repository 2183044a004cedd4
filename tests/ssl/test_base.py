"""Bad input to the frameworks: clear ValueErrors naming the problem."""

import pytest
import torch

from qgfast import ssl
from qgfast.ssl.base import confidence, hard_labels, probabilities
from tests.ssl.helpers import TinyNet, batches, guide


def _mt(**kw):
    return ssl.MeanTeacher(TinyNet(), steps_per_epoch=1, **kw)


def test_output_channels_that_disagree_with_the_labels() -> None:
    labeled, unlabeled = batches(classes=4)  # labels up to 3, model outputs 2 channels
    with pytest.raises(ValueError, match="output channels disagree with the labels"):
        _mt().step(labeled, unlabeled)


def test_labels_out_of_range_for_a_binary_sigmoid_model() -> None:
    labeled, unlabeled = batches(classes=3)
    fw = ssl.Supervised(TinyNet(out_ch=1))
    with pytest.raises(ValueError, match=r"classes 0\.\.1"):
        fw.step(labeled, unlabeled)


@pytest.mark.parametrize(
    ("labeled", "match"),
    [
        ({"label": torch.zeros(2, 1, 9, 11, dtype=torch.uint8)}, "no 'image'"),
        ({"image": torch.zeros(2, 1, 9, 11)}, "no 'label'"),
        ([torch.zeros(2, 1, 9, 11)], "must be a dict"),
        ({"image": torch.zeros(2, 1, 9, 11, dtype=torch.long), "label": None}, "float tensor"),
        (
            {"image": torch.zeros(2, 1, 9, 11), "label": torch.zeros(2, 9, 11, dtype=torch.long)},
            r"label map \[B, 1, \*S\]",
        ),
        (
            {
                "image": torch.zeros(2, 1, 9, 11),
                "label": torch.zeros(2, 1, 9, 10, dtype=torch.long),
            },
            "spatial size",
        ),
    ],
)
def test_malformed_labeled_batches(labeled, match) -> None:
    _, unlabeled = batches()
    with pytest.raises(ValueError, match=match):
        _mt().step(labeled, unlabeled)


def test_unlabeled_batch_problems() -> None:
    labeled, _ = batches()
    with pytest.raises(ValueError, match="needs an unlabeled batch"):
        _mt().step(labeled)
    with pytest.raises(ValueError, match="unlabeled batch has no 'image'"):
        _mt().step(labeled, {"img": torch.zeros(2, 1, 9, 11)})
    with pytest.raises(ValueError, match="differ in channels"):
        _mt().step(labeled, {"image": torch.zeros(2, 3, 9, 11)})
    ssl.Supervised(TinyNet()).step(labeled)  # SUP needs none


def test_guide_for_another_number_of_classes_or_channels() -> None:
    labeled, unlabeled = batches()
    with pytest.raises(ValueError, match="scores masks of 3 classes but the model predicts 2"):
        _mt(quality=guide(num_classes=3)).step(labeled, unlabeled)
    with pytest.raises(ValueError, match="reads 3 image channel"):
        _mt(quality=guide(image_channels=3)).step(labeled, unlabeled)
    fw = ssl.Supervised(TinyNet(), qar=guide(dims=3), qar_ramp=1.0)
    with pytest.raises(ValueError, match="predictor is 3D, the images are 2D"):
        fw.step(labeled, unlabeled)


def test_model_output_problems() -> None:
    labeled, _unlabeled = batches()

    class Pooled(torch.nn.Module):
        def forward(self, x):
            return x[..., ::2, ::2]

    class Deep(torch.nn.Module):
        def forward(self, x):
            return [x, x]

    with pytest.raises(ValueError, match="at the input's batch and spatial size"):
        ssl.Supervised(Pooled()).step(labeled)
    with pytest.raises(ValueError, match="turn deep supervision off"):
        ssl.Supervised(Deep()).step(labeled)


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: ssl.PseudoLabel(TinyNet()), "choose PseudoLabel"),
        (lambda: ssl.PseudoLabel(TinyNet(), "quality"), "needs quality="),
        (lambda: ssl.PseudoLabel(TinyNet(), "threshold", quality=guide()), "mode='quality' only"),
        (lambda: ssl.PseudoLabel(TinyNet(), "vote"), "mode must be"),
        (lambda: ssl.UncertaintyMeanTeacher(TinyNet()), "total_steps="),
        (lambda: ssl.MeanTeacher(TinyNet(), noise_std=-1), "noise_std"),
        (lambda: ssl.MeanTeacher(TinyNet(), ema_decay=1.0), "ema_decay"),
        (lambda: ssl.Supervised(TinyNet(), lambda_ce=0, lambda_dice=0), "not both 0"),
        (lambda: ssl.ContrastiveConsistency(TinyNet(), features="nope"), "no module named"),
        (lambda: ssl.Supervised(TinyNet(), steps_per_epoch=0), "steps_per_epoch"),
    ],
)
def test_bad_options(build, match) -> None:
    with pytest.raises(ValueError, match=match):
        build()


def test_set_epoch_clashes_with_steps_per_epoch() -> None:
    with pytest.raises(ValueError, match="clashes"):
        _mt().set_epoch(3)


def test_float_labels_must_be_whole() -> None:
    labeled, _unlabeled = batches()
    labeled["label"] = labeled["label"].float()
    ssl.Supervised(TinyNet()).step(labeled)  # MONAI-style float labels are fine
    labeled["label"] = labeled["label"] * 0.5
    with pytest.raises(ValueError, match="whole class numbers"):
        ssl.Supervised(TinyNet()).step(labeled)


def test_activation_helpers() -> None:
    z = torch.tensor([[[-1.0, 2.0]], [[0.5, -3.0]]])[:, :, None]  # (2, 1, 1, 2): binary
    p = probabilities(z)
    assert torch.equal(hard_labels(p)[:, 0], (z[:, 0] > 0).to(torch.uint8))
    torch.testing.assert_close(confidence(p), torch.maximum(p, 1 - p)[:, 0])
    z3 = torch.randn(2, 3, 4, 5)
    assert torch.equal(hard_labels(probabilities(z3))[:, 0].long(), z3.argmax(1))
