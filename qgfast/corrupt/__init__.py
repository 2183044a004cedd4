"""Mask corruption ops (METHOD.md, "The corruption generator h"); the VQM generator that
mixes them arrives with the rest of issue 4.

Available now:
- morphology: ``erode``, ``dilate``, ``open``, ``close`` (``opening``/``closing`` are the
  same functions under names that do not shadow the builtin ``open``);
- structure: ``add_blobs`` (holes and islands);
- whole-mask: ``invert``, ``empty``, ``full``, ``bernoulli_noise``, ``rectangle_dropout``,
  ``bounding_box``;
- geometry: ``shift``, ``scale``, ``rotate``, ``random_affine``;
- boundary: ``gaussian_smooth``, ``jagged_band``;
- shape replacements: ``gaussian_blob``, ``circular_blob``.
Random ops take a ``seed``; a sample's result depends only on (seed, its batch index).
"""

from qgfast.corrupt.blobs import add_blobs
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

open = opening  # the API contract's name (DESIGN.md)
close = closing

__all__ = [
    "add_blobs",
    "bernoulli_noise",
    "bounding_box",
    "circular_blob",
    "close",
    "closing",
    "dilate",
    "empty",
    "erode",
    "full",
    "gaussian_blob",
    "gaussian_smooth",
    "invert",
    "jagged_band",
    "open",
    "opening",
    "random_affine",
    "rectangle_dropout",
    "rotate",
    "scale",
    "shift",
]
