"""Achievable memory bandwidth of the device: the floor every fused op is measured against.

An op that must read R bytes and write W bytes cannot beat (R + W) / bandwidth; later
benchmarks quote "% of floor" with the bandwidth measured here, on the same device and run.
Two patterns: copy (read N + write N bytes) and reduce (read N bytes, ``sum``).

    python -m qgfast.bench.bench_bandwidth [--quick] [--out benchmarks/results/bandwidth.jsonl]
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import torch

from qgfast.bench.harness import Recorder, default_device


def run(out: Path, quick: bool) -> None:
    device = default_device()
    rec = Recorder(out, device)
    # GPU: 1 GiB, far beyond L2. CPU: 256 MiB, beyond any last-level cache.
    mib = (8 if quick else 256) if device.type == "cpu" else (64 if quick else 1024)
    n = mib * 2**20 // 4
    src = torch.randn(n, device=device)
    dst = torch.empty_like(src)
    for name, fn, moved in (
        ("copy", lambda: dst.copy_(src), 2 * src.nbytes),
        ("reduce_sum", lambda: src.sum(), src.nbytes),
    ):
        rec.bench(
            name,
            "torch",
            fn,
            shape=[n],
            dtype=src.dtype,
            mode="fwd",
            bytes_moved=moved,
            min_run_time=0.2 if quick else 1.0,
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/bandwidth.jsonl"))
    parser.add_argument("--quick", action="store_true", help="small sizes, short timing")
    args = parser.parse_args(argv)
    run(args.out, args.quick)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
