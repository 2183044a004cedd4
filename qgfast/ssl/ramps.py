"""Weight schedules for the unsupervised terms (docs/frameworks.md, "Ramps").

A ramp maps the training position to a loss weight λ. It counts either optimiser steps
(``unit="step"``) or epochs (``unit="epoch"``), and ``every`` groups that counter first
(SSL4MIS's sigmoid ramp counts "epochs" of 150 iterations: ``unit="step", every=150``).

- ``LinearRamp`` (the paper's): λ = 0 before ``warmup``, linear from 0 to ``final`` over
  ``length``, then ``final``. Paper defaults: PL-QW and the baselines W = 15, R = 30
  epochs; QAR W = 30, R = 40 epochs, λ_qar = 0.01.
- ``SigmoidRamp`` (SSL4MIS / UA-MT): λ = final · exp(−5 (1 − min(t, L)/L)²), final at L.
- ``ConstantRamp``: λ = final throughout (a plain number passed as a ramp becomes one).

Ramps are frozen and stateless: the framework's counters (saved in its ``state_dict``)
are the only state, so a resumed run continues the same schedule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

UNITS = ("step", "epoch")


class Ramp(Protocol):
    final: float
    unit: str

    def __call__(self, *, step: int, epoch: int | None) -> float: ...


def _position(ramp: Ramp, every: int, step: int, epoch: int | None) -> int:
    if ramp.unit == "step":
        return step // every
    if epoch is None:
        raise ValueError(
            f"{ramp!r} counts epochs, but the framework does not know the epoch: pass "
            "steps_per_epoch= when building it, or call set_epoch(e) at each epoch's start"
        )
    return epoch // every


def _check(final: float, unit: str, every: int, **lengths: float) -> None:
    if not math.isfinite(final) or final < 0:
        raise ValueError(f"final must be a finite number >= 0, got {final}")
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {UNITS}, got {unit!r}")
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    for name, value in lengths.items():
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {value}")


@dataclass(frozen=True)
class LinearRamp:
    """0 for t < warmup, final·(t − warmup)/length up to t = warmup + length, then final."""

    final: float
    warmup: float = 0.0
    length: float = 0.0
    unit: str = "epoch"
    every: int = 1

    def __post_init__(self) -> None:
        _check(self.final, self.unit, self.every, warmup=self.warmup, length=self.length)

    def __call__(self, *, step: int, epoch: int | None) -> float:
        t = _position(self, self.every, step, epoch)
        if t < self.warmup:
            return 0.0
        if self.length == 0:
            return self.final
        return self.final * min(1.0, (t - self.warmup) / self.length)


@dataclass(frozen=True)
class SigmoidRamp:
    """final · exp(−5 (1 − min(t, length)/length)²) (Laine & Aila's ramp-up, as SSL4MIS)."""

    final: float
    length: float
    unit: str = "step"
    every: int = 1

    def __post_init__(self) -> None:
        _check(self.final, self.unit, self.every, length=self.length)

    def __call__(self, *, step: int, epoch: int | None) -> float:
        if self.length == 0:
            return self.final
        t = min(max(_position(self, self.every, step, epoch), 0), self.length)
        phase = 1.0 - t / self.length
        return self.final * math.exp(-5.0 * phase * phase)


@dataclass(frozen=True)
class ConstantRamp:
    final: float
    unit: str = "step"

    def __post_init__(self) -> None:
        _check(self.final, self.unit, 1)

    def __call__(self, *, step: int, epoch: int | None) -> float:
        return self.final


def as_ramp(value: Ramp | float | int, name: str) -> Ramp:
    """A ramp object as given, or a constant weight from a plain number."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return ConstantRamp(float(value))
    if not callable(value) or not hasattr(value, "unit"):
        raise TypeError(f"{name} must be a ramp (LinearRamp, SigmoidRamp, ...) or a number")
    return value


def paper_unsupervised_ramp(final: float) -> LinearRamp:
    """The paper's schedule for PL-QW and the baselines: W = 15, R = 30 epochs."""
    return LinearRamp(final, warmup=15, length=30, unit="epoch")


def paper_qar_ramp() -> LinearRamp:
    """The paper's QAR schedule: W = 30, R = 40 epochs to λ_qar = 0.01."""
    return LinearRamp(0.01, warmup=30, length=40, unit="epoch")
