import dataclasses

from qgfast.bench.harness import Row
from qgfast.bench.render_results import render

BASE = Row(
    op="dice",
    provider="reference",
    shape="4x2x8",
    dtype="float32",
    mode="fwd",
    p20_ms=9.0,
    p50_ms=10.0,
    p80_ms=11.0,
    peak_mb=100.0,
    device="GPU A",
    torch="2.15",
    triton="3.9",
    qgfast="0.1.0",
    date="2026-11-26",
    run_id="r1",
)


def _row(**changes) -> Row:
    return dataclasses.replace(BASE, **changes)


def _line(text: str, provider: str, run_id_marker: str = "") -> str:
    return next(
        line for line in text.splitlines() if f"| {provider} |" in line and run_id_marker in line
    )


def test_ratio_against_baseline_of_the_same_run() -> None:
    rows = [BASE, _row(provider="triton", p50_ms=2.0, peak_mb=25.0)]
    text = render(rows)
    line = _line(text, "triton")
    assert "| 5.00× |" in line
    assert "| 0.25 |" in line


def test_no_ratio_across_runs_or_devices() -> None:
    rows = [
        BASE,
        _row(provider="triton", run_id="r2", p50_ms=2.0),
        _row(provider="triton", device="CPU B", p50_ms=1.0),
    ]
    text = render(rows)
    assert "## CPU B" in text
    assert "## GPU A" in text
    for line in text.splitlines():
        if "| triton |" in line:
            assert "×" not in line, line


def test_missing_peak_renders_as_not_available() -> None:
    text = render([_row(peak_mb=None), _row(provider="triton", peak_mb=None, p50_ms=5.0)])
    line = _line(text, "triton")
    assert "| n/a |" in line
    assert "| 2.00× |" in line
    assert "| – |" in line


def test_generator_rows_compare_with_the_authors_style_baseline() -> None:
    rows = [
        _row(op="vqm_generator", provider="authors-style-cpu", p50_ms=10.0),
        _row(op="vqm_generator", provider="qgfast", p50_ms=2.5),
    ]
    line = _line(render(rows), "qgfast")
    assert "| 4.00× |" in line
    # the published code, where measured in the same run and setting, is the baseline
    rows.append(_row(op="vqm_generator", provider="authors-published-cpu", p50_ms=5.0))
    line = _line(render(rows), "qgfast")
    assert "| 2.00× |" in line


def test_ssl_batches_compare_whole_run_throughput_not_p50() -> None:
    base = _row(op="ssl-batch", provider="dataloader-2w", p50_ms=10.0, extra={"batches_per_s": 2.0})
    queue = _row(
        op="ssl-batch", provider="torchio-queue-2w", p50_ms=0.5, extra={"batches_per_s": 3.0}
    )
    line = _line(render([base, queue]), "torchio-queue-2w")
    assert "| 1.50× |" in line  # 3.0 / 2.0 batches/s, not 10 / 0.5 ms


def test_training_runs_table(tmp_path) -> None:
    import json

    from qgfast.bench.render_results import render_training

    metrics = {"n": 10, "mae": 0.05, "mse": 0.01, "pearson": 0.9, "spearman": 0.8}
    report = {
        "corrupted": metrics,
        "blackout": {**metrics, "mae": 0.4},
        "shuffle": metrics,
        "weak_model": {**metrics, "n": 3},
        "training": {"seconds": 12.0, "masks_per_s": 7.5},
    }
    path = tmp_path / "quality_demo.json"
    path.write_text(json.dumps({"command": "qgfast x", "device": "cpu", "report": report}))
    text = render_training([path])
    assert "| demo | cpu | 12 | 0.0500 | 0.9000 | 0.8000 | 0.4000 |" in text
    assert render_training([]) == ""
