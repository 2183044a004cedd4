"""Counter-based random numbers for corruption: a value depends only on (seed, sample index,
stream, counter), never on batch size, batch order or device, so the same seed gives sample
i the same random draws on CPU and GPU, alone or in any batch. (Ops that then do float
arithmetic, such as a rotation's rounding, can still differ between devices at exact ties.)

The hash is murmur3's 32-bit finaliser applied to a mix of the four keys, computed in int64
tensors holding 32-bit values (products are masked back to 32 bits, so the low bits are
exact whatever the platform does on overflow). 32 bits of entropy per draw is ample for
choosing centres, radii and categories.

On the CPU, uniforms of a column of samples against a row of counters (a volume's worth of
draws: elastic noise, Bernoulli noise) come from ``qgfast._native.counter_uniforms``, the same
hash in wrapping 32-bit arithmetic (bit-identical, tested; ~15x fewer passes over memory),
unless the extension is missing or ``QGFAST_BACKEND=reference`` is set.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Callable, Iterator

import torch

from qgfast.backend import cpu_fast_path, native_extension
from qgfast.corrupt.blocking import blocks, take

_MASK32 = 0xFFFFFFFF
# Stream ids: one per kind of draw, so adding a kind never shifts another's numbers.
STREAM_BLOB_CENTRE = 1
STREAM_BLOB_RADIUS = 2
STREAM_NOISE = 3
STREAM_BOX = 4
STREAM_AFFINE = 5
STREAM_COMPONENT = 6
STREAM_SWAP = 7
STREAM_ELASTIC = 8
STREAM_GRID = 9
STREAM_VQM = 10
STREAM_BLOB_SHAPE = 11


def _fmix32(h: torch.Tensor) -> torch.Tensor:
    """murmur3's finaliser, in place on an int64 tensor of 32-bit values (the hash of a
    whole volume's counters is a few large passes, so no temporaries beyond one shift)."""
    h ^= h >> 16
    h *= 0x85EBCA6B
    h &= _MASK32
    h ^= h >> 13
    h *= 0xC2B2AE35
    h &= _MASK32
    h ^= h >> 16
    return h


def _key(seed: int, sample: torch.Tensor, stream: int) -> torch.Tensor:
    h = _fmix32((sample.to(torch.int64) * 0x9E3779B1 + (seed & _MASK32)) & _MASK32)
    return _fmix32((h ^ (stream * 0x85EBCA77)) & _MASK32)


def _mix(key: torch.Tensor, counter: torch.Tensor) -> torch.Tensor:
    x = counter * 0xC2B2AE3D + key  # a fresh tensor of the broadcast shape
    x &= _MASK32
    return _fmix32(x)


def _hashed(
    seed: int,
    sample: torch.Tensor,
    stream: int,
    counter: torch.Tensor,
    finish: Callable[[torch.Tensor], torch.Tensor],
    dtype: torch.dtype,
) -> torch.Tensor:
    """finish(hash) over the broadcast of ``sample`` and ``counter``."""
    key, c = _key(seed, sample, stream), counter.to(torch.int64)
    shape = torch.broadcast_shapes(key.shape, c.shape)
    parts = list(blocks(shape[-1], math.prod(shape[:-1]), c.device)) if shape else []
    if len(parts) <= 1:
        return finish(_mix(key, c))
    out = torch.empty(shape, dtype=dtype, device=c.device)
    for part in parts:  # a volume's worth of draws, block by block in the cache
        out[..., part] = finish(_mix(take(key, -1, part), take(c, -1, part)))
    return out


def hash32(seed: int, sample: torch.Tensor, stream: int, counter: torch.Tensor) -> torch.Tensor:
    """32-bit hashes, broadcasting ``sample`` and ``counter`` (int64 tensors)."""
    return _hashed(seed, sample, stream, counter, lambda x: x, torch.int64)


_keys: contextvars.ContextVar[torch.Tensor | None] = contextvars.ContextVar("keys", default=None)


@contextlib.contextmanager
def sample_keys(ids: torch.Tensor) -> Iterator[None]:
    """Within the block, the ops key sample i of their batch by ``ids[i]`` instead of i: the
    VQM generator applies each op to a group of samples and keeps every sample's draws tied
    to its own index in the whole batch, whatever the grouping."""
    token = _keys.set(ids)
    try:
        yield
    finally:
        _keys.reset(token)


def sample_ids(batch: int, device: torch.device) -> torch.Tensor:
    """[B, 1] per-sample keys of every draw: the batch indices, or those set by
    ``sample_keys``."""
    ids = _keys.get()
    if ids is None:
        return torch.arange(batch, device=device)[:, None]
    if ids.shape != (batch,):
        raise ValueError(f"sample_keys holds {tuple(ids.shape)} keys for a batch of {batch}")
    return ids.to(device=device, dtype=torch.int64)[:, None]


def uniform(seed: int, sample: torch.Tensor, stream: int, counter: torch.Tensor) -> torch.Tensor:
    """Uniform floats in [0, 1) (float64, 2^-32 resolution), shaped like the broadcast keys."""
    native = _native_uniform(seed, sample, stream, counter)
    if native is not None:
        return native
    return _hashed(seed, sample, stream, counter, _to_unit, torch.float64)


def below(
    seed: int, sample: torch.Tensor, stream: int, counter: torch.Tensor, p: float
) -> torch.Tensor:
    """``uniform(...) < p`` as bool: Bernoulli(p) draws. A CPU [B, 1] sample column against
    a [1, C] counter row compares in ``qgfast._native`` without the float64 array."""
    column = sample.dim() == 2 and sample.shape[1] == 1
    row = counter.dim() == 2 and counter.shape[0] == 1
    native = native_extension()
    if column and row and cpu_fast_path(sample, counter) and native is not None:
        ids = sample[:, 0].to(torch.int64).numpy()
        counters = counter[0].to(torch.int64).numpy()
        coins = native.counter_below(seed & _MASK32, stream, ids, counters, float(p))
        return torch.from_numpy(coins).view(torch.bool)
    return uniform(seed, sample, stream, counter) < p


def _native_uniform(
    seed: int, sample: torch.Tensor, stream: int, counter: torch.Tensor
) -> torch.Tensor | None:
    """``uniform`` through the Rust hash for a CPU [B, 1] sample column against a [1, C]
    counter row; None for other shapes, devices, a forced reference or no extension."""
    column = sample.dim() == 2 and sample.shape[1] == 1
    row = counter.dim() == 2 and counter.shape[0] == 1
    native = native_extension()
    if not (column and row and cpu_fast_path(sample, counter)) or native is None:
        return None
    ids = sample[:, 0].to(torch.int64).numpy()
    counters = counter[0].to(torch.int64).numpy()
    return torch.from_numpy(native.counter_uniforms(seed & _MASK32, stream, ids, counters))


def _to_unit(h: torch.Tensor) -> torch.Tensor:
    return h.to(torch.float64).mul_(2.0**-32)
