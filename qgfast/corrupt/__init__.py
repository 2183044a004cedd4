"""Mask corruption ops and (with issue 4) the variable-quality-mask (VQM) generator.

Available now: morphology — ``erode``, ``dilate``, ``open``, ``close`` (``opening`` and
``closing`` are the same functions under names that do not shadow the builtin ``open``) —
and ``add_blobs`` (holes and islands).
"""

from qgfast.corrupt.blobs import add_blobs
from qgfast.corrupt.morphology import closing, dilate, erode, opening

open = opening  # the API contract's name (DESIGN.md)
close = closing

__all__ = ["add_blobs", "close", "closing", "dilate", "erode", "open", "opening"]
