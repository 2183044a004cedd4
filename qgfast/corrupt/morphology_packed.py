"""Erosion and dilation of CPU label maps on bit-packed rows: the CPU fast path of
``qgfast.corrupt.morphology``.

The algorithm is the reference's (``qgfast.reference.morphology``): running OR/AND along
the last axis for every half-length 0..r, then one lookup per chord of the ball (or one
run per other axis for a cube), with 0 outside the volume. Here each row is packed 64
voxels to a machine word, so a pass ORs/ANDs 64 voxels an instruction and touches 1/8 of
the bytes of the uint8 reference; moving a row by s voxels is a shift of its words with
the carry taken from the neighbouring word. Binary masks take one plane; a label map takes
one plane per class present (``MAX_PLANES`` at most, beyond that the caller falls back to
the reference), which gives the reference's semantics exactly:

    erosion:  a voxel keeps its label v iff its whole structuring element is v (the eroded
              plane of class v), else it becomes 0;
    dilation: a background voxel takes the largest label whose dilated plane covers it;
              foreground voxels keep theirs.

Bits of a row's last word past the row's end are 0 in a packed plane and are only ever
moved towards higher positions, never back into the row, so they stand for the 0 border.
"""

from __future__ import annotations

import numpy as np
import torch

from qgfast.reference.morphology import Footprint, chord_half_lengths

MAX_PLANES = 8  # more classes than this: one plane each costs more than the reference
_WORD = 64
_LARGEST_BINCOUNT_LABEL = 4096  # labels in [0, this]: counted with bincount, else unique


