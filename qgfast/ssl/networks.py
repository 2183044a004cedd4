"""Segmentation networks by name (MONAI's) or by import path, as ``qgfast train --model``
takes them, and the spec a checkpoint stores so ``qgfast predict`` can rebuild the net.

Names: ``unet`` (MONAI ``UNet``, residual units, batch norm, dropout 0.1 so UA-MT's
teacher passes differ), ``basicunet``, ``vnet`` (the UA-MT / SSL4MIS 3D net; needs 3D
patches divisible by 16), ``attention-unet``. ``channels`` sets the width per level
(``--channels 16,32,64,128,256``). Any other network: ``package.module:factory``, called
as ``factory(spatial_dims=, in_channels=, out_channels=, **kwargs)`` and returning an
``nn.Module`` that maps [B, C_in, *S] to logits [B, C_out, *S].
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

from torch import nn

NETWORKS = ("unet", "basicunet", "vnet", "attention-unet")
DEFAULT_CHANNELS = (16, 32, 64, 128, 256)


def build_network(
    name: str,
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    channels: Sequence[int] | None = None,
    **kwargs: Any,
) -> nn.Module:
    """A fresh network (weights drawn from the current torch RNG state)."""
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
    if ":" in name:
        return _from_factory(name, spatial_dims, in_channels, out_channels, channels, kwargs)
    from monai.networks import nets

    ch = tuple(channels or DEFAULT_CHANNELS)
    if len(ch) < 2:
        raise ValueError(f"channels needs at least two levels, got {ch}")
    common = {"spatial_dims": spatial_dims, "in_channels": in_channels}
    if name == "unet":
        opts = {"num_res_units": 2, "norm": "batch", "dropout": 0.1} | kwargs
        return nets.UNet(
            **common,
            out_channels=out_channels,
            channels=ch,
            strides=(2,) * (len(ch) - 1),
            **opts,
        )
    if name == "attention-unet":
        return nets.AttentionUnet(
            **common,
            out_channels=out_channels,
            channels=ch,
            strides=(2,) * (len(ch) - 1),
            **({"dropout": 0.1} | kwargs),
        )
    if name == "basicunet":
        if len(ch) != 6:
            ch = (*ch[:5], ch[0]) if len(ch) >= 5 else (32, 32, 64, 128, 256, 32)
        return nets.BasicUNet(**common, out_channels=out_channels, features=ch, **kwargs)
    if name == "vnet":
        if spatial_dims != 3:
            raise ValueError("vnet is a 3D network; pick unet for 2D data")
        return nets.VNet(**common, out_channels=out_channels, **kwargs)
    raise ValueError(f"unknown network {name!r}: one of {', '.join(NETWORKS)} or pkg.module:fn")


def _from_factory(spec, spatial_dims, in_channels, out_channels, channels, kwargs) -> nn.Module:
    module_name, _, attr = spec.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise ValueError(
            f"--model {spec!r}: cannot import {attr} from {module_name} ({err})"
        ) from None
    if channels is not None:
        kwargs = {"channels": tuple(channels), **kwargs}
    model = factory(
        spatial_dims=spatial_dims, in_channels=in_channels, out_channels=out_channels, **kwargs
    )
    if not isinstance(model, nn.Module):
        raise ValueError(f"--model {spec!r} returned {type(model).__name__}, not an nn.Module")
    return model


def min_divisor(name: str, channels: Sequence[int] | None) -> int:
    """What every patch side must be a multiple of for the net's down-sampling."""
    if name == "vnet":
        return 16
    if ":" in name:
        return 1
    if name == "basicunet":
        return 16
    return 2 ** (len(tuple(channels or DEFAULT_CHANNELS)) - 1)
