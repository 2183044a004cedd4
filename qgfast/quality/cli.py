"""``qgfast train-quality`` and ``qgfast eval-quality``: the predictor over a dataset folder."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch


def add_commands(commands: argparse._SubParsersAction) -> None:
    from qgfast.data.synthetic import KINDS

    train = commands.add_parser(
        "train-quality",
        help="train and evaluate a quality predictor on a dataset folder",
        description="Train the quality predictor g on corrupted (and weak-model) masks of a "
        "labelled dataset folder (imagesTr/labelsTr or images/masks; PNG/JPEG or NIfTI), "
        "then evaluate it on the held-out cases. Writes best.pt, last.pt, report.json, "
        "calibration.png and TensorBoard logs (tb/) into --out.",
    )
    source = train.add_mutually_exclusive_group(required=True)
    source.add_argument("data", nargs="?", type=Path, help="dataset folder")
    source.add_argument(
        "--synthetic",
        choices=KINDS,
        help="generate the built-in synthetic set into OUT/data and train on it",
    )
    train.add_argument("--out", type=Path, required=True, help="output folder")
    train.add_argument("--n", type=int, default=96, help="synthetic cases (with --synthetic)")
    train.add_argument(
        "--size",
        help="resize to this shape: '224' or '96,96,64' (default 224 in 2D, file shape in 3D)",
    )
    train.add_argument("--val-fraction", type=float, default=0.2)
    train.add_argument("--epochs", type=int, default=150)
    train.add_argument("--k", type=int, default=50, help="corrupted masks per image per epoch")
    train.add_argument("--batch-size", type=int, default=32, help="(image, mask) pairs per step")
    train.add_argument("--images-per-batch", type=int, default=16, help="images per loader batch")
    train.add_argument("--lr", type=float, default=3e-4)
    train.add_argument("--patience", type=int, default=25)
    train.add_argument("--backbone", default="resnet18")
    train.add_argument("--per-class", action="store_true", help="one score per foreground class")
    train.add_argument(
        "--pretrained",
        help="backbone weights: imagenet (2D ResNet-18/34/50, torchvision's), medicalnet "
        "(3D ResNet-10/18/34/50, through MONAI) or an image-only ResNet state dict file",
    )
    train.add_argument("--footprint", choices=("cube", "ball"), default="cube")
    train.add_argument("--p-weak", type=float, default=0.05)
    train.add_argument("--weak-epochs", type=int, default=20)
    train.add_argument(
        "--augment",
        choices=("none", "light", "strong"),
        default="light",
        help="image augmentation in training (docs/quality.md): flips, rot90, small "
        "rotations/scales of image and ground truth, contrast/brightness/gamma/blur/noise",
    )
    train.add_argument(
        "--hard-fraction",
        type=float,
        default=0.0,
        help="with --synthetic lesion2d: share of hard cases (faint, fuzzy, atypical, hairy)",
    )
    train.add_argument("--amp", choices=("auto", "bf16", "fp16", "off"), default="auto")
    train.add_argument("--eval-k", type=int, default=20)
    train.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    train.add_argument("--device", help="cuda, cpu, ... (default: cuda when available)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    train.add_argument("--quiet", action="store_true", help="no progress output")
    train.set_defaults(func=cmd_train_quality)

    ev = commands.add_parser(
        "eval-quality",
        help="evaluate a predictor checkpoint on its held-out cases (or another folder)",
    )
    ev.add_argument("checkpoint", type=Path)
    ev.add_argument("--data", type=Path, help="dataset folder (default: the checkpoint's)")
    ev.add_argument("--k", type=int, default=20)
    ev.add_argument("--seed", type=int, default=12345)
    ev.add_argument("--device")
    ev.add_argument("--out", type=Path, help="write report.json and calibration.png here")
    ev.set_defaults(func=cmd_eval_quality)


def _parse_size(text: str | None, spatial_dims: int) -> tuple[int, ...] | None:
    if text is None:
        return (224, 224) if spatial_dims == 2 else None
    try:
        sides = tuple(int(s) for s in text.split(","))
    except ValueError:
        raise SystemExit(f"--size must be integers separated by commas, got {text!r}") from None
    if len(sides) == 1:
        sides *= spatial_dims
    if len(sides) != spatial_dims or min(sides) < 8:
        raise SystemExit(f"--size {text!r} does not suit {spatial_dims}D data (sides >= 8)")
    return sides


def _num_classes(root: Path, dataset) -> int:
    from qgfast.data import declared_num_classes

    declared = declared_num_classes(root)
    return declared if declared is not None else max(2, dataset.num_classes())


def _loaders(size, normalisation, images_per_batch, workers, seed):
    from torch.utils.data import DataLoader, DistributedSampler

    from qgfast.data import CaseDataset

    def loader(subset, shuffle):
        ds = CaseDataset(subset, size, normalisation)
        sampler = DistributedSampler(ds, num_replicas=1, rank=0, shuffle=shuffle, seed=seed)
        return ds, DataLoader(
            ds,
            batch_size=images_per_batch,
            sampler=sampler,
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=torch.cuda.is_available(),
        )

    return loader


# Checkpoints written before the data layer's one normalisation vocabulary
# (qgfast.data.intensity) named CaseDataset's modes differently: its "zscore" was over the
# nonzero voxels and "unit" is today's 2D "none".
_LEGACY_NORMALISATIONS = {"zscore": "zscore-nonzero", "unit": "none"}


def _saved_normalisation(info: dict[str, Any]) -> str:
    name = info.get("normalisation", "imagenet")
    return _LEGACY_NORMALISATIONS.get(name, name)


def _split(cases, fraction: float, seed: int):
    if not 0.0 < fraction < 1.0:
        raise SystemExit(f"--val-fraction must be in (0, 1), got {fraction}")
    order = torch.randperm(len(cases), generator=torch.Generator().manual_seed(seed)).tolist()
    n_val = max(1, round(fraction * len(cases)))
    val = sorted(order[:n_val])
    train = sorted(order[n_val:])
    return [cases[i] for i in train], [cases[i] for i in val]


def cmd_train_quality(args: argparse.Namespace) -> int:
    from qgfast.data import CaseDataset, find_cases, make_synthetic_dataset
    from qgfast.quality import (
        PredictorTrainConfig,
        QualityPredictor,
        evaluate_predictor,
        train_predictor,
    )
    from qgfast.quality.pretrained import PretrainedWeightsError, load_pretrained, shortcut_for

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    root = args.data
    if args.synthetic:
        root = out / "data"
        if not (root / "dataset.json").is_file() or not args.resume:
            print(f"writing {args.n} synthetic {args.synthetic} cases to {root}", flush=True)
            make_synthetic_dataset(
                args.synthetic, args.n, root, seed=args.seed, hard_fraction=args.hard_fraction
            )
    cases = [c for c in find_cases(root) if c.label is not None]
    if len(cases) < 2:
        raise SystemExit(f"{root}: need at least 2 labelled cases, found {len(cases)}")
    spatial_dims = cases[0].spatial_dims
    size = _parse_size(args.size, spatial_dims)
    train_cases, val_cases = _split(cases, args.val_fraction, args.seed)
    if not train_cases:
        raise SystemExit("no training cases left after the validation split")
    probe = CaseDataset(train_cases[:1], size, "none")[0]["image"]
    if spatial_dims == 3:
        normalisation = "zscore-nonzero"
    else:
        normalisation = "imagenet" if probe.shape[0] in (1, 3) else "none"
    make = _loaders(size, normalisation, args.images_per_batch, args.workers, args.seed)
    train_ds, train_loader = make(train_cases, True)
    _, val_loader = make(val_cases, False)
    num_classes = _num_classes(root, train_ds)
    image_channels = probe.shape[0]
    torch.manual_seed(args.seed)  # the initial weights are part of what --seed reproduces
    predictor = QualityPredictor(
        spatial_dims,
        image_channels,
        num_classes,
        backbone=args.backbone,
        per_class=args.per_class,
        shortcut_type=shortcut_for(args.pretrained, args.backbone, spatial_dims),
    )
    if args.pretrained and not args.resume:  # a resumed run restores its own weights
        try:
            missing = load_pretrained(predictor, args.pretrained)
        except (PretrainedWeightsError, FileNotFoundError, ValueError) as err:
            raise SystemExit(f"--pretrained {args.pretrained}: {err}") from None
        print(f"loaded {args.pretrained} weights; {len(missing)} backbone tensors left at init")
    config = PredictorTrainConfig(
        epochs=args.epochs,
        k=args.k,
        batch_size=args.batch_size,
        lr=args.lr,
        patience=args.patience,
        amp=args.amp,
        seed=args.seed,
        footprint=args.footprint,
        p_weak=args.p_weak,
        weak_epochs=args.weak_epochs,
        augment=args.augment,
        extra={"pretrained": args.pretrained},
    )
    data_info = {
        "root": str(Path(root).resolve()),
        "size": None if size is None else list(size),
        "normalisation": normalisation,
        "train_cases": [c.case_id for c in train_cases],
        "val_cases": [c.case_id for c in val_cases],
    }
    print(
        f"{len(train_cases)} training / {len(val_cases)} validation cases, {spatial_dims}D, "
        f"{image_channels} image channel(s), {num_classes} classes, size {size or 'as stored'}",
        flush=True,
    )
    t0 = time.perf_counter()
    result = train_predictor(
        predictor,
        train_loader,
        val_loader,
        config=config,
        out_dir=out,
        data_info=data_info,
        resume=args.resume,
        device=args.device,
        progress=not args.quiet,
    )
    seconds = time.perf_counter() - t0
    report = evaluate_predictor(
        predictor,
        val_loader,
        generator=result["generator"],
        k=args.eval_k,
        seed=args.seed + 12345,
        plot=out / "calibration.png",
        train_mae=_best_train_mae(result),
    )
    history = result["history"]
    report["training"] = {
        "seconds": seconds,
        "epochs_run": result["epochs_run"],
        "best_epoch": result["best_epoch"],
        "best_val_loss": result["best_val_loss"],
        "stopped_early": result["stopped_early"],
        "best_early": result["best_early"],
        "augment": args.augment,
        "pretrained": args.pretrained,
        "train_mae": [r.get("train_mae") for r in history],
        "val_mae": [r.get("val_mae") for r in history],
        "masks_per_s": sum(r["masks_per_s"] for r in history) / max(1, len(history)),
        "device": str(next(predictor.parameters()).device),
    }
    _write_report(report, out)
    return 0


def _best_train_mae(result: dict[str, Any]) -> float | None:
    """MAE on the training draws of the best epoch (the weights evaluated)."""
    rows = [r for r in result["history"] if r["epoch"] == result["best_epoch"]]
    return rows[0].get("train_mae") if rows else None


def cmd_eval_quality(args: argparse.Namespace) -> int:
    from qgfast.data import find_cases
    from qgfast.quality import evaluate_predictor, generator_from_checkpoint, load_predictor

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    predictor, ckpt = load_predictor(args.checkpoint, device)
    info: dict[str, Any] = ckpt.get("data", {})
    root = args.data or Path(info.get("root", ""))
    cases = [c for c in find_cases(root) if c.label is not None]
    if args.data is None and info.get("val_cases"):
        wanted = set(info["val_cases"])
        cases = [c for c in cases if c.case_id in wanted]
    if not cases:
        raise SystemExit(f"{root}: no labelled cases to evaluate")
    size = info.get("size")
    make = _loaders(size, _saved_normalisation(info), 16, 0, 0)
    _, loader = make(cases, False)
    generator = generator_from_checkpoint(ckpt, args.checkpoint.parent, device)
    plot = None if args.out is None else args.out / "calibration.png"
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
    report = evaluate_predictor(
        predictor, loader, generator=generator, k=args.k, seed=args.seed, plot=plot
    )
    _write_report(report, args.out)
    return 0


def _write_report(report: dict[str, Any], out: Path | None) -> None:
    if out is not None:
        (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    rows = [("held-out corrupted", report["corrupted"]), ("blackout", report["blackout"])]
    rows += [("shuffle", report["shuffle"]), ("weak-model masks", report["weak_model"])]
    print(f"{'':20} {'n':>6} {'MAE':>7} {'Pearson':>8} {'Spearman':>9}")
    for name, m in rows:
        print(f"{name:20} {m['n']:>6} {m['mae']:>7.4f} {m['pearson']:>8.4f} {m['spearman']:>9.4f}")
    if "training" in report:
        t = report["training"]
        print(
            f"trained {t['epochs_run']} epochs in {t['seconds']:.0f} s on {t['device']} "
            f"(best epoch {t['best_epoch']}, {t['masks_per_s']:.0f} corrupted masks/s)"
        )
        if report.get("generalisation_gap") is not None:
            print(
                f"generalisation gap {report['generalisation_gap']:+.3f} (held-out MAE − MAE "
                f"on the best epoch's training draws), augmentation {t['augment']}"
            )
        if t.get("best_early"):
            print(
                f"warning: the best epoch ({t['best_epoch']} of {t['epochs_run']}) is in the "
                "first 20 % of training: the predictor is likely memorising its images"
            )
    if out is not None:
        print(f"report: {out / 'report.json'}; calibration plot: {out / 'calibration.png'}")
