"""Optimisers and learning-rate schedules of the trainer (one optimiser per trained model:
CPS's two networks each get their own, as in the paper).

Defaults are the method release's phase-2 recipe: AdamW, lr 1e-4, weight decay 1e-4,
cosine decay to 1e-6. The SSL4MIS 3D recipes use SGD (lr 0.01, momentum 0.9, weight
decay 1e-4) with poly decay (1 − t/T)^0.9; both are a keyword away.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

OPTIMIZERS = ("adamw", "sgd", "adam")
SCHEDULES = ("cosine", "poly", "constant")


@dataclass(frozen=True)
class OptimConfig:
    optimizer: str = "adamw"
    lr: float = 1e-4
    weight_decay: float = 1e-4
    momentum: float = 0.9  # SGD only
    nesterov: bool = False  # SGD only
    schedule: str = "cosine"
    min_lr: float = 1e-6  # cosine's floor
    poly_power: float = 0.9
    warmup_steps: int = 0  # linear from 0 to lr

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive number, got {self.lr}")
        if self.weight_decay < 0 or self.min_lr < 0 or self.warmup_steps < 0:
            raise ValueError("weight_decay, min_lr and warmup_steps must be >= 0")
        if self.min_lr > self.lr:
            raise ValueError(f"min_lr {self.min_lr} exceeds lr {self.lr}")


def make_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError(f"{type(model).__name__} has no parameter that requires a gradient")
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            params,
            lr=cfg.lr,
            momentum=cfg.momentum,
            weight_decay=cfg.weight_decay,
            nesterov=cfg.nesterov,
        )
    kind = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    return kind(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def lr_factor(step: int, total_steps: int, cfg: OptimConfig) -> float:
    """The multiplier of the base lr before optimiser step ``step`` (0-based) of
    ``total_steps``: linear warm-up, then the schedule over the remaining steps."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return 1.0
    span = max(1, total_steps - cfg.warmup_steps)
    t = min(1.0, (step - cfg.warmup_steps) / span)
    if cfg.schedule == "poly":
        return (1.0 - t) ** cfg.poly_power
    floor = cfg.min_lr / cfg.lr
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * t))


def make_scheduler(
    optimizer: torch.optim.Optimizer, total_steps: int, cfg: OptimConfig
) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step ``LambdaLR`` of ``lr_factor`` (stepped after every optimiser step)."""
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, total_steps, cfg)
    )
