"""``train_predictor``: fit g to the Dice of corrupted masks (docs/method.md, phase 1).

Each labelled batch yields K corrupted masks per image, drawn on the training device by
``VQMGenerator`` (fresh every epoch: the seed mixes epoch and batch), with their hard-Dice
targets. The B·K (image, mask) pairs are shuffled and fed to g in minibatches of
``batch_size``; images are indexed, never copied K times. SmoothL1 loss, AdamW, cosine warm
restarts stepped per minibatch, optional mixed precision, grad-norm clipping, early
stopping on the validation loss (a fixed corruption draw, identical every epoch), best and
last checkpoints, resume, tqdm progress and TensorBoard scalars.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from qgfast.corrupt import VQMGenerator
from qgfast.quality.augment import augment_batch
from qgfast.quality.augment import level as augment_level
from qgfast.quality.checkpoint import read_checkpoint, save_checkpoint
from qgfast.quality.metrics import agreement
from qgfast.quality.model import QualityPredictor
from qgfast.quality.weak import save_weak_models, train_weak_models, unpack_batch

VAL_SEED_OFFSET = 1_000_003  # validation draws never coincide with a training draw
AUGMENT_SEED_OFFSET = 2_000_029  # augmentation draws are independent of the corruptions'
EARLY_BEST = 0.2  # a best epoch in the first 20 % of training suggests memorising
RESUME_ONLY = ("optimizer", "scheduler", "scaler")


@dataclass
class PredictorTrainConfig:
    """Phase-1 hyper-parameters; defaults are the paper's."""

    epochs: int = 150
    k: int = 50  # corrupted masks per image per epoch
    batch_size: int = 32  # (image, mask) pairs per optimiser step
    lr: float = 3e-4
    weight_decay: float = 5e-4
    t0: int = 10  # cosine warm restarts: first period in epochs, then ×t_mult
    t_mult: int = 2
    patience: int = 25  # early stop after this many epochs without a better val loss
    amp: str = "auto"  # auto (bf16 on CUDA, off on CPU) | bf16 | fp16 | off
    grad_clip: float = 1.0
    val_k: int = 10
    seed: int = 0
    footprint: str = "cube"
    categories: dict[str, float] | None = None
    p_weak: float = 0.05
    weak_epochs: int = 20
    augment: str = "light"  # none | light | strong (qgfast.quality.augment)
    weak_channels: tuple[int, ...] = (16, 32, 64, 128, 256)
    extra: dict[str, Any] = field(default_factory=dict)  # caller's notes, saved verbatim

    def __post_init__(self) -> None:
        for name in ("epochs", "k", "batch_size", "val_k", "t0", "t_mult"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.amp not in ("auto", "bf16", "fp16", "off"):
            raise ValueError(f"amp must be auto, bf16, fp16 or off, got {self.amp!r}")
        if not 0.0 <= self.p_weak <= 1.0:
            raise ValueError(f"p_weak must be in [0, 1], got {self.p_weak}")
        augment_level(self.augment)  # a clear error for an unknown level


def _step_seed(seed: int, epoch: int, batch: int) -> int:
    return (seed * 1_000_003 + epoch * 10_007 + batch) % (2**31 - 1)


def amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of an ``amp`` setting on ``device`` (None: full precision);
    the SSL trainer uses the same rule."""
    if amp == "off" or (amp == "auto" and device.type != "cuda"):
        return None
    if amp == "fp16":
        return torch.float16
    return torch.bfloat16


def _batches(data: Iterable[Any], device: torch.device, predictor: QualityPredictor):
    for batch in data:
        images, labels = unpack_batch(batch)
        if images.shape[1] != predictor.image_channels:
            raise ValueError(
                f"images have {images.shape[1]} channels, the predictor expects "
                f"{predictor.image_channels}"
            )
        yield images.to(device, non_blocking=True), labels.to(device, non_blocking=True)


def corrupt_batch(generator, predictor, images, labels, k, seed):
    """K corrupted copies per image → (mask inputs [B·K, M, *S] float, targets, ops)."""
    classes = predictor.num_classes
    res = generator.generate(
        labels, images, k=k, seed=seed, num_classes=None if classes == 2 else classes
    )
    target = res.quality if predictor.per_class or classes == 2 else res.quality.mean(1)
    return predictor.mask_input(res.masks), target, res.ops


@torch.no_grad()
def validate(predictor, generator, data, device, k, seed, amp_dtype) -> dict[str, float]:
    """SmoothL1 loss and agreement on a fixed corruption draw of ``data``."""
    predictor.eval()
    preds, targets = [], []
    for i, (images, labels) in enumerate(_batches(data, device, predictor)):
        masks, target, _ = corrupt_batch(generator, predictor, images, labels, k, seed + i)
        source = torch.arange(masks.shape[0], device=device) // k
        for chunk in torch.arange(masks.shape[0], device=device).split(256):
            x = torch.cat([images[source[chunk]], masks[chunk].to(images.dtype)], 1)
            with torch.autocast(device.type, amp_dtype, enabled=amp_dtype is not None):
                preds.append(predictor(x).float())
            targets.append(target[chunk].float())
    p, t = torch.cat(preds), torch.cat(targets)
    return {"loss": float(F.smooth_l1_loss(p, t)), **agreement(p, t)}


def train_predictor(
    predictor: QualityPredictor,
    train_data: Iterable[Any],
    val_data: Iterable[Any] | None = None,
    *,
    config: PredictorTrainConfig | None = None,
    out_dir: str | Path | None = None,
    generator: VQMGenerator | None = None,
    data_info: dict[str, Any] | None = None,
    resume: bool = False,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train ``predictor`` in place; returns {"best_val_loss", "best_epoch", "epochs_run",
    "stopped_early", "history", "checkpoint"}.

    train_data / val_data: re-iterable labelled batches (dicts with "image" [B, C, *S]
        float and "label" [B, 1, *S] integer, or pairs), e.g. a torch DataLoader. A sampler
        with ``set_epoch`` (DistributedSampler) is told the epoch.
    generator: the corruption mix; by default the paper's (``config.categories``,
        ``config.footprint``) plus, when ``config.p_weak`` > 0, weak-model snapshots trained
        here on ``train_data`` (saved as ``weak_models.pt`` beside the checkpoints).
    out_dir: where ``best.pt``/``last.pt`` and TensorBoard logs (``tb/``) go; None keeps
        nothing on disk. resume: continue from ``out_dir/last.pt``.
    data_info: preprocessing/split facts stored in the checkpoint (the CLI records the
        image size, normalisation and validation cases there).
    """
    cfg = config or PredictorTrainConfig()
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    out = None if out_dir is None else Path(out_dir)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    if resume and out is None:
        raise ValueError("resume needs out_dir (the folder holding last.pt)")
    predictor.to(device)
    torch.manual_seed(cfg.seed)

    weak_file = None
    if generator is None:
        weak: list = []
        if cfg.p_weak > 0:
            weak_path = None if out is None else out / "weak_models.pt"
            if resume and weak_path is not None and weak_path.is_file():
                from qgfast.quality.weak import load_weak_models

                weak = load_weak_models(weak_path, device)
            else:
                images, _ = unpack_batch(next(iter(train_data)))
                weak_cfg = {
                    "spatial_dims": predictor.spatial_dims,
                    "in_channels": images.shape[1],
                    "num_classes": predictor.num_classes,
                    "channels": list(cfg.weak_channels),
                }
                weak = train_weak_models(
                    train_data,
                    epochs=cfg.weak_epochs,
                    device=device,
                    seed=cfg.seed,
                    progress=progress,
                    **weak_cfg,
                )
                if weak_path is not None:
                    save_weak_models(weak, weak_path, weak_cfg)
            weak_file = "weak_models.pt"
        generator = VQMGenerator(
            cfg.categories,
            footprint=cfg.footprint,
            weak_models=weak,
            p_weak=cfg.p_weak if weak else 0.0,
        )
    elif generator.weak_models and generator.p_weak > 0:
        warnings.warn(
            "a caller-built generator's weak models are not saved with the checkpoint: "
            "evaluation from the checkpoint will draw without them",
            stacklevel=2,
        )

    optimizer = torch.optim.AdamW(predictor.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
        optimizer, T_0=cfg.t0, T_mult=cfg.t_mult
    )
    cast = amp_dtype(cfg.amp, device)
    scaler = torch.amp.GradScaler(device.type, enabled=cast == torch.float16)
    state = {"epoch": 0, "best_val_loss": math.inf, "best_epoch": 0, "bad_epochs": 0}
    history: list[dict[str, Any]] = []
    if resume and (out / "last.pt").is_file():
        ckpt = read_checkpoint(out / "last.pt", device)
        if dict(ckpt["predictor"]) != _plain(predictor.config):
            raise ValueError(
                f"{out / 'last.pt'} was trained with predictor {ckpt['predictor']}, "
                f"not {predictor.config}"
            )
        predictor.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        scaler.load_state_dict(ckpt["scaler"])
        state = {key: ckpt[key] for key in state}
        history = list(ckpt["history"])

    writer = _summary_writer(out)
    record = {
        "predictor": _plain(predictor.config),
        "generator": {**generator.config(), "weak_models": weak_file},
        "train": _plain(asdict(cfg)),
        "data": _plain(data_info or {}),
    }
    stopped_early = False
    for epoch in range(state["epoch"] + 1, cfg.epochs + 1):
        sampler = getattr(train_data, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        predictor.train()
        t_start, n_masks, loss_sum, n_steps = time.perf_counter(), 0, 0.0, 0
        gen_seconds = 0.0
        n_batches = len(train_data) if hasattr(train_data, "__len__") else None
        batches = _batches(train_data, device, predictor)
        if progress:
            from tqdm.auto import tqdm

            batches = tqdm(batches, total=n_batches, desc=f"epoch {epoch}", leave=False)
        gen = torch.Generator().manual_seed(_step_seed(cfg.seed, epoch, 0))
        aug = augment_level(cfg.augment)
        abs_err_sum, n_err = 0.0, 0
        for b, (images, labels) in enumerate(batches):
            # image and ground truth move together before the corruptions are drawn from it,
            # so every quality target is the Dice against the augmented ground truth
            step_seed = _step_seed(cfg.seed, epoch, b)
            images, labels = augment_batch(images, labels, aug, step_seed + AUGMENT_SEED_OFFSET)
            t_gen = time.perf_counter()
            masks, target, _ = corrupt_batch(generator, predictor, images, labels, cfg.k, step_seed)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            gen_seconds += time.perf_counter() - t_gen
            n_masks += masks.shape[0]
            order = torch.randperm(masks.shape[0], generator=gen).to(device)
            chunks = order.split(cfg.batch_size)
            for c, chunk in enumerate(chunks):
                x = torch.cat([images[chunk // cfg.k], masks[chunk].to(images.dtype)], 1)
                with torch.autocast(device.type, cast, enabled=cast is not None):
                    q = predictor(x)
                loss = F.smooth_l1_loss(q.float(), target[chunk].float())
                abs_err_sum += float((q.detach().float() - target[chunk].float()).abs().sum())
                n_err += q.numel()
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(predictor.parameters(), cfg.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                frac = (b + (c + 1) / len(chunks)) / n_batches if n_batches else 1.0
                scheduler.step(epoch - 1 + min(frac, 1.0))
                loss_sum += float(loss.detach())
                n_steps += 1
        if n_steps == 0:
            raise ValueError("train_data yielded no batches")
        seconds = time.perf_counter() - t_start
        row: dict[str, Any] = {
            "epoch": epoch,
            "train_loss": loss_sum / n_steps,
            # MAE on the training draws, beside val_mae: the generalisation gap per epoch
            "train_mae": abs_err_sum / max(1, n_err),
            "lr": optimizer.param_groups[0]["lr"],
            "seconds": seconds,
            "masks_per_s": n_masks / seconds,  # (image, mask) pairs drawn and trained on
            "generate_masks_per_s": n_masks / max(gen_seconds, 1e-9),  # the generator alone
        }
        if val_data is not None:
            val = validate(
                predictor,
                generator,
                val_data,
                device,
                cfg.val_k,
                cfg.seed + VAL_SEED_OFFSET,
                cast,
            )
            row |= {f"val_{key}": value for key, value in val.items()}
            improved = val["loss"] < state["best_val_loss"]
        else:
            improved = True  # without validation the latest weights are the best
        if improved:
            state["best_val_loss"] = row.get("val_loss", math.nan)
            state["best_epoch"] = epoch
            state["bad_epochs"] = 0
        else:
            state["bad_epochs"] += 1
        state["epoch"] = epoch
        history.append(row)
        if writer is not None:
            for key, value in row.items():
                if key != "epoch" and isinstance(value, (int, float)):
                    writer.add_scalar(key.replace("_", "/", 1), value, epoch)
            writer.flush()
        if progress:
            _print_row(row)
        if out is not None:
            ckpt = {
                **record,
                **state,
                "model": predictor.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(),
                "history": history,
            }
            save_checkpoint(ckpt, out / "last.pt")
            if improved:  # weights and configs only: the optimiser state is for resuming
                lean = {k: v for k, v in ckpt.items() if k not in RESUME_ONLY}
                save_checkpoint(lean, out / "best.pt")
        if state["bad_epochs"] >= cfg.patience:
            stopped_early = True
            break
    if writer is not None:
        writer.close()
    if out is not None and (out / "best.pt").is_file():
        best = read_checkpoint(out / "best.pt", device)
        predictor.load_state_dict(best["model"])
    early = state["epoch"] >= 5 and state["best_epoch"] <= EARLY_BEST * state["epoch"]
    if early and val_data is not None:
        warnings.warn(
            f"the best validation loss came at epoch {state['best_epoch']} of "
            f"{state['epoch']} (the first {EARLY_BEST:.0%}): the predictor may be memorising "
            "its training images; try --augment strong, more cases or a pretrained backbone",
            stacklevel=2,
        )
    return {
        "best_val_loss": state["best_val_loss"],
        "best_epoch": state["best_epoch"],
        "best_early": bool(early),
        "epochs_run": state["epoch"],
        "stopped_early": stopped_early,
        "history": history,
        "checkpoint": None if out is None else str(out / "best.pt"),
        "generator": generator,
    }


def _plain(value: Any) -> Any:
    """Tuples → lists, recursively, so configs compare equal after a save/load trip."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _summary_writer(out: Path | None):
    if out is None:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is a dependency, but a trimmed install may lack it
        warnings.warn("tensorboard is not installed: no TensorBoard logs", stacklevel=3)
        return None
    return SummaryWriter(str(out / "tb"))


def _print_row(row: dict[str, Any]) -> None:
    parts = [f"epoch {row['epoch']}", f"loss {row['train_loss']:.4f}"]
    if "val_loss" in row:
        parts += [
            f"val {row['val_loss']:.4f}",
            f"MAE train {row['train_mae']:.3f} / held-out {row['val_mae']:.3f}",
            f"r {row['val_pearson']:.3f}",
        ]
    parts += [f"{row['masks_per_s']:.0f} masks/s", f"{row['seconds']:.1f}s"]
    print(" · ".join(parts), flush=True)
