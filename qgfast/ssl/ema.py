"""EMA teachers: the teacher copy, its update and the decay schedules.

θ_teacher ← α θ_teacher + (1 − α) θ_student for every floating parameter; buffers
(BatchNorm running statistics, counters) are copied from the student, so a teacher in
eval mode normalises with the student's current statistics (docs/frameworks.md).

Decay schedules take the number of updates already made, n:
- ``WarmupDecay(0.99)``: α = min(1 − 1/(n + 1), maximum), the mean-teacher recipe of
  SSL4MIS / UA-MT (α = 0 at the first update: the teacher starts as the student).
- ``RampedDecay(0.5, 0.999, 1000)``: α linear from ``start`` to ``end`` over the first
  ``steps`` updates, then ``end`` (the paper's PL-QW teacher).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

Decay = Callable[[int], float]


@dataclass(frozen=True)
class WarmupDecay:
    maximum: float = 0.99

    def __post_init__(self) -> None:
        if not 0.0 <= self.maximum < 1.0:
            raise ValueError(f"maximum must be in [0, 1), got {self.maximum}")

    def __call__(self, updates: int) -> float:
        return min(1.0 - 1.0 / (updates + 1), self.maximum)


@dataclass(frozen=True)
class RampedDecay:
    start: float = 0.5
    end: float = 0.999
    steps: int = 1000

    def __post_init__(self) -> None:
        if not (0.0 <= self.start < 1.0 and 0.0 <= self.end < 1.0):
            raise ValueError(f"start and end must be in [0, 1), got {self.start}, {self.end}")
        if self.steps < 0:
            raise ValueError(f"steps must be >= 0, got {self.steps}")

    def __call__(self, updates: int) -> float:
        if self.steps == 0:
            return self.end
        return self.start + (self.end - self.start) * min(updates / self.steps, 1.0)


MEAN_TEACHER_DECAY = WarmupDecay(0.99)  # SSL4MIS / UA-MT
PAPER_PL_DECAY = RampedDecay(0.5, 0.999, 1000)  # the paper's PL-QW teacher


def as_decay(value: Decay | float) -> Decay:
    """A schedule as given, or a constant decay from a number in [0, 1)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not 0.0 <= value < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {value}")
        return RampedDecay(float(value), float(value), 0)
    if not callable(value):
        raise TypeError("ema_decay must be a number in [0, 1) or a schedule (WarmupDecay, ...)")
    return value


def unwrap(model: nn.Module) -> nn.Module:
    """The module under DistributedDataParallel / DataParallel / torch.compile wrappers."""
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        else:
            return model


def make_teacher(model: nn.Module) -> nn.Module:
    """A frozen copy of ``model`` (wrappers removed): eval mode, no parameter needs grad."""
    teacher = copy.deepcopy(unwrap(model))
    teacher.requires_grad_(False)
    return teacher.eval()


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, alpha: float) -> None:
    """θ_t ← α θ_t + (1 − α) θ_s for floating parameters; buffers copied from the student."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"EMA decay must be in [0, 1], got {alpha}")
    student = unwrap(student)
    s_params = dict(student.named_parameters())
    t_params = dict(teacher.named_parameters())
    if s_params.keys() != t_params.keys():
        raise ValueError("teacher and student parameters differ: the teacher must be its copy")
    names = [n for n, p in t_params.items() if p.is_floating_point()]
    if names:
        # one fused multi-tensor launch instead of two per parameter
        torch._foreach_lerp_(
            [t_params[n] for n in names], [s_params[n].detach() for n in names], 1.0 - alpha
        )
    s_buffers = dict(student.named_buffers())
    for name, buf in teacher.named_buffers():
        buf.copy_(s_buffers[name])
