"""The paper's corruption pool and category mixture (docs/method.md, "The corruption generator
h"), as data: every op is a name, a weight and a function of (masks, seed, scale) where
``scale`` converts the paper's pixel sizes at 224 × 224 to the input's resolution.

Morphology uses the release's square (cube) kernels by default; ``footprint="ball"`` in
``default_pool`` switches to discs/balls. Convex hull and polygon exist in 2D only, so a 3D
pool leaves them out (the weights of the others are renormalised by the sampling).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from qgfast.corrupt import (
    approx,
    blobs,
    components,
    geometry,
    morphology,
    shapes,
    simple,
    smooth,
    warp,
)

OpFn = Callable[[torch.Tensor, int, float], torch.Tensor]


@dataclass(frozen=True)
class Op:
    name: str
    weight: float
    fn: OpFn
    spatial_dims: tuple[int, ...] = (2, 3)


def _px(size: float, scale: float, minimum: int = 1) -> int:
    """A size in pixels at 224² converted to this resolution (at least ``minimum``)."""
    return max(minimum, round(size * scale))


def _odd(k: int, scale: float) -> int:
    """A kernel side at 224² converted, kept odd and >= 3."""
    side = max(3, round(k * scale))
    return side if side % 2 else side + 1


def _morph(kind: str, k: int, footprint: str) -> OpFn:
    ops = {
        "erode": morphology.erode,
        "dilate": morphology.dilate,
        "open": morphology.opening,
        "close": morphology.closing,
    }
    return lambda m, s, sc: ops[kind](m, _odd(k, sc) // 2, shape=footprint)


def _holes(n: int, lo: int, hi: int, mode: str = "hole") -> OpFn:
    def fn(m: torch.Tensor, s: int, sc: float) -> torch.Tensor:
        return blobs.add_blobs(m, n, (_px(lo, sc), _px(hi, sc)), mode, seed=s)

    return fn


def _holes_and_islands(m: torch.Tensor, s: int, sc: float) -> torch.Tensor:
    r = (_px(5, sc), _px(15, sc))
    return blobs.add_blobs(blobs.add_blobs(m, 2, r, "hole", seed=s), 2, r, "island", seed=s + 1)


def single_pool(footprint: str = "cube") -> list[Op]:
    """The single-op pool with the paper's weights."""
    return [
        Op("erode5", 1.0, _morph("erode", 5, footprint)),
        Op("erode7", 1.0, _morph("erode", 7, footprint)),
        Op("erode9", 0.8, _morph("erode", 9, footprint)),
        Op("dilate5", 1.0, _morph("dilate", 5, footprint)),
        Op("dilate7", 1.0, _morph("dilate", 7, footprint)),
        Op("dilate9", 0.8, _morph("dilate", 9, footprint)),
        Op("open5", 0.5, _morph("open", 5, footprint)),
        Op("close5", 0.5, _morph("close", 5, footprint)),
        Op("ellipse", 1.0, lambda m, s, sc: approx.fitted_ellipse(m)),
        Op("polygon3", 0.5, lambda m, s, sc: approx.polygon(m, 3), (2,)),
        Op("polygon5", 0.8, lambda m, s, sc: approx.polygon(m, 5), (2,)),
        Op("polygon8", 0.8, lambda m, s, sc: approx.polygon(m, 8), (2,)),
        Op("convex_hull", 1.0, lambda m, s, sc: approx.convex_hull(m), (2,)),
        Op("bounding_box", 0.5, lambda m, s, sc: simple.bounding_box(m)),
        Op("jagged3", 1.0, lambda m, s, sc: smooth.jagged_band(m, _odd(3, sc), seed=s)),
        Op("jagged5", 1.0, lambda m, s, sc: smooth.jagged_band(m, _odd(5, sc), seed=s)),
        Op("smooth11", 0.8, lambda m, s, sc: smooth.gaussian_smooth(m, _odd(11, sc))),
        Op("smooth15", 0.8, lambda m, s, sc: smooth.gaussian_smooth(m, _odd(15, sc))),
        Op(
            "elastic_light",
            1.0,
            lambda m, s, sc: warp.elastic(m, 30 * sc, max(1.0, 4 * sc), seed=s),
        ),
        Op(
            "elastic_heavy",
            0.8,
            lambda m, s, sc: warp.elastic(m, 60 * sc, max(1.0, 5 * sc), seed=s),
        ),
        Op("grid_light", 1.0, lambda m, s, sc: warp.grid_distortion(m, 5, 0.2, seed=s)),
        Op("grid_heavy", 0.7, lambda m, s, sc: warp.grid_distortion(m, 8, 0.4, seed=s)),
        Op("holes2_small", 1.0, _holes(2, 3, 8)),
        Op("holes3_large", 0.8, _holes(3, 8, 15)),
        Op("islands2", 1.0, _holes(2, 3, 8, "island")),
        Op("holes_islands", 1.0, _holes_and_islands),
        Op("keep_largest", 0.8, lambda m, s, sc: components.keep_largest_component(m)),
        Op("drop_component", 0.5, lambda m, s, sc: components.drop_random_component(m, seed=s)),
        Op("rect_dropout", 0.8, lambda m, s, sc: simple.rectangle_dropout(m, (0.1, 0.3), seed=s)),
        Op("shift10", 1.0, lambda m, s, sc: geometry.shift(m, 0.1, seed=s)),
        Op("shift20", 0.8, lambda m, s, sc: geometry.shift(m, 0.2, seed=s)),
        Op("shift30", 0.5, lambda m, s, sc: geometry.shift(m, 0.3, seed=s)),
        Op("scale_down", 1.0, lambda m, s, sc: geometry.scale(m, (0.75, 0.9), seed=s)),
        Op("scale_up", 1.0, lambda m, s, sc: geometry.scale(m, (1.1, 1.25), seed=s)),
        Op("rotate15", 1.0, lambda m, s, sc: geometry.rotate(m, 15.0, seed=s)),
        Op("rotate30", 0.7, lambda m, s, sc: geometry.rotate(m, 30.0, seed=s)),
        Op("affine", 0.8, lambda m, s, sc: geometry.random_affine(m, seed=s)),
        Op("gauss_blob", 1.0, lambda m, s, sc: shapes.gaussian_blob(m, 1.0)),
        Op("gauss_blob_wide", 0.7, lambda m, s, sc: shapes.gaussian_blob(m, 1.2)),
        Op("circular_blob", 0.8, lambda m, s, sc: shapes.circular_blob(m)),
    ]


