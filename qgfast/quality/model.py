"""The quality predictor g: (image, mask) → predicted Dice in [0, 1] (docs/method.md, phase 1).

A MONAI ResNet (2D or 3D) over image channels ⊕ mask channels, global average pooling and
the paper's head Dropout(0.15) → Linear(·, 256) → ReLU → Dropout(0.075) → Linear(256, m)
→ sigmoid, with m = 1 (one score) or C − 1 (``per_class``: one score per foreground
class, the multi-class extension).

Mask channels are the C − 1 foreground channels. ``forward`` takes the concatenated input
[B, image_channels + M, *S] with M = C − 1 (foreground probabilities or one-hot) or M = C
(a full softmax / one-hot, background dropped) — so ``qar_loss`` can hand it
``images ⊕ probs`` directly. ``score(images, masks)`` also takes integer label maps.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

BACKBONES = ("resnet10", "resnet18", "resnet34", "resnet50")


class QualityPredictor(nn.Module):
    """g(image ⊕ mask) → quality [B] (or [B, C − 1] with ``per_class``), in [0, 1].

    spatial_dims: 2 or 3. image_channels: e.g. 3 for RGB, 1 for one MR sequence.
    num_classes: C of the masks it scores, background included (2 = binary).
    backbone: a MONAI ResNet depth; conv1 has stride 2 and a max-pool follows, as in the
        ImageNet ResNets (MONAI's default stride 1 would cost 4× (8× in 3D) the compute).
    shortcut_type: MONAI's downsampling shortcut, "B" (1×1 conv) or "A" (parameter-free,
        what MedicalNet's 3D ResNet-18/34 weights need; ``qgfast.quality.pretrained``).
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        image_channels: int = 3,
        num_classes: int = 2,
        backbone: str = "resnet18",
        per_class: bool = False,
        dropout: tuple[float, float] = (0.15, 0.075),
        hidden: int = 256,
        shortcut_type: str = "B",
    ) -> None:
        super().__init__()
        from monai.networks.nets import resnet

        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        if image_channels < 1 or num_classes < 2:
            raise ValueError(
                f"need image_channels >= 1 and num_classes >= 2, got {image_channels}, "
                f"{num_classes}"
            )
        if backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {BACKBONES}, got {backbone!r}")
        if shortcut_type not in ("A", "B"):
            raise ValueError(f"shortcut_type must be 'A' or 'B', got {shortcut_type!r}")
        self.config: dict[str, Any] = {
            "spatial_dims": spatial_dims,
            "image_channels": image_channels,
            "num_classes": num_classes,
            "backbone": backbone,
            "per_class": per_class,
            "dropout": tuple(dropout),
            "hidden": hidden,
            "shortcut_type": shortcut_type,
        }
        self.backbone_name = backbone
        self.spatial_dims = spatial_dims
        self.image_channels = image_channels
        self.num_classes = num_classes
        self.mask_channels = num_classes - 1
        self.per_class = per_class
        # bias-free downsampling convs as in torchvision, so its weights load unchanged
        self.backbone = getattr(resnet, backbone)(
            spatial_dims=spatial_dims,
            n_input_channels=image_channels + self.mask_channels,
            conv1_t_size=7,
            conv1_t_stride=2,
            feed_forward=False,
            bias_downsample=False,
            shortcut_type=shortcut_type,
        )
        last = self.backbone.layer4[-1]  # basic block: conv2 is last; bottleneck: conv3
        features = getattr(last, "conv3", last.conv2).out_channels
        self.head = nn.Sequential(
            nn.Dropout(dropout[0]),
            nn.Linear(features, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout[1]),
            nn.Linear(hidden, self.mask_channels if per_class else 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, image_channels + M, *S] → quality [B] or [B, C − 1] (``per_class``)."""
        if x.dim() != self.spatial_dims + 2:
            raise ValueError(
                f"expected a [B, C, {'H, W' if self.spatial_dims == 2 else 'H, W, D'}] input "
                f"for a {self.spatial_dims}D predictor, got shape {tuple(x.shape)}"
            )
        extra = x.shape[1] - self.image_channels
        if extra == self.num_classes:  # full probabilities / one-hot: drop the background
            x = torch.cat([x[:, : self.image_channels], x[:, self.image_channels + 1 :]], 1)
        elif extra != self.mask_channels:
            raise ValueError(
                f"input has {x.shape[1]} channels: expected {self.image_channels} image "
                f"channels + {self.mask_channels} foreground mask channels (or "
                f"{self.num_classes} with the background)"
            )
        q = torch.sigmoid(self.head(self.backbone(x)).float())
        return q if self.per_class else q[:, 0]

    def mask_input(self, masks: torch.Tensor) -> torch.Tensor:
        """Masks as the float channels g reads: label maps [B, 1, *S] (integer/bool) →
        foreground one-hot [B, C − 1, *S]; float masks pass through unchanged."""
        if masks.is_floating_point():
            return masks
        if masks.dim() != self.spatial_dims + 2 or masks.shape[1] != 1:
            raise ValueError(f"label maps must be [B, 1, *S], got {tuple(masks.shape)}")
        labels = masks[:, 0].long()
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= self.num_classes):
            raise ValueError(
                f"masks hold labels {int(labels.min())}..{int(labels.max())} but the "
                f"predictor scores num_classes={self.num_classes}"
            )
        onehot = F.one_hot(labels, self.num_classes).movedim(-1, 1)
        return onehot[:, 1:].float()

    def score(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Quality of (images [B, image_channels, *S], masks) — masks as label maps or
        float channels (see ``forward``)."""
        if images.dim() != self.spatial_dims + 2:
            raise ValueError(
                f"images must be [B, C, *S] with {self.spatial_dims} spatial dims for a "
                f"{self.spatial_dims}D predictor, got shape {tuple(images.shape)}"
            )
        if images.shape[1] != self.image_channels:
            raise ValueError(
                f"images have {images.shape[1]} channels, the predictor expects "
                f"{self.image_channels}"
            )
        m = self.mask_input(masks)
        if m.shape[0] != images.shape[0] or m.shape[2:] != images.shape[2:]:
            raise ValueError(
                f"masks {tuple(masks.shape)} do not match images {tuple(images.shape)}"
            )
        return self(torch.cat([images, m.to(images.dtype)], 1))

    def load_image_weights(self, state_dict: dict[str, torch.Tensor]) -> list[str]:
        """Load a pretrained image-only ResNet (torchvision or MONAI names; ``fc`` and a
        ``module.``/``backbone.`` prefix ignored). Returns the backbone keys left at their
        initial values.

        conv1 is fitted to the predictor's channels: when the weights' image channels match
        they are copied; otherwise (RGB weights for a grayscale scan, MedicalNet's one
        channel for several sequences) every image channel gets their sum divided by the
        channel count, so an image whose channels are equal excites conv1 exactly as the
        same image fed to the original network in all its channels. Each mask channel
        starts as the mean of the original image weights (as the paper does).
        """
        own = self.backbone.state_dict()
        state = {
            k.removeprefix("module.").removeprefix("backbone."): v for k, v in state_dict.items()
        }
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        w = state.get("conv1.weight")
        if w is None or w.dim() != self.spatial_dims + 2:
            got = None if w is None else tuple(w.shape)
            raise ValueError(
                f"pretrained weights need a {self.spatial_dims}D conv1.weight, got {got}"
            )
        image = w
        if w.shape[1] != self.image_channels:
            image = (w.sum(1, keepdim=True) / self.image_channels).expand(
                -1, self.image_channels, *w.shape[2:]
            )
        mean = w.mean(1, keepdim=True).expand(-1, self.mask_channels, *w.shape[2:])
        state["conv1.weight"] = torch.cat([image, mean], 1)
        known = [k for k in state if k in own]
        if len(known) <= 1:
            raise ValueError(
                f"the pretrained weights name none of the {self.backbone_name} backbone's "
                f"parameters beyond conv1 (first keys: {list(state)[:3]})"
            )
        bad = [k for k in known if own[k].shape != state[k].shape]
        if bad:
            raise ValueError(f"pretrained weights do not fit the backbone: {bad[:5]}")
        result = self.backbone.load_state_dict({k: state[k] for k in known}, strict=False)
        return list(result.missing_keys)
