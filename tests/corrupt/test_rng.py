"""The counter-based hash: murmur3's finaliser over the mixed keys, bit for bit against a
plain-Python transcription; uniforms in [0, 1); per-sample keys."""

import pytest
import torch

from qgfast.corrupt import blocking, rng

M = 0xFFFFFFFF


def _fmix(h: int) -> int:
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & M
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & M
    return h ^ (h >> 16)


def _hash(seed: int, sample: int, stream: int, counter: int) -> int:
    h = _fmix((sample * 0x9E3779B1 + (seed & M)) & M)
    h = _fmix((h ^ (stream * 0x85EBCA77)) & M)
    return _fmix((h + counter * 0xC2B2AE3D) & M)


@pytest.mark.parametrize("path", ["native", "reference"])  # Rust on CPU, or the torch hash
@pytest.mark.parametrize("block", [None, 5])  # whole, or block by block as on big draws
@pytest.mark.parametrize("seed", [0, 7, -5, 2**40 + 3])
def test_hash_matches_murmur3_finaliser_bit_for_bit(seed, block, path, monkeypatch) -> None:
    if path == "reference":
        monkeypatch.setenv("QGFAST_BACKEND", "reference")
    else:
        monkeypatch.delenv("QGFAST_BACKEND", raising=False)
    if block:
        monkeypatch.setattr(blocking, "CPU_BLOCK", block)
    g = torch.Generator().manual_seed(seed % 1000)
    samples = torch.randint(0, 2**31 - 1, (13, 1), generator=g)
    counters = torch.cat([torch.arange(20), torch.randint(0, 2**31 - 1, (11,), generator=g)])
    got = rng.hash32(seed, samples, rng.STREAM_ELASTIC, counters[None, :])
    want = [
        [_hash(seed, s, rng.STREAM_ELASTIC, c) for c in counters.tolist()]
        for s in samples[:, 0].tolist()
    ]
    assert got.tolist() == want
    u = rng.uniform(seed, samples, rng.STREAM_ELASTIC, counters[None, :])
    assert u.tolist() == [[h * 2.0**-32 for h in row] for row in want]
    # the inputs are keys, not buffers: hashing must leave them alone
    assert counters[:20].tolist() == list(range(20))


def test_uniform_range_and_moments() -> None:
    u = rng.uniform(3, torch.arange(4)[:, None], rng.STREAM_NOISE, torch.arange(50_000)[None])
    assert u.dtype == torch.float64
    assert float(u.min()) >= 0.0
    assert float(u.max()) < 1.0
    assert abs(float(u.mean()) - 0.5) < 0.005
    assert abs(float(u.var()) - 1 / 12) < 0.002


def test_sample_keys_replace_batch_indices() -> None:
    ids = torch.tensor([5, 0, 9])
    with rng.sample_keys(ids):
        assert rng.sample_ids(3, torch.device("cpu"))[:, 0].tolist() == [5, 0, 9]
        with pytest.raises(ValueError, match="keys for a batch of 2"):
            rng.sample_ids(2, torch.device("cpu"))
    assert rng.sample_ids(3, torch.device("cpu"))[:, 0].tolist() == [0, 1, 2]


def test_cpu_uniforms_of_a_column_against_a_row_come_from_the_extension(monkeypatch) -> None:
    pytest.importorskip("qgfast._native")
    monkeypatch.delenv("QGFAST_BACKEND", raising=False)
    column, row = torch.arange(3)[:, None], torch.arange(5)[None]
    native = rng._native_uniform(11, column, rng.STREAM_NOISE, row)
    assert native is not None
    assert native.dtype == torch.float64
    assert native.shape == (3, 5)
    assert rng._native_uniform(11, column, rng.STREAM_NOISE, torch.arange(15).view(3, 5)) is None
    monkeypatch.setenv("QGFAST_BACKEND", "reference")
    assert rng._native_uniform(11, column, rng.STREAM_NOISE, row) is None
    assert torch.equal(rng.uniform(11, column, rng.STREAM_NOISE, row), native)
