"""``qgfast bench``: the benchmark suites in one process per suite order, side by side
with their baselines, then the ratio table of this run.

Suites (each a module of ``qgfast.bench``): losses (fused DiceCE / QW / Dice scores vs the
reference, and ``torch.compile`` of it on CUDA), corrupt (morphology vs the reference and
scipy, the VQM generator vs the authors-style per-sample generator), loader (NIfTI decode
and SSL / 2D batches vs nibabel, DataLoader, MONAI, TorchIO where installed; CPU only),
ssl (one training step of each framework), train (the Trainer fed by the Rust stream vs a
DataLoader), bandwidth (the device's copy and reduction floors).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import tempfile
from pathlib import Path

SUITES = {
    "bandwidth": "qgfast.bench.bench_bandwidth",
    "losses": "qgfast.bench.bench_losses",
    "corrupt": "qgfast.bench.bench_corrupt",
    "loader": "qgfast.bench.bench_loader",
    "ssl": "qgfast.bench.bench_ssl",
    "train": "qgfast.bench.bench_train",
}


def add_commands(commands: argparse._SubParsersAction) -> None:
    bench = commands.add_parser(
        "bench",
        help="throughput of the fused and native paths against the pure-PyTorch reference",
        description=__doc__.split("\n\n")[1].replace("\n", " "),
    )
    bench.add_argument("--quick", action="store_true", help="tiny sizes (seconds; a smoke run)")
    bench.add_argument(
        "--only", nargs="+", choices=list(SUITES), metavar="SUITE", help=f"of {list(SUITES)}"
    )
    bench.add_argument(
        "--out", type=Path, help="write SUITE.jsonl rows and RESULTS.md here (appends rows)"
    )
    bench.set_defaults(func=cmd_bench)


def run_suites(names: list[str], out: Path, quick: bool) -> list[Path]:
    """Run each suite's ``main`` with its rows going to ``out/NAME.jsonl``; all rows of one
    call share one run id, so ratios compare rows of this call only."""
    from qgfast.bench import harness

    harness.run_id()  # fixes the id in the environment for every suite (and subprocess)
    files = []
    for name in names:
        module = importlib.import_module(SUITES[name])
        path = out / f"{name}.jsonl"
        print(f"== {name}", flush=True)
        code = module.main(["--out", str(path), *(["--quick"] if quick else [])])
        if code:
            raise RuntimeError(f"benchmark suite {name} failed (exit {code})")
        if path.is_file():
            files.append(path)
    return files


def cmd_bench(args: argparse.Namespace) -> int:
    import os

    from qgfast.bench import harness
    from qgfast.bench.render_results import render

    names = args.only or list(SUITES)
    if args.out is not None:
        try:
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / ".qgfast-write-test").write_text("ok")
            (args.out / ".qgfast-write-test").unlink()
        except OSError as err:
            print(f"qgfast bench: error: cannot write to --out {args.out}: {err}", file=sys.stderr)
            return 2
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        files = run_suites(names, out, args.quick)
        this_run = os.environ[harness.RUN_ID_ENV]
        rows = [r for r in harness.load_rows(files) if r.run_id == this_run]
        print("\n" + render(rows), end="")
        if args.out is not None:
            every = sorted(args.out.glob("*.jsonl"))
            (args.out / "RESULTS.md").write_text(render(harness.load_rows(every)))
            print(f"rows: {args.out}/*.jsonl; table: {args.out / 'RESULTS.md'}")
    return 0