def pack_rows(plane: np.ndarray) -> np.ndarray:
    """(N, *S) 0/1 or bool → (N, *S[:-1], ⌈W/64⌉) little-endian uint64: voxel i of a row
    is bit i % 64 of word i // 64; bits past the row's end are 0."""
    packed = np.packbits(plane, axis=-1, bitorder="little")
    pad = -packed.shape[-1] % (_WORD // 8)
    if pad:
        packed = np.pad(packed, [(0, 0)] * (packed.ndim - 1) + [(0, pad)])
    return np.ascontiguousarray(packed).view("<u8")


def unpack_rows(words: np.ndarray, width: int) -> np.ndarray:
    """Inverse of ``pack_rows``: (..., words) → (..., width) uint8 0/1."""
    raw = np.ascontiguousarray(words, dtype="<u8").view(np.uint8)
    return np.unpackbits(raw, axis=-1, count=width, bitorder="little")


def _moved(words: np.ndarray, by: int) -> np.ndarray:
    """The rows moved by ``by`` voxels: out[i] = in[i − by] (by > 0: towards higher
    positions; by < 0: towards lower), 0 shifted in."""
    out = np.zeros_like(words)
    n = words.shape[-1]
    q, b = divmod(abs(by), _WORD)
    if q >= n:
        return out
    bits, carry = np.uint64(b), np.uint64(_WORD - b)
    if by > 0:
        src = words[..., : n - q]
        if b == 0:
            out[..., q:] = src
        else:
            np.left_shift(src, bits, out=out[..., q:])
            out[..., q + 1 :] |= src[..., :-1] >> carry
    else:
        src = words[..., q:]
        if b == 0:
            out[..., : n - q] = src
        else:
            np.right_shift(src, bits, out=out[..., : n - q])
            out[..., : n - q - 1] |= src[..., 1:] << carry
    return out


def _row_runs(words: np.ndarray, radius: int, op: np.ufunc) -> list[np.ndarray]:
    """op over windows [−h, h] along the rows, for h = 0..radius."""
    runs = [words]
    for h in range(1, radius + 1):
        run = op(runs[-1], _moved(words, h))
        op(run, _moved(words, -h), out=run)
        runs.append(run)
    return runs


def _padded(words: np.ndarray, radius: int, axes: range) -> np.ndarray:
    """Zero-padded by ``radius`` on each of ``axes`` (the 0 border)."""
    pad = [(radius, radius) if a in axes else (0, 0) for a in range(words.ndim)]
    return np.pad(words, pad)


def filter_plane(plane: np.ndarray, radius: int, shape: Footprint, erode: bool) -> np.ndarray:
    """Binary erosion/dilation (border 0) of (N, *S) planes → (N, *S) uint8 0/1."""
    op = np.bitwise_and if erode else np.bitwise_or
    width = plane.shape[-1]
    words = pack_rows(plane)
    r = radius
    runs = _row_runs(words, r, op)
    leading = plane.shape[1:-1]  # spatial axes other than the rows, at words axes 1..
    if shape == "cube":
        out = runs[r]
        for axis, n in enumerate(leading, start=1):
            padded = _padded(out, r, range(axis, axis + 1))
            window = [slice(None)] * padded.ndim
            window[axis] = slice(0, n)
            out = padded[tuple(window)].copy()
            for s in range(1, 2 * r + 1):
                window[axis] = slice(s, s + n)
                op(out, padded[tuple(window)], out=out)
        return unpack_rows(out, width)
    axes = range(1, 1 + len(leading))
    padded_runs = [_padded(run, r, axes) for run in runs]
    out = None
    for offset, h in chord_half_lengths(r, len(leading)):
        index = tuple(slice(r + o, r + o + n) for o, n in zip(offset, leading, strict=True))
        tap = padded_runs[h][(slice(None), *index)]
        if out is None:
            out = tap.copy()
        else:
            op(out, tap, out=out)
    assert out is not None  # a ball always has its centre chord
    return unpack_rows(out, width)


def _classes(x: torch.Tensor) -> list[int] | None:
    """The nonzero labels present in x (ascending), or None when there are more than
    ``MAX_PLANES``."""
    lo, hi = int(x.min()), int(x.max())
    if lo >= 0 and hi <= 1:  # binary (or empty): no need to count
        return [1] if hi == 1 else []
    if lo >= 0 and hi <= _LARGEST_BINCOUNT_LABEL:
        counts = torch.bincount(x.reshape(-1))
        labels = counts.nonzero()[:, 0].tolist()
    else:
        labels = torch.unique(x).tolist()
    labels = [v for v in labels if v != 0]
    return labels if len(labels) <= MAX_PLANES else None


def _plane(x: torch.Tensor, label: int, binary: bool = False) -> np.ndarray:
    """(B, 1, *S) → (B, *S) numpy, nonzero where x == label (``binary``: x holds only 0
    and label 1)."""
    if binary and x.dtype == torch.uint8:
        return x[:, 0].numpy()  # a 0/1 mask is its own plane: no comparison pass
    return (x[:, 0] == label).numpy()


def _filtered(
    x: torch.Tensor, label: int, radius: int, shape: Footprint, erode: bool, binary: bool = False
) -> torch.Tensor:
    """The plane of ``label`` eroded or dilated: a uint8 0/1 tensor shaped like x."""
    bits = filter_plane(_plane(x, label, binary), radius, shape, erode)
    return torch.from_numpy(bits).view(x.shape)


def erode(x: torch.Tensor, radius: int, shape: Footprint = "ball") -> torch.Tensor | None:
    """Erosion of a CPU label map x [B, 1, *S] by one radius; None when x holds more than
    ``MAX_PLANES`` classes (use the reference)."""
    return _morph(x, radius, shape, erode=True)


def dilate(x: torch.Tensor, radius: int, shape: Footprint = "ball") -> torch.Tensor | None:
    """Dilation of a CPU label map x [B, 1, *S] by one radius; None when x holds more than
    ``MAX_PLANES`` classes (use the reference)."""
    return _morph(x, radius, shape, erode=False)


def _morph(x: torch.Tensor, radius: int, shape: Footprint, erode: bool) -> torch.Tensor | None:
    if radius == 0 or x.numel() == 0:  # nothing to filter (a zero-length axis included)
        return x.clone()
    labels = _classes(x)
    if labels is None:
        return None
    if labels == [1]:  # binary: the filtered plane is the answer (a dilation covers x)
        return _filtered(x, 1, radius, shape, erode, binary=True).to(x.dtype)
    if erode:
        out = torch.zeros_like(x)
        for v in labels:  # the classes' planes are disjoint
            out.masked_fill_(_filtered(x, v, radius, shape, erode).bool(), v)
        return out
    out = x.clone()
    background = x == 0
    grow = [v for v in labels if v > 0]  # a background voxel never takes a negative label
    for v in grow:  # ascending: a larger label overwrites a smaller one on contested voxels
        reached = _filtered(x, v, radius, shape, erode).bool()
        out.masked_fill_(reached & background, v)
    return out
