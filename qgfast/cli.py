"""The ``qgfast`` command line.

Subcommands arrive with the features behind them; today: ``info``, ``synthetic``,
``train-quality``, ``eval-quality``, ``train`` and ``predict``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence


def _format_section(title: str, values: dict[str, object]) -> list[str]:
    lines = [f"{title}:"]
    width = max((len(k) for k in values), default=0)
    for key, value in values.items():
        if isinstance(value, list):
            value = (
                "; ".join(
                    ", ".join(f"{k}={v}" for k, v in item.items())
                    if isinstance(item, dict)
                    else str(item)
                    for item in value
                )
                or "none"
            )
        lines.append(f"  {key:<{width}}  {value}")
    return lines


def format_info(report: dict[str, object]) -> str:
    """Human-readable rendering of ``qgfast.info()``."""
    lines = [f"platform: {report['platform']}"]
    for title in ("versions", "devices", "backends", "native"):
        section = report[title]
        assert isinstance(section, dict)
        lines += _format_section(title, section)
    return "\n".join(lines)


def _cmd_info(args: argparse.Namespace) -> int:
    from qgfast import info

    report = info()
    print(json.dumps(report, indent=2) if args.json else format_info(report))
    return 0


def _cmd_synthetic(args: argparse.Namespace) -> int:
    from qgfast.data import make_synthetic_dataset

    root = make_synthetic_dataset(args.kind, args.n, args.path, seed=args.seed)
    print(f"wrote {args.n} {args.kind} cases to {root}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from qgfast import __version__
    from qgfast.data.synthetic import KINDS

    parser = argparse.ArgumentParser(
        prog="qgfast",
        description="Fast quality-guided semi-supervised medical image segmentation.",
    )
    parser.add_argument("--version", action="version", version=f"qgfast {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    info = commands.add_parser("info", help="versions, devices, backends and native build")
    info.add_argument("--json", action="store_true", help="print the report as JSON")
    info.set_defaults(func=_cmd_info)

    synthetic = commands.add_parser("synthetic", help="write a built-in synthetic dataset")
    synthetic.add_argument("kind", choices=KINDS)
    synthetic.add_argument("path", help="output folder (imagesTr/, labelsTr/, dataset.json)")
    synthetic.add_argument("--n", type=int, default=64, help="number of cases")
    synthetic.add_argument("--seed", type=int, default=0)
    synthetic.set_defaults(func=_cmd_synthetic)

    from qgfast.bench.cli import add_commands as add_bench_commands
    from qgfast.integrations.nnunet.cli import add_commands as add_nnunet_commands
    from qgfast.quality.cli import add_commands as add_quality_commands
    from qgfast.ssl.cli import add_commands as add_ssl_commands

    add_quality_commands(commands)
    add_ssl_commands(commands)
    add_bench_commands(commands)
    add_nnunet_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
