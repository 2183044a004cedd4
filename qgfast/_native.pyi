"""Type stub for the Rust extension ``qgfast._native`` (rust/src/py/). Kept honest by
tests/test_native_stub.py, which compares every name, every signature and the shape of
what each call returns against the extension itself."""

from os import PathLike
from pathlib import Path
from typing import Any, TypedDict

import numpy as np

__version__: str

class NativeError(RuntimeError):
    """An internal failure (a caught panic) inside qgfast's native extension."""

class NativeDataError(ValueError):
    """Bad input data; ``args`` are ``(path, reason)`` (re-raised as ``qgfast.data.DataError``)."""

class NiftiHeader(TypedDict):
    """The header fields ``nifti_header`` and ``read_nifti`` report."""

    version: int
    big_endian: bool
    shape: list[int]
    dtype: str
    vox_offset: float
    pixdim: list[float]
    scl_slope: float
    scl_inter: float
    qform_code: int
    sform_code: int
    quatern: list[float]
    qoffset: list[float]
    srow: list[list[float]]
    xyzt_units: int
    intent_code: int
    descrip: str

def nifti_header(path: str | PathLike[str]) -> NiftiHeader:
    """The NIfTI-1/2 header fields (``.nii.gz``: only the header is inflated)."""

def read_nifti(
    path: str | PathLike[str], raw: bool = False, max_bytes: int = ...
) -> tuple[NiftiHeader, np.ndarray, int]:
    """(header, buffer, byte offset): the voxels are ``buffer.view(uint8)[offset : offset +
    nbytes]`` viewed as the header's dtype (no copy; ``buffer`` is uint64 words), in C order
    of the reversed NIfTI shape; or, when the header scales and not ``raw``, ``buffer`` is
    the float64 voxels ``raw * slope + inter`` and the offset 0."""

def write_volume_stats(path: str | PathLike[str], role: str, max_bytes: int = ...) -> Path:
    """Write ``<path>.qgstats`` beside the uncompressed NIfTI ``path`` ("image": per-channel
    value counts or z-score maps; "label": the checked foreground list), so a stream crops it
    reading only each patch's bytes; its path."""

class StreamConfig:
    """A stream's options, checked once here (a bad one raises ValueError naming it): every
    keyword of ``qgfast.data.VolumeStream`` / ``ImageStream``'s config, all given (see
    ``rust/src/stream/config.rs``, ``Settings``). Pickles as its options."""

    def __init__(self, **fields: Any) -> None: ...
    def fields(self) -> dict[str, Any]:
        """The options it was built from (a copy)."""

class StreamStats(TypedDict):
    """``VolumeStreamCore.stats()``."""

    cache_hits: int
    cache_misses: int
    block_reads: int
    cache_bytes: int
    skipped: list[tuple[int, str]]
    reused_volume_buffers: int

class VolumeStreamCore:
    """The Rust half of ``qgfast.data.VolumeStream`` and ``ImageStream``: cases, config,
    this process's shard, and the decoded-volume cache that outlives epochs."""

    def __init__(
        self,
        images: list[list[str]],
        labels: list[str | None],
        labeled: list[int],
        unlabeled: list[int],
        config: StreamConfig,
        shard: int,
        shards: int,
    ) -> None: ...
    def start(self, epoch: int) -> EpochIterator:
        """Run one epoch on worker threads."""
    def stats(self) -> StreamStats:
        """Cache use, block reads, skipped cases (case, reason), reused volume buffers."""

class EpochIterator:
    """Batches of one epoch in order: {"labeled": {...}, "unlabeled": {...}} (the parts the
    stream has), each {"image", "label" (labelled part), "case", "origin", draws...}."""

    n_batches: int
    def __iter__(self) -> EpochIterator: ...
    def __next__(self) -> dict[str, dict[str, np.ndarray]]: ...
    def close(self) -> None:
        """Stop and join the worker threads now."""

class BatchBuffer:
    """The base object of a batch array: owns its memory and hands it back to the stream
    for reuse when the array is gone. Not constructible from Python."""

def build_info(key: str | None = None) -> dict[str, str] | str:
    """All build facts as a dict, or the one named by ``key`` (ValueError if unknown)."""

def label_components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """Face-connected components of a uint8 array of any rank (nonzero = foreground):
    int64 labels (a component's label is its largest C-order voxel index + 1; 0 is
    background, as the torch labelling gives on GPU) and the number of components."""

def counter_uniforms(
    seed: int, stream: int, samples: np.ndarray, counters: np.ndarray
) -> np.ndarray:
    """float64 [len(samples), len(counters)]: ``qgfast.corrupt.rng.uniform`` of the int64
    sample ids (a column) against the int64 counters (a row); ``seed`` is its low 32 bits."""

def counter_below(
    seed: int, stream: int, samples: np.ndarray, counters: np.ndarray, p: float
) -> np.ndarray:
    """uint8 [samples, counters]: 1 where ``qgfast.corrupt.rng.uniform`` of the pair is
    below ``p`` (Bernoulli draws)."""

def gather_nearest_u8(masks: np.ndarray, axes: list[list[np.ndarray]]) -> np.ndarray:
    """uint8 [B, *S]: ``qgfast.corrupt.geometry.gather_nearest`` of uint8 masks [B, *S],
    ``axes[a]`` the float64/float32 terms (broadcastable to [B, *S]) of axis a's source."""

