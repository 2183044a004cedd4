"""The Trainer-loop benchmark runs at its quick sizes for both loaders and records steps/s
and a data-wait share that is a real fraction."""

import pytest

from qgfast.bench import harness
from qgfast.bench.bench_train import main


def test_quick_run_records_both_loaders(tmp_path, monkeypatch) -> None:
    pytest.importorskip("monai")
    monkeypatch.setenv(harness.RUN_ID_ENV, "train-test")
    out = tmp_path / "train.jsonl"
    assert main(["--quick", "--out", str(out)]) == 0
    rows = harness.load_rows([out])
    assert [r.provider for r in rows] == ["qgfast-stream", "dataloader-2w"]
    for r in rows:
        assert r.op == "train-loop"
        assert r.extra["timed_steps"] == 5
        assert r.extra["steps_per_s"] == pytest.approx(1e3 / r.p50_ms, rel=1e-2)
        assert 0 <= r.extra["data_wait_share"] < 1
