"""``qgfast train``, ``qgfast predict`` (docs/training.md) and ``qgfast demo`` (docs/demo.md).

Every ``RunConfig`` field is a flag (``--val-every``) and a config-file key
(``val_every``); only the flags actually given override the file. Under ``torchrun`` each
process runs the same command; rank 0 alone prints and writes.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

from qgfast.ssl.checkpoint import CheckpointError
from qgfast.ssl.config import RunConfig, check_resume, read_config_file, resolve


def _int_list(text: str) -> list[int]:
    try:
        return [int(s) for s in text.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers like 96,96,64, got {text!r}") from None


_TYPES = {"int": int, "float": float, "str": str}


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    from qgfast.data.synthetic import KINDS
    from qgfast.ssl.methods import METHODS

    for f in fields(RunConfig):
        flag = "--" + f.name.replace("_", "-")
        kind = str(f.type).replace(" | None", "")
        kw: dict[str, Any] = {"default": argparse.SUPPRESS, "help": f.metadata.get("help")}
        if f.name == "method":
            kw["choices"] = list(METHODS)
        if f.name == "synthetic":
            kw["choices"] = list(KINDS)
        if kind == "bool":
            kw["action"] = argparse.BooleanOptionalAction
        elif kind == "list[int]":
            kw["type"] = _int_list
            kw["metavar"] = "N,N,..."
        else:
            kw["type"] = _TYPES[kind]
        parser.add_argument(flag, dest=f.name, **kw)


def add_commands(commands: argparse._SubParsersAction) -> None:
    train = commands.add_parser(
        "train",
        help="semi-supervised training of a segmentation network on a dataset folder",
        description="Train a segmentation network with one of the semi-supervised methods "
        "(plain or quality-guided) on an nnU-Net/MSD-style folder, a 2D images/masks folder "
        "or a built-in synthetic set. Writes config.json, split.json, last.pt, best.pt, "
        "history.jsonl, TensorBoard logs (tb/) and report.json into --out; then scores the "
        "test split with the best and the final weights.",
    )
    train.add_argument("--config", type=Path, help="YAML or JSON file of the same keys")
    train.add_argument("--resume", action="store_true", help="continue the run in --out")
    _add_config_flags(train)
    train.set_defaults(func=cmd_train)

    pred = commands.add_parser("predict", help="predict a folder with a trained run's network")
    pred.add_argument("--ckpt", type=Path, required=True, help="RUN/best.pt or RUN/last.pt")
    pred.add_argument("--data", type=Path, required=True, help="folder of cases")
    pred.add_argument("--out", type=Path, required=True, help="folder for the predictions")
    pred.add_argument("--device")
    pred.set_defaults(func=cmd_predict)

    from qgfast.ssl.demo import METHODS as DEMO_METHODS

    demo = commands.add_parser(
        "demo",
        help="the whole method end to end: predictor, every method, a test table and a picture",
        description="Phase 1 trains a quality predictor on the labelled cases; phase 2 trains "
        "SUP, MT, MT-QW, PL-QW, QAR, CPS and CPS-QW at the same budget on one fixed split "
        "(few labelled cases + an unlabelled pool) for each seed; every run is scored once "
        "on a test split that nothing trained or selected on. Writes report.json, demo.png, "
        "the runs (with TensorBoard logs) and the predictor into --out. Default data: the "
        "built-in lesion2d set with easy and hard cases (docs/demo.md).",
    )
    source = demo.add_mutually_exclusive_group()
    source.add_argument("--data", type=Path, help="your dataset folder (with --labeled N)")
    source.add_argument("--synthetic", choices=("lesion2d", "organ3d"), help="built-in set")
    demo.add_argument("--labeled", type=int, help="labelled training cases")
    demo.add_argument("--out", type=Path, default=Path("qgfast-demo"), help="output folder")
    demo.add_argument("--seeds", type=int, nargs="+", help="training seeds (default 0 1 2)")
    demo.add_argument(
        "--methods", nargs="+", choices=DEMO_METHODS, default=list(DEMO_METHODS), metavar="M"
    )
    demo.add_argument("--steps", type=int, help="optimiser steps per run (default per setting)")
    demo.add_argument("--n", type=int, help="synthetic cases (default per setting)")
    demo.add_argument("--quick", action="store_true", help="CI-sized run (pipeline check)")
    demo.add_argument("--device", help="cuda, cpu, ... (default: cuda when available)")
    demo.add_argument("--no-progress", dest="progress", action="store_false")
    demo.set_defaults(func=cmd_demo)


def _explicit(args: argparse.Namespace) -> dict[str, Any]:
    names = {f.name for f in fields(RunConfig)}
    return {k: v for k, v in vars(args).items() if k in names}


def cmd_train(args: argparse.Namespace) -> int:
    from qgfast.ssl import distributed as dist
    from qgfast.ssl.run import train_run

    explicit = _explicit(args)
    try:
        file_values = read_config_file(args.config) if args.config else {}
        cfg = resolve(file_values, explicit)
        if cfg.out is None:
            raise ValueError("say where the run goes: --out RUN")
        out = Path(cfg.out)
        if args.resume:
            stored = out / "config.json"
            if not stored.is_file():
                raise ValueError(f"--resume: no run to continue in {out} (no config.json)")
            cfg = check_resume(json.loads(stored.read_text()), {**file_values, **explicit})
        elif (out / "last.pt").exists():
            raise ValueError(f"{out} already holds a run; pass --resume or pick a new --out")
        seeds = cfg.seeds or [cfg.seed]
        reports = []
        for seed in seeds:
            run_cfg = RunConfig(**{**cfg.to_dict(), "seed": seed, "seeds": None})
            folder = out / f"seed_{seed}" if cfg.seeds else out
            if cfg.seeds:
                run_cfg.out = str(folder)
            reports.append(train_run(run_cfg, folder, resume=args.resume))
            if reports[-1]["training"]["stopped"] == "interrupted":
                if dist.is_main():
                    print(f"interrupted; last.pt saved in {folder}; continue with --resume")
                return 130
    except (ValueError, CheckpointError) as err:  # bad input: one clear line, no traceback
        print(f"qgfast train: error: {err}", file=sys.stderr)
        return 2
    finally:
        main = dist.is_main()  # read before teardown: afterwards every process says rank 0
        dist.teardown()
    if main:
        if cfg.seeds:
            summary = aggregate(reports)
            (out / "report.json").write_text(json.dumps(summary, indent=1) + "\n")
        for r in reports:
            print_report(r)
        if cfg.seeds:
            print_seeds(aggregate(reports))
    return 0


def aggregate(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean ± sd over seeds of the test metrics (best and final weights)."""
    out: dict[str, Any] = {"seeds": [r["seed"] for r in reports], "method": reports[0]["method"]}
    for which in ("test_best", "test_final"):
        rows = [r[which] for r in reports if which in r]
        if not rows:
            continue
        out[which] = {}
        for metric in ("dice", "jaccard", "hd95", "asd"):
            values = [row[metric] for row in rows]
            mean = sum(values) / len(values)
            sd = math.sqrt(sum((v - mean) ** 2 for v in values) / max(1, len(values) - 1))
            out[which][metric] = {"mean": mean, "sd": sd, "values": values}
    return out


