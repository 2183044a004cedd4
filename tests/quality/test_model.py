"""QualityPredictor: shapes, value range, mask encodings, pretrained loading, errors."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("monai")

from qgfast.quality import QualityPredictor


@pytest.mark.parametrize(
    ("dims", "shape", "classes", "per_class", "out"),
    [
        (2, (3, 33, 29), 2, False, (3,)),
        (2, (2, 35, 35), 3, True, (2, 2)),
        (3, (2, 17, 19, 15), 4, False, (2,)),
        (3, (2, 17, 19, 15), 4, True, (2, 3)),
    ],
)
def test_scores_shape_and_range(dims, shape, classes, per_class, out):
    channels = 1 if dims == 3 else 3
    g = QualityPredictor(dims, channels, classes, backbone="resnet10", per_class=per_class).eval()
    images = torch.randn(shape[0], channels, *shape[1:])
    masks = torch.randint(0, classes, (shape[0], 1, *shape[1:]))
    q = g.score(images, masks)
    assert q.shape == out
    assert q.dtype == torch.float32
    assert bool(((q >= 0) & (q <= 1)).all())


def test_label_map_full_softmax_and_foreground_channels_agree():
    g = QualityPredictor(2, 3, 3, backbone="resnet10").eval()
    images = torch.randn(2, 3, 32, 32)
    labels = torch.randint(0, 3, (2, 1, 32, 32))
    onehot = torch.nn.functional.one_hot(labels[:, 0], 3).movedim(-1, 1).float()
    a = g.score(images, labels)
    b = g(torch.cat([images, onehot], 1))  # with the background channel
    c = g(torch.cat([images, onehot[:, 1:]], 1))  # foreground channels only
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, c)


def test_bool_masks_are_label_maps():
    g = QualityPredictor(2, 1, 2, backbone="resnet10").eval()
    images = torch.randn(2, 1, 32, 32)
    masks = torch.rand(2, 1, 32, 32) > 0.5
    torch.testing.assert_close(g.score(images, masks), g.score(images, masks.float()))


@pytest.mark.parametrize(
    ("images", "masks", "match"),
    [
        (torch.randn(2, 1, 32, 32), torch.zeros(2, 1, 32, 32, dtype=torch.long), "channels"),
        (torch.randn(2, 3, 32, 32), torch.full((2, 1, 32, 32), 2), "num_classes=2"),
        (torch.randn(2, 3, 32, 32), torch.zeros(2, 2, 32, 32, dtype=torch.long), r"\[B, 1"),
        (torch.randn(2, 3, 32, 32), torch.rand(2, 3, 32, 32), "input has 6 channels"),
        (torch.randn(2, 3, 32, 32), torch.zeros(3, 1, 32, 32, dtype=torch.long), "do not match"),
        (torch.randn(2, 3, 32, 32, 4), torch.zeros(2, 1, 32, 32, 4, dtype=torch.long), "2D"),
    ],
)
def test_bad_inputs_name_the_problem(images, masks, match):
    g = QualityPredictor(2, 3, 2, backbone="resnet10").eval()
    with pytest.raises(ValueError, match=match):
        g.score(images, masks)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"spatial_dims": 1}, "spatial_dims"),
        ({"num_classes": 1}, "num_classes >= 2"),
        ({"backbone": "vgg"}, "backbone must be one of"),
        ({"shortcut_type": "C"}, "shortcut_type"),
    ],
)
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        QualityPredictor(**kwargs)


def test_pretrained_image_weights_load_with_mean_mask_channel():
    from monai.networks.nets import resnet18

    # an image-only ResNet-18 with torchvision's key names (MONAI's match them)
    source = resnet18(spatial_dims=2, n_input_channels=3, bias_downsample=False, num_classes=10)
    state = source.state_dict()
    g = QualityPredictor(2, 3, 2)
    missing = g.load_image_weights(state)
    assert missing == []
    w = g.backbone.conv1.weight
    torch.testing.assert_close(w[:, :3], state["conv1.weight"])
    torch.testing.assert_close(w[:, 3], state["conv1.weight"].mean(1))
    torch.testing.assert_close(g.backbone.layer4[1].conv2.weight, state["layer4.1.conv2.weight"])
    with pytest.raises(ValueError, match="name none of"):
        g.load_image_weights({"conv1.weight": torch.zeros(64, 3, 7, 7)})
    with pytest.raises(ValueError, match=r"2D conv1\.weight"):
        g.load_image_weights({"conv1.weight": torch.zeros(64, 3, 7, 7, 7)})


def test_rgb_weights_fit_a_grayscale_predictor_exactly():
    from monai.networks.nets import resnet18

    state = resnet18(spatial_dims=2, n_input_channels=3, bias_downsample=False).state_dict()
    g = QualityPredictor(2, 1, 2)
    assert g.load_image_weights(state) == []
    gray = torch.rand(2, 1, 21, 19)
    w = g.backbone.conv1.weight
    # the gray image through the fitted conv1 = the gray image in all three RGB channels
    # through the original one
    got = torch.nn.functional.conv2d(gray, w[:, :1])
    want = torch.nn.functional.conv2d(gray.expand(-1, 3, -1, -1), state["conv1.weight"])
    torch.testing.assert_close(got, want)


def test_medicalnet_shaped_3d_weights_load_with_the_a_shortcut():
    from monai.networks.nets import resnet18

    # MedicalNet's ResNet-18: one input channel, parameter-free "A" shortcuts
    source = resnet18(spatial_dims=3, n_input_channels=1, shortcut_type="A", feed_forward=False)
    g = QualityPredictor(3, 2, 3, backbone="resnet18", shortcut_type="A")
    assert g.load_image_weights({f"module.{k}": v for k, v in source.state_dict().items()}) == []
    w = g.backbone.conv1.weight
    torch.testing.assert_close(w[:, 0], source.conv1.weight[:, 0] / 2)
    torch.testing.assert_close(w[:, 2:], source.conv1.weight.expand(-1, 2, -1, -1, -1))
    assert g.config["shortcut_type"] == "A"
