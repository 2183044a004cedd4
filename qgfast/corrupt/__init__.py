"""Mask corruption ops and the VQM generator (docs/method.md, "The corruption generator h").

Available now:
- morphology: ``erode``, ``dilate``, ``open``, ``close`` (``opening``/``closing`` are the
  same functions under names that do not shadow the builtin ``open``);
- structure: ``add_blobs`` (holes and islands: balls, or axis-aligned ellipsoids);
- whole-mask: ``invert``, ``empty``, ``full``, ``bernoulli_noise``, ``rectangle_dropout``,
  ``bounding_box``;
- geometry: ``shift``, ``scale``, ``rotate``, ``random_affine``;
- boundary: ``gaussian_smooth``, ``jagged_band``, ``elastic``, ``grid_distortion``;
- shape replacements: ``gaussian_blob``, ``circular_blob``;
- components: ``keep_largest_component``, ``drop_random_component``;
- cross-image: ``cross_image_swap``;
- shape approximation: ``fitted_ellipse`` (2D/3D), ``convex_hull`` and ``polygon`` (2D);
- ``VQMGenerator``: the paper's category mixture and weighted pool over all of the above,
  K copies per mask with their hard-Dice quality targets (binary masks or label maps).
Random ops take a ``seed``; a sample's result depends only on (seed, its batch index).
"""

from qgfast.corrupt.approx import convex_hull, fitted_ellipse, polygon
from qgfast.corrupt.blobs import add_blobs
from qgfast.corrupt.components import drop_random_component, keep_largest_component
from qgfast.corrupt.geometry import random_affine, rotate, scale, shift
from qgfast.corrupt.morphology import closing, dilate, erode, opening
from qgfast.corrupt.shapes import circular_blob, gaussian_blob
from qgfast.corrupt.simple import (
    bernoulli_noise,
    bounding_box,
    empty,
    full,
    invert,
    rectangle_dropout,
)
from qgfast.corrupt.smooth import gaussian_smooth, jagged_band
from qgfast.corrupt.vqm import VQMGenerator, VQMResult
from qgfast.corrupt.warp import cross_image_swap, elastic, grid_distortion

open = opening  # the public name (like erode, dilate, close); `opening` spells it out
close = closing

__all__ = [
    "VQMGenerator",
    "VQMResult",
    "add_blobs",
    "bernoulli_noise",
    "bounding_box",
    "circular_blob",
    "close",
    "closing",
    "convex_hull",
    "cross_image_swap",
    "dilate",
    "drop_random_component",
    "elastic",
    "empty",
    "erode",
    "fitted_ellipse",
    "full",
    "gaussian_blob",
    "gaussian_smooth",
    "grid_distortion",
    "invert",
    "jagged_band",
    "keep_largest_component",
    "open",
    "opening",
    "polygon",
    "random_affine",
    "rectangle_dropout",
    "rotate",
    "scale",
    "shift",
]
