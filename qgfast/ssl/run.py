"""One ``qgfast train`` run from a resolved ``RunConfig``: check the data, split it, build
the streams, network(s), guide, framework, validator and audit, train, then score the
test split once with the best and the final weights (docs/training.md).

Everything that can be wrong with the input is checked before the first step: an empty
folder, labels missing or mismatched with their images (shape, affine), unreadable files
(``--skip-bad-cases`` drops and lists them instead), too few cases for ``--labeled``, an
unwritable run folder, a quality predictor trained for other classes, channels or
dimensions.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from qgfast.data import DataError, find_cases, make_synthetic_dataset
from qgfast.data.folders import Case
from qgfast.ssl import distributed as dist
from qgfast.ssl.config import RunConfig
from qgfast.ssl.inference import Preprocessing, Validator
from qgfast.ssl.splits import Split, check_manifest, make_split, read_list, write_manifest

DEFAULT_PATCH = (96, 96, 64)
DEFAULT_SIZE = (224, 224)


@dataclass
class DataInfo:
    root: Path
    spatial_dims: int
    in_channels: int
    num_classes: int
    shapes: dict[str, tuple[int, ...]]  # case id → spatial shape
    skipped: list[tuple[str, str]]  # (case id, reason)


# -- input checks --------------------------------------------------------------------------
def _case_header(case: Case) -> tuple[tuple[int, ...], int, np.ndarray | None]:
    """(spatial shape, channels, affine or None) from headers only; DataError if unreadable
    or if the label disagrees with the image."""
    if case.spatial_dims == 3:
        from qgfast.data.nifti import best_affine, nifti_header

        heads = [nifti_header(p) for p in case.images]
        shape = tuple(heads[0]["shape"][:3])
        channels = sum(h["shape"][3] if len(h["shape"]) > 3 else 1 for h in heads)
        affine = best_affine(heads[0])
        for p, h in zip(case.images, heads, strict=True):
            if tuple(h["shape"][:3]) != shape:
                raise DataError(p, f"channel file shape {h['shape'][:3]} != {list(shape)}")
        if case.label is not None:
            lh = nifti_header(case.label)
            if tuple(lh["shape"][:3]) != shape:
                raise DataError(
                    case.label, f"label shape {lh['shape'][:3]} != image shape {list(shape)}"
                )
            if not np.allclose(best_affine(lh), affine, atol=1e-3, rtol=1e-4):
                raise DataError(case.label, "label affine differs from the image's (misaligned)")
        return shape, channels, affine
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(case.images[0]) as img:
            size, mode = img.size, img.mode
        shape = (size[1], size[0])
        if case.label is not None:
            with Image.open(case.label) as lab:
                if (lab.size[1], lab.size[0]) != shape:
                    raise DataError(case.label, f"mask size {lab.size} != image size {size}")
    except (OSError, UnidentifiedImageError) as err:
        raise DataError(case.images[0], f"cannot open image: {err}") from err
    return shape, 1 if mode in ("L", "I", "I;16", "F", "1") else 3, None


def check_cases(cases: list[Case], skip_bad: bool) -> tuple[list[Case], dict, list, int]:
    """(good cases, shapes, skipped [(id, reason)], image channels)."""
    good, shapes, skipped, channels = [], {}, [], set()
    for case in cases:
        try:
            shape, ch, _ = _case_header(case)
        except DataError as err:
            if not skip_bad:
                raise DataError(
                    err.path, f"{err.reason} (case {case.case_id}; --skip-bad-cases skips it)"
                ) from None
            skipped.append((case.case_id, str(err)))
            continue
        good.append(case)
        shapes[case.case_id] = shape
        channels.add(ch)
    if not good:
        raise DataError(cases[0].images[0].parent, "no readable case left")
    if len(channels) > 1:
        raise DataError(cases[0].images[0].parent, f"cases differ in channels: {channels}")
    return good, shapes, skipped, channels.pop()


def _num_classes(root: Path, labeled: list[Case]) -> int:
    from qgfast.data.folders import declared_num_classes, read_label

    declared = declared_num_classes(root)
    if declared is not None:
        return declared
    return max(2, 1 + max(int(read_label(c.label).max()) for c in labeled if c.label))


def _writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".qgfast-write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as err:
        raise ValueError(f"cannot write to the run folder {out}: {err}") from None


def prepare_data(cfg: RunConfig, out: Path) -> tuple[DataInfo, Split, list[Case]]:
    if (cfg.data is None) == (cfg.synthetic is None):
        raise ValueError(
            "give exactly one of --data DIR and --synthetic lesion2d|cardiac2d|organ3d"
        )
    if cfg.synthetic is not None:
        root = out / "data"
        if dist.is_main() and not (root / "dataset.json").is_file():
            size = cfg.synthetic_size
            make_synthetic_dataset(
                cfg.synthetic, cfg.n, root, seed=cfg.seed, size=None if size is None else size
            )
        dist.barrier()
    else:
        root = Path(cfg.data)
    cases = find_cases(root)
    extra = find_cases(cfg.unlabeled_data) if cfg.unlabeled_data else []
    extra = [Case(f"unlabeled/{c.case_id}", c.images, None) for c in extra]
    good, shapes, skipped, channels = check_cases(cases + extra, cfg.skip_bad_cases)
    extra_ids = {c.case_id for c in extra}
    split = make_split(
        [c for c in good if c.case_id not in extra_ids],
        labeled=cfg.labeled,
        labeled_list=read_list(cfg.labeled_list) if cfg.labeled_list else None,
        val_fraction=cfg.val_fraction,
        test_fraction=cfg.test_fraction,
        val_list=read_list(cfg.val_list) if cfg.val_list else None,
        test_list=read_list(cfg.test_list) if cfg.test_list else None,
        audit=cfg.audit_split,
        extra_unlabeled=[c for c in good if c.case_id in extra_ids],
        seed=cfg.seed,
    )
    dims = good[0].spatial_dims
    info = DataInfo(root, dims, channels, _num_classes(root, split.labeled), shapes, skipped)
    return info, split, good


# -- streams and preprocessing -------------------------------------------------------------
def _preprocessing(cfg: RunConfig, info: DataInfo, split: Split, divisor: int) -> Preprocessing:
    if info.spatial_dims == 3:
        used = split.labeled + split.unlabeled
        smallest = np.min([info.shapes[c.case_id] for c in used], axis=0)
        if cfg.patch is not None:
            patch = tuple(int(p) for p in cfg.patch)
            if len(patch) != 3 or min(patch) < 1:
                raise ValueError(f"--patch must be 3 positive sides, got {cfg.patch}")
        else:
            patch = tuple(
                max(divisor, min(d, int(s)) // divisor * divisor)
                for d, s in zip(DEFAULT_PATCH, smallest, strict=True)
            )
        bad = [p for p in patch if p % divisor]
        if bad:
            raise ValueError(f"patch {patch}: every side must be a multiple of {divisor}")
        return Preprocessing(
            3,
            cfg.normalisation or "zscore-nonzero",
            patch=patch,
            overlap=cfg.overlap,
            sw_batch_size=cfg.sw_batch_size,
        )
    size = tuple(int(s) for s in (cfg.size or DEFAULT_SIZE))
    if len(size) == 1:
        size = size * 2
    if len(size) != 2 or any(s % divisor for s in size):
        raise ValueError(f"--size {size}: two sides, each a multiple of {divisor}")
    norm = cfg.normalisation or "imagenet"
    return Preprocessing(2, norm, size=size)


def _case_dicts(cases: list[Case], with_labels: bool) -> list[dict[str, Any]]:
    return [{"images": list(c.images), "label": c.label if with_labels else None} for c in cases]


def make_stream(
    pre: Preprocessing,
    labeled: list[Case],
    unlabeled: list[Case],
    cfg: RunConfig,
    *,
    seed: int,
    augment: bool = True,
    batch_size: int | None = None,
):
    """The two-stream training loader (labels of the unlabelled cases never passed in),
    or an un-augmented labelled-only stream (``unlabeled=[]``, the audit)."""
    from qgfast.data import ImageStream, VolumeStream

    cases = _case_dicts(labeled, True) + _case_dicts(unlabeled, False)
    common: dict[str, Any] = {
        "labeled_batch_size": cfg.batch_size if batch_size is None else batch_size,
        "unlabeled_batch_size": cfg.unlabeled_batch_size if unlabeled else 0,
        "labeled": list(range(len(labeled))),
        "unlabeled": list(range(len(labeled), len(cases))),
        "seed": seed,
        "rank": dist.rank(),
        "world_size": dist.world_size(),
        "threads": cfg.threads,
        "on_error": "skip" if cfg.skip_bad_cases else "raise",
        "pin_memory": torch.cuda.is_available(),
    }
    if pre.spatial_dims == 3:
        off: dict[str, Any] = {}
        if not augment:
            off = {"flip_axes": (), "rot90_plane": None, "scale": None, "shift": None}
            off |= {"gamma": None, "noise_std": 0.0}
        return VolumeStream(
            cases,
            pre.patch,
            samples_per_volume=cfg.samples_per_volume if augment else 1,
            foreground_prob=cfg.foreground_prob,
            normalisation=pre.normalisation,
            clip=pre.clip,
            window=pre.window,
            **off,
            **common,
        )
    off = {}
    if not augment:
        off = {"hflip": False, "vflip": False, "rot90": False}
        off |= {"brightness": None, "contrast": None, "gain": None}
    return ImageStream(cases, pre.size, normalisation=pre.normalisation, **off, **common)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 (the global state user code draws from)
    torch.manual_seed(seed)


# -- network, guide, framework -------------------------------------------------------------
def load_guide(path: str, info: DataInfo, device: torch.device):
    """The frozen guide of a ``qgfast train-quality`` checkpoint, refused when it scores
    another number of classes, image channels or dimensions than this data has."""
    from qgfast.quality import QualityGuide, load_predictor

    predictor, ckpt = load_predictor(path, device)
    checks = (
        ("spatial dimensions", predictor.spatial_dims, info.spatial_dims),
        ("classes", predictor.num_classes, info.num_classes),
        ("image channels", predictor.image_channels, info.in_channels),
    )
    for what, theirs, ours in checks:
        if theirs != ours:
            raise ValueError(
                f"--quality {path}: the predictor was trained for {theirs} {what}, this data "
                f"has {ours}; train one on this data (qgfast train-quality)"
            )
    return QualityGuide(predictor), ckpt


def _ramp(cfg: RunConfig, default_final: float):
    from qgfast.ssl.ramps import ConstantRamp, SigmoidRamp, paper_unsupervised_ramp

    final = default_final if cfg.consistency is None else cfg.consistency
    if cfg.ramp == "paper":
        return None if cfg.consistency is None else paper_unsupervised_ramp(final)
    if cfg.ramp == "sigmoid":
        return SigmoidRamp(final, cfg.ramp_length, unit="step", every=150)
    if cfg.ramp == "constant":
        return ConstantRamp(final)
    raise ValueError(f"--ramp must be paper, sigmoid or constant, got {cfg.ramp!r}")


def build_models(cfg: RunConfig, info: DataInfo, device: torch.device) -> list[torch.nn.Module]:
    """The network(s), initialised from the run's seed (CPS's second from seed + 1)."""
    from qgfast.ssl.cps import reinitialised_copy
    from qgfast.ssl.methods import two_networks
    from qgfast.ssl.networks import build_network

    torch.manual_seed(cfg.seed)
    model = build_network(
        cfg.model, info.spatial_dims, info.in_channels, info.num_classes, cfg.channels
    )
    models = [model]
    if two_networks(cfg.method):
        models.append(reinitialised_copy(model, cfg.seed + 1))
    return [dist.wrap(m, device) for m in models]


def build_framework_for(cfg: RunConfig, models, guide, steps_per_epoch: int, total_steps: int):
    from qgfast.ssl.methods import build_framework

    kw: dict[str, Any] = {"seed": cfg.seed, "steps_per_epoch": steps_per_epoch}
    if cfg.ema_decay is not None:
        kw["ema_decay"] = cfg.ema_decay
    try:
        fw = build_framework(
            cfg.method,
            models[0],
            guide,
            model_b=models[1] if len(models) > 1 else None,
            total_steps=total_steps,
            **kw,
        )
    except TypeError as err:
        if "ema_decay" in str(err):
            raise ValueError(
                f"method {cfg.method!r} has no EMA teacher; drop --ema-decay"
            ) from None
        raise
    ramp = _ramp(cfg, type(fw).unsupervised_weight)
    if ramp is not None:
        fw.consistency_ramp = ramp
    return fw


AUDIT_SAMPLES = 64  # per rank: enough for a Pearson r and a scatter, cheap at each validation


def _audit(cfg, pre, split, guide, device):
    from qgfast.ssl.audit import PseudolabelAudit

    if guide is None or len(split.audit) < dist.world_size():
        return None
    stream = make_stream(pre, split.audit, [], cfg, seed=cfg.seed + 7, augment=False)
    batches, samples = [], 0
    for b in stream:
        batches.append(b)
        samples += len(b["image"])
        if samples >= AUDIT_SAMPLES:
            break
    return PseudolabelAudit(batches, device)


# -- the run -------------------------------------------------------------------------------
def train_run(cfg: RunConfig, out: Path, resume: bool = False) -> dict[str, Any]:
    """Train one seed into ``out``; returns the report (also written to out/report.json)."""
    from qgfast.ssl.checkpoint import load_checkpoint
    from qgfast.ssl.ema import unwrap
    from qgfast.ssl.networks import min_divisor
    from qgfast.ssl.optim import OptimConfig
    from qgfast.ssl.trainer import Trainer, TrainerConfig, amp_dtype

    device = dist.setup(cfg.device)
    if dist.is_main():
        _writable(out)
    dist.barrier()
    if cfg.deterministic:
        from qgfast.ssl.trainer import set_deterministic

        set_deterministic(True)
    _seed_everything(cfg.seed)
    info, split, _ = prepare_data(cfg, out)
    if dist.is_main():
        (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=1) + "\n")
        if resume and (out / "split.json").is_file():
            check_manifest(split, cfg.seed, out / "split.json")
        else:
            write_manifest(split, cfg.seed, out / "split.json")
        if info.skipped:
            (out / "skipped_cases.json").write_text(json.dumps(info.skipped, indent=1) + "\n")
    from qgfast.ssl.methods import needs_guide

    guide = None
    if needs_guide(cfg.method):
        if cfg.quality is None:
            raise ValueError(f"method {cfg.method!r} needs --quality CKPT (qgfast train-quality)")
        guide, _ = load_guide(cfg.quality, info, device)
    elif cfg.quality is not None:
        raise ValueError(f"method {cfg.method!r} does not use --quality; drop it")
    pre = _preprocessing(cfg, info, split, min_divisor(cfg.model, cfg.channels))
    if dist.is_main():
        print(
            f"{info.spatial_dims}D, {info.in_channels} channel(s), {info.num_classes} classes; "
            f"{len(split.labeled)} labelled / {len(split.unlabeled)} unlabelled / "
            f"{len(split.validation)} validation / {len(split.test)} test cases"
            + (f"; skipped {len(info.skipped)} unreadable" if info.skipped else ""),
            flush=True,
        )
    needs_unlabeled = cfg.method not in ("sup",)
    stream = make_stream(
        pre, split.labeled, split.unlabeled if needs_unlabeled else [], cfg, seed=cfg.seed
    )
    steps_per_epoch = len(stream)
    if steps_per_epoch < 1:
        raise ValueError(
            f"{len(split.labeled)} labelled case(s) give no batch of {cfg.batch_size} per epoch "
            f"on each of {dist.world_size()} process(es); lower --batch-size"
        )
    total = cfg.max_steps or (cfg.epochs or 1) * steps_per_epoch
    models = build_models(cfg, info, device)
    fw = build_framework_for(cfg, models, guide, steps_per_epoch, total)
    amp = amp_dtype(cfg.amp, device)
    validator = None
    if split.validation:
        validator = Validator(split.validation, pre, info.num_classes, device, amp)
    tcfg = TrainerConfig(
        epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        optim=OptimConfig(
            optimizer=cfg.optimizer,
            lr=cfg.lr,
            weight_decay=cfg.weight_decay,
            momentum=cfg.momentum,
            schedule=cfg.schedule,
            min_lr=min(cfg.min_lr, cfg.lr),
            warmup_steps=cfg.warmup_steps,
        ),
        grad_clip=cfg.grad_clip or None,
        amp=cfg.amp,
        val_every=cfg.val_every,
        patience=cfg.patience or None,
        checkpoint_every=cfg.checkpoint_every,
        log_every=cfg.log_every,
        skip_nonfinite=cfg.skip_nonfinite,
        deterministic=cfg.deterministic,
        progress=cfg.progress,
    )
    run_info = {
        "config": cfg.to_dict(),
        "preprocessing": pre.to_dict(),
        "spatial_dims": info.spatial_dims,
        "in_channels": info.in_channels,
        "num_classes": info.num_classes,
    }
    audit = _audit(cfg, pre, split, guide, device)
    trainer = Trainer(
        fw,
        stream,
        out_dir=out,
        config=tcfg,
        validator=validator,
        audit=audit,
        device=device,
        run_info=run_info,
    )
    summary = trainer.fit(resume=resume)
    report: dict[str, Any] = {"method": cfg.method, "seed": cfg.seed, "training": summary}
    report["stream"] = {k: v for k, v in stream.stats().items() if k != "skipped"}
    if audit is not None and audit.last_pairs is not None:
        report["audit_pairs"] = audit.last_pairs  # the last validation's, for a scatter
    if summary["stopped"] == "interrupted":
        return report
    if split.test:  # read once, after training: the final weights, then the best
        tester = Validator(split.test, pre, info.num_classes, device, amp)
        report["test_final"] = tester(fw.eval_model)
        if (out / "best.pt").is_file():
            best = load_checkpoint(out / "best.pt", "cpu")
            unwrap(fw.eval_model).load_state_dict(best["models"][0])
            report["test_best"] = tester(fw.eval_model)
    if dist.is_main():
        (out / "report.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    return report
