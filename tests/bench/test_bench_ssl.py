"""The ssl-step benchmark runs at its quick sizes and records a share for every step."""

import pytest

from qgfast.bench import harness
from qgfast.bench.bench_ssl import FRAMEWORKS, main


def test_quick_run_records_steps_and_unsupervised_shares(tmp_path, monkeypatch) -> None:
    pytest.importorskip("monai")
    monkeypatch.setenv(harness.RUN_ID_ENV, "ssl-test")
    out = tmp_path / "ssl.jsonl"
    assert main(["--quick", "--out", str(out)]) == 0
    rows = harness.load_rows([out])
    steps = [r for r in rows if r.op == "ssl-step"]
    terms = [r for r in rows if r.op == "ssl-unsup-term"]
    assert len(steps) == len(terms) == 2 * len(FRAMEWORKS)  # 2D and 3D
    for r in steps:
        assert r.p50_ms > 0
        assert 0 < r.extra["unsup_share"] < 1, r
    assert {r.shape.split()[0] for r in steps} == set(FRAMEWORKS)
