"""Published backbone weights: sources, the cache and offline errors (no network used)."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("monai")

from qgfast.quality import QualityPredictor
from qgfast.quality import pretrained as pre


def _imagenet_like(depth: str = "resnet18") -> dict[str, torch.Tensor]:
    from monai.networks.nets import resnet

    net = getattr(resnet, depth)(
        spatial_dims=2, n_input_channels=3, bias_downsample=False, num_classes=1000
    )
    return net.state_dict()  # torchvision's names and shapes, fc included


def test_imagenet_loads_the_published_file_through_the_hub_cache(monkeypatch):
    asked = {}

    def fake_download(url, **kwargs):
        asked["url"], asked["check_hash"] = url, kwargs.get("check_hash")
        return _imagenet_like()

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", fake_download)
    g = QualityPredictor(2, 1, 2, backbone="resnet18")
    assert pre.load_pretrained(g, "imagenet") == []
    assert asked == {"url": pre.IMAGENET_URLS["resnet18"], "check_hash": True}


def test_offline_download_says_where_to_put_the_file(monkeypatch):
    def offline(url, **kwargs):
        raise OSError("Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    g = QualityPredictor(2, 3, 2, backbone="resnet34")
    with pytest.raises(pre.PretrainedWeightsError, match=r"resnet34-b627a593\.pth.*--pretrained"):
        pre.load_pretrained(g, "imagenet")


@pytest.mark.parametrize(
    ("source", "dims", "backbone", "match"),
    [
        ("imagenet", 2, "resnet10", "no ImageNet weights for resnet10"),
        ("imagenet", 3, "resnet18", "2D"),
        ("medicalnet", 2, "resnet18", "3D"),
    ],
)
def test_sources_that_do_not_exist_are_named(source, dims, backbone, match):
    with pytest.raises(pre.PretrainedWeightsError, match=match):
        pre.published_state_dict(source, backbone, dims)


def test_medicalnet_goes_through_monai(monkeypatch):
    from monai.networks.nets import resnet

    net = resnet.resnet10(spatial_dims=3, n_input_channels=1, feed_forward=False)
    seen = {}

    def fake(depth, device, datasets23):
        seen["depth"] = depth
        return {f"module.{k}": v for k, v in net.state_dict().items()}

    monkeypatch.setattr(resnet, "get_pretrained_resnet_medicalnet", fake)
    g = QualityPredictor(3, 1, 2, backbone="resnet10")
    assert pre.load_pretrained(g, "medicalnet") == []
    assert seen == {"depth": 10}
    assert pre.shortcut_for("medicalnet", "resnet18", 3) == "A"
    assert pre.shortcut_for("medicalnet", "resnet10", 3) == "B"
    assert pre.shortcut_for("imagenet", "resnet18", 2) == "B"


def test_a_local_file_or_checkpoint_loads(tmp_path):
    state = _imagenet_like()
    torch.save(state, tmp_path / "plain.pt")
    torch.save({"state_dict": state, "epoch": 3}, tmp_path / "ckpt.pt")
    for name in ("plain.pt", "ckpt.pt"):
        g = QualityPredictor(2, 3, 2)
        assert pre.load_pretrained(g, tmp_path / name) == []
        torch.testing.assert_close(g.backbone.conv1.weight[:, :3], state["conv1.weight"])
    with pytest.raises(FileNotFoundError, match="no such file"):
        pre.load_pretrained(QualityPredictor(2, 3, 2), tmp_path / "missing.pt")


def test_urls_match_torchvisions_when_it_is_installed():
    models = pytest.importorskip("torchvision.models")
    assert {
        "resnet18": models.ResNet18_Weights.IMAGENET1K_V1.url,
        "resnet34": models.ResNet34_Weights.IMAGENET1K_V1.url,
        "resnet50": models.ResNet50_Weights.IMAGENET1K_V2.url,
    } == pre.IMAGENET_URLS
