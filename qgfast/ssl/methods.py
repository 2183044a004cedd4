"""The methods of ``qgfast train --method``: each name → a framework built from the
model(s), the quality guide and the run's settings (docs/training.md, "Methods").

Names follow the paper's abbreviations in lower case: the baselines (sup, pl-t, pl-c, mt,
ua-mt, ict, cps, cl), the quality-guided variants (pl-qw and every ``-qw``) that weight
each sample's unsupervised term by the guide, and qar (supervised + quality-aware
regularisation). Frameworks keep their own defaults (docs/frameworks.md) unless the run
overrides the ramp.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from qgfast.quality.guide import QualityGuide
from qgfast.ssl.base import Framework
from qgfast.ssl.contrastive import ContrastiveConsistency
from qgfast.ssl.cps import CrossPseudoSupervision
from qgfast.ssl.interpolation import InterpolationConsistency
from qgfast.ssl.mean_teacher import MeanTeacher, UncertaintyMeanTeacher
from qgfast.ssl.pseudo_label import PseudoLabel
from qgfast.ssl.supervised import Supervised

Builder = Callable[..., Framework]


def _ua_mt(model, quality=None, total_steps=None, **kw):
    return UncertaintyMeanTeacher(model, quality=quality, total_steps=total_steps, **kw)


# name → (builder(model, quality=, **kw), needs a guide, trains two networks)
METHODS: dict[str, tuple[Builder, bool, bool]] = {
    "sup": (lambda m, quality=None, **kw: Supervised(m, **kw), False, False),
    "qar": (lambda m, quality=None, **kw: Supervised(m, qar=quality, **kw), True, False),
    "pl-t": (lambda m, quality=None, **kw: PseudoLabel(m, "threshold", **kw), False, False),
    "pl-c": (lambda m, quality=None, **kw: PseudoLabel(m, "confidence", **kw), False, False),
    "pl-qw": (lambda m, quality=None, **kw: PseudoLabel(m, quality=quality, **kw), True, False),
    "mt": (lambda m, quality=None, **kw: MeanTeacher(m, **kw), False, False),
    "mt-qw": (lambda m, quality=None, **kw: MeanTeacher(m, quality=quality, **kw), True, False),
    "ua-mt": (lambda m, quality=None, **kw: _ua_mt(m, **kw), False, False),
    "ua-mt-qw": (_ua_mt, True, False),
    "ict": (lambda m, quality=None, **kw: InterpolationConsistency(m, **kw), False, False),
    "ict-qw": (
        lambda m, quality=None, **kw: InterpolationConsistency(m, quality=quality, **kw),
        True,
        False,
    ),
    "cps": (
        lambda m, quality=None, model_b=None, **kw: CrossPseudoSupervision(m, model_b, **kw),
        False,
        True,
    ),
    "cps-qw": (
        lambda m, quality=None, model_b=None, **kw: CrossPseudoSupervision(
            m, model_b, quality=quality, **kw
        ),
        True,
        True,
    ),
    "cl": (lambda m, quality=None, **kw: ContrastiveConsistency(m, **kw), False, False),
    "cl-qw": (
        lambda m, quality=None, **kw: ContrastiveConsistency(m, quality=quality, **kw),
        True,
        False,
    ),
}


def needs_guide(method: str) -> bool:
    return _entry(method)[1]


def two_networks(method: str) -> bool:
    return _entry(method)[2]


def _entry(method: str) -> tuple[Builder, bool, bool]:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    return METHODS[method]


def build_framework(
    method: str,
    model: nn.Module,
    quality: QualityGuide | None = None,
    *,
    model_b: nn.Module | None = None,
    total_steps: int | None = None,
    **kw: Any,
) -> Framework:
    """The framework of ``method`` around ``model`` (and ``model_b`` for CPS).

    quality: the guide of the quality-guided methods (required by them, refused by the rest
        so a run never silently ignores it). total_steps: UA-MT's threshold ramp length.
    """
    builder, wants_guide, two = _entry(method)
    if wants_guide and quality is None:
        raise ValueError(f"method {method!r} needs a quality predictor (--quality CKPT)")
    if not wants_guide and quality is not None:
        raise ValueError(
            f"method {method!r} does not use a quality predictor; drop --quality or pick a "
            "quality-guided method (pl-qw, mt-qw, ..., qar)"
        )
    if two:
        kw["model_b"] = model_b
    elif model_b is not None:
        raise ValueError(f"method {method!r} trains one network; model_b is for cps")
    if method.startswith("ua-mt"):
        kw["total_steps"] = total_steps
    return builder(model, quality=quality, **kw)
