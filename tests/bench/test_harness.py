import json

import pytest
import torch

from qgfast.bench import harness


def test_time_callable_orders_quantiles_on_cpu() -> None:
    x = torch.randn(10_000)
    t = harness.time_callable(lambda: x.sum(), torch.device("cpu"), min_run_time=0.05)
    assert 0 < t.p20_ms <= t.p50_ms <= t.p80_ms


def test_cpu_peak_memory_sees_a_large_allocation() -> None:
    def allocate_64_mib() -> None:
        torch.ones(16 * 2**20, dtype=torch.float32)  # touched pages: 64 MiB resident

    t = harness.time_callable(allocate_64_mib, torch.device("cpu"), min_run_time=0.05)
    if t.peak_mb is None:
        pytest.skip("this kernel does not allow resetting the peak RSS")
    assert 56 <= t.peak_mb <= 256, t.peak_mb


def test_recorder_appends_rows_with_environment(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(harness.RUN_ID_ENV, "run-1")
    out = tmp_path / "r.jsonl"
    rec = harness.Recorder(out, torch.device("cpu"))
    x = torch.randn(1000)
    rec.bench(
        "sum",
        "torch",
        lambda: x.sum(),
        shape=[1000],
        dtype=x.dtype,
        mode="fwd",
        bytes_moved=x.nbytes,
        min_run_time=0.02,
    )
    rec.bench(
        "sum",
        "reference",
        lambda: x.sum(),
        shape=(1000,),
        dtype="float32",
        mode="fwd",
        min_run_time=0.02,
    )
    lines = out.read_text().splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert first["run_id"] == "run-1"
    assert first["shape"] == "1000"
    assert first["dtype"] == "float32"
    assert first["extra"]["GB_per_s"] > 0
    assert "GB_per_s" not in json.loads(lines[1])["extra"]
    assert first["device"]
    assert first["torch"] == torch.__version__
    assert harness.load_rows([out]) == rec.rows


def test_load_rows_rejects_foreign_lines(tmp_path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"op": "x"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:1: not a result row"):
        harness.load_rows([bad])


def test_items_per_second_is_recorded(tmp_path) -> None:
    rec = harness.Recorder(tmp_path / "r.jsonl", torch.device("cpu"))
    row = rec.bench(
        "noop",
        "torch",
        lambda: None,
        shape="-",
        dtype="-",
        mode="fwd",
        items=10,
        min_run_time=0.02,
        measure_memory=False,
    )
    saved = harness.load_rows([tmp_path / "r.jsonl"])[0]
    assert saved.extra["items_per_s"] == row.extra["items_per_s"] > 0
    assert saved.peak_mb is None
