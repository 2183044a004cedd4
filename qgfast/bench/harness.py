"""Shared benchmark harness: time a callable, measure its peak memory, record result rows.

Timing
- CUDA: ``triton.testing.do_bench`` (flushes L2 between runs), quantiles 0.2/0.5/0.8.
- CPU: ``torch.utils.benchmark.Timer.blocked_autorange``; quantiles over its blocks.

Peak memory attributable to the op
- CUDA: ``max_memory_allocated`` during one call minus what was allocated before it.
- CPU: the process's peak RSS (VmHWM, reset through /proc/self/clear_refs) during one call
  minus the RSS before it, with glibc's mmap threshold pinned so that freed tensors leave
  the resident set; ``None`` where the kernel or libc does not allow this.

Rows (one JSON object a line) carry the device name, versions, shape, dtype, mode, date
and a run id; ``render_results.py`` turns them into RESULTS.md with ratios against the
baseline provider of the same run only. CPU and GPU rows never share a ratio.
"""

from __future__ import annotations

import ctypes
import dataclasses
import datetime as dt
import functools
import json
import os
import platform
import socket
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

QUANTILES = (0.2, 0.5, 0.8)
RUN_ID_ENV = "QGFAST_BENCH_RUN_ID"


@dataclasses.dataclass(frozen=True)
class Timing:
    p20_ms: float
    p50_ms: float
    p80_ms: float
    peak_mb: float | None


@dataclasses.dataclass(frozen=True)
class Row:
    op: str
    provider: str
    shape: str
    dtype: str
    mode: str
    p20_ms: float
    p50_ms: float
    p80_ms: float
    peak_mb: float | None
    device: str
    torch: str
    triton: str | None
    qgfast: str
    date: str
    run_id: str
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)


def device_name(device: torch.device) -> str:
    """A name that identifies the hardware: the GPU's, or CPU model and thread count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next(
                line.split(":", 1)[1].strip() for line in f if line.startswith("model name")
            )
    except (OSError, StopIteration):
        pass
    return f"{model} ({torch.get_num_threads()} threads)"


def run_id() -> str:
    """One id per benchmark run; gpu_check.sh sets it so all its scripts share one."""
    value = os.environ.get(RUN_ID_ENV)
    if not value:
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        value = f"{stamp}-{socket.gethostname()}-{os.getpid()}"
        os.environ[RUN_ID_ENV] = value
    return value


def _versions() -> dict[str, str | None]:
    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    from qgfast import __version__

    return {"torch": torch.__version__, "triton": triton_version, "qgfast": __version__}


def _rss_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


@functools.cache
def _fix_glibc_mmap_threshold() -> bool:
    """glibc raises its mmap threshold after large frees, so later large tensors come from
    the already-resident heap and peak RSS would not see them. Pinning the threshold keeps
    every large allocation a fresh mapping, returned to the system when freed."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_mmap_threshold = -3
    return bool(libc.mallopt(m_mmap_threshold, 128 * 1024))


def _cpu_peak_mb(fn: Callable[[], object]) -> float | None:
    if not _fix_glibc_mmap_threshold():
        return None
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS
    except OSError:
        return None
    before = _rss_kib("VmRSS")
    fn()
    peak = _rss_kib("VmHWM")
    if before is None or peak is None:
        return None
    return max(peak - before, 0) / 1024


def _cuda_peak_mb(fn: Callable[[], object], device: torch.device) -> float:
    torch.cuda.synchronize(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    torch.cuda.synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - before) / 2**20


def time_callable(
    fn: Callable[[], object],
    device: torch.device,
    *,
    min_run_time: float = 0.5,
    grad_to_none: Sequence[torch.Tensor] | None = None,
    measure_memory: bool = True,
) -> Timing:
    """p20/p50/p80 in milliseconds and peak attributable memory in MiB of ``fn()``."""
    if device.type == "cuda":
        from triton.testing import do_bench

        peak = _cuda_peak_mb(fn, device) if measure_memory else None
        q = do_bench(fn, quantiles=list(QUANTILES), grad_to_none=grad_to_none)
        return Timing(q[0], q[1], q[2], peak)

    from torch.utils.benchmark import Timer

    fn()  # warm-up: first-call allocations and lazy initialisation
    peak = _cpu_peak_mb(fn) if measure_memory else None
    timer = Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    m = timer.blocked_autorange(min_run_time=min_run_time)
    q = np.quantile(np.asarray(m.times) * 1e3, QUANTILES)
    return Timing(float(q[0]), float(q[1]), float(q[2]), peak)


