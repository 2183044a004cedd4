"""benchmarks/gpu_check.sh runs end to end (here on CPU, with its override) and refuses
to pass silently on a machine without CUDA."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.sh"


def _run(out: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "PYTHON": sys.executable, **env}
    full_env.pop("QGFAST_BENCH_RUN_ID", None)
    return subprocess.run(
        ["bash", str(SCRIPT), str(out)], env=full_env, capture_output=True, text=True, timeout=300
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA refusal")
def test_refuses_without_cuda(tmp_path: Path) -> None:
    proc = _run(tmp_path)
    assert proc.returncode == 1
    assert "no CUDA device" in proc.stdout + proc.stderr
    assert not (tmp_path / "results.jsonl").exists()


@pytest.mark.slow  # a minute: every benchmark script runs once, quickly
def test_quick_run_writes_logs_rows_and_table(tmp_path: Path) -> None:
    proc = _run(tmp_path, QGFAST_GPU_CHECK_ALLOW_CPU="1", QGFAST_GPU_CHECK_QUICK="1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    files = {p.name for p in tmp_path.iterdir()}
    assert files >= {"info.json", "gpu-tests.log", "bench.log", "results.jsonl", "RESULTS.md"}
    assert len(files) <= 8  # the device tool brings back at most 8 files
    rows = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert {r["op"] for r in rows} >= {"copy", "reduce_sum"}
    assert len({r["run_id"] for r in rows}) == 1
    assert "gpu tests" in proc.stdout
    assert "FAILED" not in proc.stdout