BLOB_OPS = ("gauss_blob", "gauss_blob_wide", "circular_blob")


def heavy_pool(footprint: str = "cube") -> list[Op]:
    return [
        Op("erode11", 0.5, _morph("erode", 11, footprint)),
        Op("dilate11", 0.5, _morph("dilate", 11, footprint)),
        Op("shift40", 1.0, lambda m, s, sc: geometry.shift(m, 0.4, seed=s)),
        Op("scale_heavy_down", 1.0, lambda m, s, sc: geometry.scale(m, (0.5, 0.7), seed=s)),
        Op("scale_heavy_up", 1.0, lambda m, s, sc: geometry.scale(m, (1.4, 1.6), seed=s)),
        Op("grid12", 1.0, lambda m, s, sc: warp.grid_distortion(m, 12, 0.6, seed=s)),
        Op("holes5", 1.0, _holes(5, 10, 20)),
    ]


def catastrophic_pool() -> list[Op]:
    return [
        Op("invert", 1.0, lambda m, s, sc: simple.invert(m)),
        Op("empty", 0.5, lambda m, s, sc: simple.empty(m)),
        Op("full", 0.5, lambda m, s, sc: simple.full(m)),
        Op("noise", 0.3, lambda m, s, sc: simple.bernoulli_noise(m, 0.5, seed=s)),
    ]


def blob_category_pool() -> list[Op]:
    """The blob category: uniform over its five replacements."""
    return [
        Op("cat_gauss_blob", 1.0, lambda m, s, sc: shapes.gaussian_blob(m, 1.0)),
        Op("cat_gauss_blob_large", 1.0, lambda m, s, sc: shapes.gaussian_blob(m, 1.5)),
        Op("cat_circular_blob", 1.0, lambda m, s, sc: shapes.circular_blob(m)),
        Op("cat_convex_hull", 1.0, lambda m, s, sc: approx.convex_hull(m), (2,)),
        Op("cat_bounding_box", 1.0, lambda m, s, sc: simple.bounding_box(m)),
    ]


CATEGORIES = {
    "identity": 0.20,
    "single": 0.28,
    "chained": 0.18,
    "cross_image": 0.10,
    "heavy": 0.12,
    "catastrophic": 0.05,
    "blob": 0.07,
}
