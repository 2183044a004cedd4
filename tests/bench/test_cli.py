"""``qgfast bench`` runs its suites, keeps this run's rows apart from older ones in the same
folder, prints the ratio table and writes RESULTS.md; a bad --out is refused."""

import pytest

from qgfast.bench import harness
from qgfast.cli import main


def test_quick_bench_writes_rows_and_table(tmp_path, capsys, monkeypatch) -> None:
    pytest.importorskip("monai")
    monkeypatch.delenv(harness.RUN_ID_ENV, raising=False)
    out = tmp_path / "bench"
    out.mkdir()
    assert main(["bench", "--quick", "--only", "bandwidth", "train", "--out", str(out)]) == 0
    first = capsys.readouterr().out
    assert "### train-loop" in first
    assert "### copy" in first
    rows = harness.load_rows([out / "train.jsonl"])
    assert {r.provider for r in rows} >= {"qgfast-stream"}
    assert len({r.run_id for r in rows}) == 1
    # A second call appends; its printed table holds its own rows only.
    monkeypatch.delenv(harness.RUN_ID_ENV, raising=False)
    assert main(["bench", "--quick", "--only", "bandwidth", "--out", str(out)]) == 0
    second = capsys.readouterr().out
    assert "### copy" in second
    assert "### train-loop" not in second
    assert "train-loop" in (out / "RESULTS.md").read_text()  # the file renders every row


def test_an_unwritable_out_is_refused(tmp_path, capsys) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["bench", "--quick", "--only", "bandwidth", "--out", str(blocker / "x")]) == 2
    assert "cannot write" in capsys.readouterr().err