def gather_separable_u8(masks: np.ndarray, sources: list[np.ndarray]) -> np.ndarray:
    """uint8 [B, *S]: output[b, x] = masks[b, i_0, …] with ``sources[a]`` the int64 [B, S_a]
    source index along axis a (< 0: outside, the voxel 0); ``geometry.gather_nearest``'s
    separable case."""

def shape_fill_u8(
    masks: np.ndarray, rays: list[tuple[float, float]] | None = None, cos_half: float = 0.0
) -> np.ndarray:
    """uint8 [B, H, W] of 0/1: each non-empty sample of the masks [B, H, W] (non-zero =
    foreground) replaced by its filled convex hull (``rays`` None) or star polygon (``rays``
    the rays' (cos, sin), ``cos_half`` cos(π/n)); ``qgfast.corrupt.approx``'s reference."""

def gaussian_filter_f32(values: np.ndarray, taps: np.ndarray) -> np.ndarray:
    """float32 [N, *S]: ``values`` [N, *S] filtered along every spatial axis with the odd
    symmetric ``taps`` (reflect-101 borders; the edge repeated on an axis no longer than half
    the kernel); ``qgfast.corrupt.smooth.gaussian_filter``'s reference to float32 rounding."""

def axis_profiles_u8(masks: np.ndarray) -> list[np.ndarray]:
    """Per spatial axis a, int64 [B, S_a]: the foreground (non-zero) count at every
    coordinate of the masks [B, *S]."""

def cross_moments_u8(masks: np.ndarray) -> np.ndarray:
    """int64 [B, pairs]: Σ x_i·x_j over each sample's foreground for the axis pairs (0, 1),
    (0, 2), (1, 2) that exist."""

def quadric_fill_u8(
    shape: list[int], mean: np.ndarray, coef: np.ndarray, limit: np.ndarray, active: np.ndarray
) -> np.ndarray:
    """uint8 of ``shape`` [B, *S]: 1 where, with d = x − mean[b], Σ_i (coef_ii·d_i)·d_i +
    Σ_{i<j} (coef_ij·d_i)·d_j ≤ limit[b] in the samples flagged ``active``
    (``qgfast.corrupt.shapes.quadric_fill``)."""

def smallest_spread_u8(
    shape: list[int], mean: np.ndarray, spread: np.ndarray, count: np.ndarray
) -> np.ndarray:
    """uint8 of ``shape`` [B, *S]: per sample the count[b] voxels of smallest
    Σ_a ((x_a − mean_a) / spread_a)², ties to the lower indices (``shapes.gaussian_blob``)."""

def kth_candidates_u8(
    masks: np.ndarray, hole: bool, u: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(int64 [B, n], int64 [B]): per sample and blob the linear index of candidate
    min(⌊u·total⌋, total − 1) (foreground when ``hole``, else background), and the totals."""

def paint_blobs_u8(
    masks: np.ndarray, centres: np.ndarray, axes: np.ndarray, fill: int
) -> np.ndarray:
    """uint8 [B, *S]: a copy of the masks with the blobs (centres and integer semi-axes
    [B, n, nd]; first axis < 0: none) set to ``fill`` (``reference.blobs.paint_blobs``)."""

def select_components_u8(masks: np.ndarray, u: np.ndarray | None = None) -> np.ndarray:
    """uint8 [B, *S]: per sample the largest face-connected component (``u`` None), or all
    but the ⌊u[b]·count⌋-th in ascending label order when there are two or more."""

def counter_normals(seed: int, stream: int, samples: np.ndarray, count: int) -> np.ndarray:
    """float32 [samples, count]: the standard normals of ``qgfast.corrupt.warp._normal``
    (Box–Muller over the counter-based uniforms), to float32 rounding."""

def label_counts_u8(
    pred: np.ndarray, target: np.ndarray, repeats: int, classes: list[int]
) -> np.ndarray:
    """int64 [3, B, C]: I = |p = c ∧ t = c|, P = |p = c|, G = |t = c| per prediction and
    class of the uint8 label rows pred [B, N] against target [B / repeats, N]."""

def morph_cube_u8(masks: np.ndarray, radius: int, erode: bool) -> np.ndarray:
    """uint8 [B, *S]: the erosion (a voxel keeps its label where its whole cube of side
    2·radius + 1 holds it; outside = 0) or dilation (background takes the largest label in
    its cube) of the label maps [B, *S] (``qgfast.corrupt.morphology``, cube footprints)."""

def elastic_u8(
    masks: np.ndarray, alpha: float, taps: np.ndarray, seed: int, stream: int, samples: np.ndarray
) -> np.ndarray:
    """uint8 [B, *S]: the masks remapped through x + d(x), d the float32 α·N(0, 1) noise of
    ``qgfast.corrupt.warp._normal`` (per sample key) smoothed with ``taps`` along every axis
    (``warp.elastic``'s CPU fast path in one call)."""

def smooth_threshold_u8(masks: np.ndarray, taps: np.ndarray) -> np.ndarray:
    """uint8 [B, *S]: each sample's foreground as 0/1 float32, filtered with ``taps`` (as
    ``gaussian_filter_f32``), kept where above 0.5 (``smooth.gaussian_smooth``'s fast path)."""

def _selftest_fail(kind: str) -> None:
    """Test hook: ``"error"`` raises ValueError, ``"panic"`` raises NativeError."""
