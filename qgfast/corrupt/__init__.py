"""Mask corruption ops and (with issue 4) the variable-quality-mask (VQM) generator.

Available now: morphology — ``erode``, ``dilate``, ``open``, ``close`` (``opening`` and
``closing`` are the same functions under names that do not shadow the builtin ``open``).
"""

from qgfast.corrupt.morphology import closing, dilate, erode, opening

open = opening  # the API contract's name (DESIGN.md)
close = closing

__all__ = ["close", "closing", "dilate", "erode", "open", "opening"]