class Recorder:
    """Collects the rows of one benchmark script and appends them to a JSON-lines file."""

    def __init__(self, out: Path | str, device: torch.device) -> None:
        self.out = Path(out)
        self.device = device
        self.rows: list[Row] = []
        self._common = {
            "device": device_name(device),
            **_versions(),
            "date": dt.date.today().isoformat(),
            "run_id": run_id(),
        }

    def bench(
        self,
        op: str,
        provider: str,
        fn: Callable[[], object],
        *,
        shape: Sequence[int] | str,
        dtype: torch.dtype | str,
        mode: str,
        extra: dict[str, Any] | None = None,
        bytes_moved: int | None = None,
        items: int | None = None,
        **timing_kwargs: Any,
    ) -> Row:
        """Time ``fn`` and record one row; also print it, so logs show progress.

        ``bytes_moved``: the bytes the op must read plus write at minimum; the row then
        records the achieved rate ``GB_per_s`` (from p50), comparable with the device's
        bandwidth floor measured by ``bench_bandwidth``. ``items``: how many things one call
        produces (masks, samples); the row then records ``items_per_s``.
        """
        t = time_callable(fn, self.device, **timing_kwargs)
        return self.record(
            op,
            provider,
            t,
            shape=shape,
            dtype=dtype,
            mode=mode,
            extra=extra,
            bytes_moved=bytes_moved,
            items=items,
        )

    def record(
        self,
        op: str,
        provider: str,
        t: Timing,
        *,
        shape: Sequence[int] | str,
        dtype: torch.dtype | str,
        mode: str,
        extra: dict[str, Any] | None = None,
        bytes_moved: int | None = None,
        items: int | None = None,
    ) -> Row:
        """Record a timing measured elsewhere (e.g. in a subprocess, for loaders whose
        memory must be measured alone); same row format as ``bench``."""
        extra = dict(extra or {})
        if bytes_moved is not None and t.p50_ms > 0:
            extra["GB_per_s"] = round(bytes_moved / (t.p50_ms * 1e-3) / 1e9, 2)
        if items is not None and t.p50_ms > 0:
            extra["items_per_s"] = round(items / (t.p50_ms * 1e-3), 1)
        row = Row(
            op=op,
            provider=provider,
            shape=shape if isinstance(shape, str) else "x".join(map(str, shape)),
            dtype=str(dtype).removeprefix("torch."),
            mode=mode,
            p20_ms=t.p20_ms,
            p50_ms=t.p50_ms,
            p80_ms=t.p80_ms,
            peak_mb=t.peak_mb,
            extra=extra,
            **self._common,
        )
        self.rows.append(row)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        with self.out.open("a") as f:
            f.write(json.dumps(dataclasses.asdict(row)) + "\n")
        peak = "n/a" if row.peak_mb is None else f"{row.peak_mb:.1f} MiB"
        rate = f"  {extra['GB_per_s']} GB/s" if "GB_per_s" in extra else ""
        print(
            f"{op:<16} {provider:<22} {row.shape:<18} {row.dtype:<9} {mode:<8} "
            f"p50 {row.p50_ms:9.4f} ms  peak {peak}{rate}",
            flush=True,
        )
        return row


def load_rows(paths: Sequence[Path | str]) -> list[Row]:
    """Read rows back from JSON-lines files (unknown keys are an error: files stay honest)."""
    rows = []
    for path in paths:
        for lineno, line in enumerate(Path(path).read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                rows.append(Row(**json.loads(line)))
            except (TypeError, json.JSONDecodeError) as exc:
                raise ValueError(f"{path}:{lineno}: not a result row: {exc}") from exc
    return rows


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