def print_report(report: dict[str, Any]) -> None:
    t = report["training"]
    best = t["best"]
    line = f"[{report['method']} seed {report['seed']}] {t['steps']} steps, stopped: {t['stopped']}"
    if best.get("step") is not None:
        line += f"; best validation dice {best['metric']:.4f} at step {best['step']}"
    print(line)
    for which, title in (("test_best", "best.pt"), ("test_final", "final weights")):
        if which not in report:
            continue
        m = report[which]
        print(f"  test ({title}, {m['cases']} cases):")
        print(f"    {'class':>5} {'Dice':>7} {'Jaccard':>8} {'HD95 mm':>9} {'ASD mm':>8}")
        for c in range(len(m["dice_per_class"])):
            print(
                f"    {c + 1:>5} {m['dice_per_class'][c]:>7.4f} {m['jaccard_per_class'][c]:>8.4f}"
                f" {m['hd95_per_class'][c]:>9.2f} {m['asd_per_class'][c]:>8.2f}"
            )
        print(
            f"    {'mean':>5} {m['dice']:>7.4f} {m['jaccard']:>8.4f} {m['hd95']:>9.2f} "
            f"{m['asd']:>8.2f}  (empty-mask penalties: {m['hd95_empty']})"
        )


def print_seeds(summary: dict[str, Any]) -> None:
    seeds = summary["seeds"]
    for which in ("test_best", "test_final"):
        if which in summary:
            parts = [f"{k} {v['mean']:.4f} ± {v['sd']:.4f}" for k, v in summary[which].items()]
            print(f"{which} over seeds {seeds}: " + ", ".join(parts))


def cmd_demo(args: argparse.Namespace) -> int:
    from qgfast.ssl.demo import DemoConfig, print_table, run_demo

    synthetic = args.synthetic or (None if args.data else "lesion2d")
    cfg = DemoConfig(
        out=args.out,
        data=args.data,
        synthetic=synthetic,
        labeled=args.labeled,
        methods=args.methods,
        seeds=args.seeds,
        quick=args.quick,
        steps=args.steps,
        n=args.n,
        device=args.device,
        progress=args.progress,
    )
    try:
        report = run_demo(cfg)
    except (ValueError, CheckpointError) as err:
        print(f"qgfast demo: error: {err}", file=sys.stderr)
        return 2
    print_table(report)
    if report.get("interrupted"):
        print(f"interrupted; the finished runs are in {args.out / 'report.json'}")
        return 130
    print(f"report: {args.out / 'report.json'}; picture: {args.out / 'demo.png'}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from qgfast.ssl.predict import predict_folder

    try:
        report = predict_folder(args.ckpt, args.data, args.out, args.device)
    except (ValueError, CheckpointError) as err:
        print(f"qgfast predict: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {report['cases']} predictions to {args.out}")
    if "metrics" in report:
        m = report["metrics"]
        print(f"dice {m['dice']:.4f}, jaccard {m['jaccard']:.4f}, hd95 {m['hd95']:.2f} mm")
    return 0
