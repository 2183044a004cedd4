"""Published weights for the predictor's backbone (docs/quality.md, "Pretrained backbones").

- ``imagenet`` (2D ResNet-18/34/50): torchvision's ImageNet-1k weights, fetched once into
  torch's hub cache (``torch.hub.get_dir()/checkpoints``) and checked against the hash in
  their file name. torchvision's ResNets and MONAI's share parameter names, so they load
  into the MONAI backbone unchanged; ``QualityPredictor.load_image_weights`` then fits
  conv1 to the image and mask channels.
- ``medicalnet`` (3D ResNet-10/18/34/50): Tencent's MedicalNet weights (23 datasets),
  through MONAI's downloader (needs ``huggingface_hub``). MedicalNet's 18 and 34 use the
  parameter-free "A" shortcut, so the predictor is built with it (``shortcut_for``).

Without a network, place the file in the cache folder the error names, or save any
ResNet state dict and pass its path (``--pretrained PATH``).
"""

from __future__ import annotations

from pathlib import Path

import torch

# torchvision's IMAGENET1K weights (ResNet-50: IMAGENET1K_V2, torchvision's default)
IMAGENET_URLS = {
    "resnet18": "https://download.pytorch.org/models/resnet18-f37072fd.pth",
    "resnet34": "https://download.pytorch.org/models/resnet34-b627a593.pth",
    "resnet50": "https://download.pytorch.org/models/resnet50-11ad3fa6.pth",
}
MEDICALNET_DEPTHS = {"resnet10": 10, "resnet18": 18, "resnet34": 34, "resnet50": 50}
SOURCES = ("imagenet", "medicalnet")


class PretrainedWeightsError(RuntimeError):
    """Published weights that cannot be had (no such weights, no network, no package)."""


def shortcut_for(source: str | None, backbone: str, spatial_dims: int) -> str:
    """The ResNet shortcut type the weights of ``source`` need ("B" unless MedicalNet's
    18/34, which were trained with the parameter-free "A")."""
    if source == "medicalnet" and spatial_dims == 3 and backbone in ("resnet18", "resnet34"):
        return "A"
    return "B"


# source → (its name, spatial dims, backbones it has, the other source to suggest)
_PUBLISHED = {
    "imagenet": ("ImageNet", 2, IMAGENET_URLS, "medicalnet"),
    "medicalnet": ("MedicalNet", 3, MEDICALNET_DEPTHS, "imagenet"),
}


def published_state_dict(source: str, backbone: str, spatial_dims: int) -> dict[str, torch.Tensor]:
    """The state dict of ``source`` weights for ``backbone`` (see the module docstring)."""
    if source not in _PUBLISHED:
        raise ValueError(f"pretrained source must be one of {SOURCES} or a file, got {source!r}")
    name, dims, available, other = _PUBLISHED[source]
    if spatial_dims != dims:
        raise PretrainedWeightsError(
            f"{name} weights are {dims}D; for a {spatial_dims}D predictor use --pretrained {other}"
        )
    if backbone not in available:
        raise PretrainedWeightsError(
            f"no {name} weights for {backbone}; use one of {sorted(available)} or --pretrained PATH"
        )
    if source == "imagenet":
        return _download(IMAGENET_URLS[backbone])
    try:
        from monai.networks.nets.resnet import get_pretrained_resnet_medicalnet

        return get_pretrained_resnet_medicalnet(
            MEDICALNET_DEPTHS[backbone], device="cpu", datasets23=True
        )
    except Exception as err:  # ImportError, hub and network errors alike
        raise PretrainedWeightsError(
            f"could not fetch MedicalNet {backbone} weights through MONAI ({err}); they "
            "need `pip install huggingface_hub` and access to huggingface.co, or save "
            "the state dict where the network is and pass --pretrained PATH"
        ) from err


def _download(url: str) -> dict[str, torch.Tensor]:
    cache = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[1]
    try:
        return torch.hub.load_state_dict_from_url(
            url, map_location="cpu", progress=False, check_hash=True, weights_only=True
        )
    except Exception as err:  # URLError, socket timeouts, a failed hash check
        raise PretrainedWeightsError(
            f"could not download {url} ({err}); fetch it where the network is and either "
            f"place it at {cache} or pass its path as --pretrained PATH"
        ) from err


def load_pretrained(predictor, source: str | Path) -> list[str]:
    """Load ``source`` (``imagenet``, ``medicalnet`` or a state-dict file) into the
    predictor's backbone; returns the backbone keys left at their initial values."""
    if str(source) in SOURCES:
        state = published_state_dict(str(source), predictor.backbone_name, predictor.spatial_dims)
    else:
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(
                f"--pretrained {source}: no such file (or use one of {', '.join(SOURCES)})"
            )
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "state_dict" in state:  # a training checkpoint
            state = state["state_dict"]
    return predictor.load_image_weights(state)
