"""``Trainer``: runs a framework over labelled and unlabelled batches to a budget, with
validation, early stopping, atomic checkpoints, exact resume and DDP (docs/training.md).

One optimiser step per labelled batch: zero the gradients, ``framework.step`` under
autocast, a non-finite check (every rank agrees before anyone runs backward), backward
(through a GradScaler for fp16), gradient clipping per model, the optimisers and their
per-step schedules, ``framework.after_step()`` (EMA). Validation runs every ``val_every``
steps on the validation split only; the best selection metric writes ``best.pt``.
``last.pt`` is written every ``checkpoint_every`` steps, at every stop, on SIGINT/SIGTERM
and before a non-finite loss ends the run. A checkpoint holds the models, the framework
(teacher, counters), optimisers, schedulers, scaler, the data cursors and every rank's
RNG states, so a resumed run continues the uninterrupted run's steps exactly where the
data depend only on (seed, epoch) (the qgfast streams do).
"""

from __future__ import annotations

import json
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from qgfast.quality.train import amp_dtype
from qgfast.ssl import distributed as dist
from qgfast.ssl.base import Framework
from qgfast.ssl.checkpoint import atomic_save, load_checkpoint, rng_state, set_rng_state
from qgfast.ssl.cursor import BatchCursor
from qgfast.ssl.ema import unwrap
from qgfast.ssl.optim import OptimConfig, make_optimizer, make_scheduler

AMP_MODES = ("auto", "bf16", "fp16", "off")


class NonFiniteLoss(RuntimeError):
    """A step's loss was NaN or infinite (the message names the step and the terms)."""


@dataclass
class TrainerConfig:
    """Budget, optimisation and bookkeeping. Defaults: the method release's phase 2
    (AdamW 1e-4, cosine to 1e-6 over 200 epochs, early stop after 30 validations without
    a gain, grad clip 1.0); ``max_steps`` instead of ``epochs`` for iteration budgets."""

    epochs: int | None = 200
    max_steps: int | None = None  # overrides epochs when set
    optim: OptimConfig = field(default_factory=OptimConfig)
    grad_clip: float | None = 1.0
    amp: str = "auto"  # auto: bf16 on CUDA, off on CPU
    val_every: int | None = None  # steps between validations (default: one epoch)
    patience: int | None = 30  # validations without a gain before stopping; None: never
    select: str = "dice"  # the validation metric that picks best.pt (higher is better)
    checkpoint_every: int = 500  # steps between last.pt writes
    log_every: int = 10
    skip_nonfinite: bool = False  # skip (and count) a non-finite step instead of stopping
    deterministic: bool = False
    progress: bool = True
    tensorboard: bool = True

    def __post_init__(self) -> None:
        if self.max_steps is None and self.epochs is None:
            raise ValueError("set a budget: epochs or max_steps")
        for name in ("epochs", "max_steps", "val_every", "patience"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ValueError(f"{name} must be >= 1 (or None), got {v}")
        if self.checkpoint_every < 1 or self.log_every < 1:
            raise ValueError("checkpoint_every and log_every must be >= 1")
        if self.amp not in AMP_MODES:
            raise ValueError(f"amp must be one of {AMP_MODES}, got {self.amp!r}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be > 0 or None, got {self.grad_clip}")


def set_deterministic(on: bool) -> None:
    """Deterministic kernels (and cuBLAS's workspace setting they need on CUDA)."""
    if on:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(on)
    torch.backends.cudnn.deterministic = on
    torch.backends.cudnn.benchmark = not on


def _to_device(batch: Any, device: torch.device) -> Any:
    if not isinstance(batch, dict):
        return batch
    return {
        k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v
        for k, v in batch.items()
    }


class Trainer:
    """See the module docstring.

    framework: a built ``qgfast.ssl`` framework (wrap its models with
        ``qgfast.ssl.distributed.wrap`` first when running under torchrun).
    labeled: iterable of labelled batches, or of {"labeled", "unlabeled"} pairs (a
        two-stream ``VolumeStream``/``ImageStream``), one epoch per pass.
    unlabeled: iterable of unlabelled batches, cycled independently (None: from ``labeled``).
    validator: ``validator(model)`` → dict with ``config.select`` (``inference.Validator``).
    audit: ``audit(framework)`` → dict of scalars logged at every validation (pseudolabel
        audit, ``qgfast.ssl.audit``).
    run_info: JSON-able description of the run saved in every checkpoint (what
        ``qgfast predict`` rebuilds the model from).
    callbacks: ``callback(trainer, losses)`` after every optimiser step (losses: the
        step's dict of 0-dim tensors); ``trainer.request_stop()`` ends the run cleanly.
    """

    def __init__(
        self,
        framework: Framework,
        labeled: Iterable[Any],
        unlabeled: Iterable[Any] | None = None,
        *,
        out_dir: str | Path,
        config: TrainerConfig | None = None,
        validator: Callable[[nn.Module], dict[str, Any]] | None = None,
        audit: Callable[[Framework], dict[str, float]] | None = None,
        device: torch.device | str | None = None,
        run_info: dict[str, Any] | None = None,
        callbacks: Sequence[Callable[[Trainer, dict[str, torch.Tensor]], None]] = (),
    ) -> None:
        if not isinstance(framework, Framework):
            raise TypeError("framework must be a qgfast.ssl framework")
        self.framework = framework
        self.config = cfg = config or TrainerConfig()
        self.out_dir = Path(out_dir)
        first = next(unwrap(framework.model).parameters())
        self.device = torch.device(device) if device is not None else first.device
        self.labeled = BatchCursor(labeled, "labeled")
        self.unlabeled = None if unlabeled is None else BatchCursor(unlabeled, "unlabeled")
        self.steps_per_epoch = len(labeled) if hasattr(labeled, "__len__") else None
        if self.steps_per_epoch == 0:
            raise ValueError("the labeled data has no batch per epoch (len 0)")
        if cfg.max_steps is None and self.steps_per_epoch is None:
            raise ValueError("an epoch budget needs labeled data with a len(); set max_steps")
        if cfg.val_every is None and validator is not None and self.steps_per_epoch is None:
            raise ValueError("set val_every: the labeled data has no len() to define an epoch")
        self.total_steps = cfg.max_steps or cfg.epochs * self.steps_per_epoch  # type: ignore[operator]
        self.val_every = cfg.val_every or self.steps_per_epoch or self.total_steps
        self.validator = validator
        self.audit = audit
        self.run_info = run_info or {}
        self.callbacks = list(callbacks)
        self.amp_dtype = amp_dtype(cfg.amp, self.device)
        self.optimizers = [make_optimizer(m, cfg.optim) for m in framework.models]
        self.schedulers = [make_scheduler(o, self.total_steps, cfg.optim) for o in self.optimizers]
        fp16 = self.amp_dtype == torch.float16 and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=fp16)
        self.step = 0
        self.best: dict[str, Any] = {"metric": -math.inf, "step": None}
        self.bad_validations = 0
        self.skipped_steps = 0
        self.history: list[dict[str, Any]] = []
        self.last_metrics: dict[str, Any] | None = None
        self._stop_signal: int | None = None
        self._writer = None
        # Wall time of this process's steps: waiting for batches vs the whole step (data
        # wait included), so a loader that starves the network shows in the summary.
        self.timing = {"data_s": 0.0, "step_s": 0.0, "steps": 0}

    # -- checkpoints -----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        ranks = dist.gather(
            {
                "rng": rng_state(),
                "labeled": self.labeled.state(),
                "unlabeled": None if self.unlabeled is None else self.unlabeled.state(),
            }
        )
        return {
            "step": self.step,
            "models": [unwrap(m).state_dict() for m in self.framework.models],
            "framework": self.framework.state_dict(),
            "optimizers": [o.state_dict() for o in self.optimizers],
            "schedulers": [s.state_dict() for s in self.schedulers],
            "scaler": self.scaler.state_dict(),
            "ranks": ranks,
            "trainer": {
                "best": self.best,
                "bad_validations": self.bad_validations,
                "skipped_steps": self.skipped_steps,
                "history": self.history,
                "total_steps": self.total_steps,
            },
            "metrics": _scalars(self.last_metrics),
            "run": self.run_info,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        models = self.framework.models
        if len(state["models"]) != len(models):
            raise ValueError(
                f"the checkpoint holds {len(state['models'])} model(s), the framework trains "
                f"{len(models)}"
            )
        for model, sd in zip(models, state["models"], strict=True):
            unwrap(model).load_state_dict(sd)
        self.framework.load_state_dict(state["framework"])
        for o, sd in zip(self.optimizers, state["optimizers"], strict=True):
            o.load_state_dict(sd)
        for s, sd in zip(self.schedulers, state["schedulers"], strict=True):
            s.load_state_dict(sd)
        self.scaler.load_state_dict(state["scaler"])
        ranks = state["ranks"]
        mine = ranks[dist.rank()] if len(ranks) == dist.world_size() else ranks[0]
        self.labeled.restore(mine["labeled"])
        if self.unlabeled is not None and mine["unlabeled"] is not None:
            self.unlabeled.restore(mine["unlabeled"])
        set_rng_state(mine["rng"])
        t = state["trainer"]
        self.step = int(state["step"])
        self.best = dict(t["best"])
        self.bad_validations = int(t["bad_validations"])
        self.skipped_steps = int(t["skipped_steps"])
        self.history = list(t["history"])

    def save(self, name: str, resumable: bool = True) -> Path | None:
        """Write ``out_dir/name`` atomically from rank 0 (every rank takes part in gathering
        the RNG states); returns the path on rank 0. ``resumable=False`` (best.pt) keeps
        the models, framework, metrics and run description only."""
        state = self.state_dict()
        if not dist.is_main():
            return None
        if not resumable:
            for key in ("optimizers", "schedulers", "scaler", "ranks"):
                state.pop(key)
        return atomic_save(state, self.out_dir / name)

    # -- the loop ----------------------------------------------------------------------------
    def fit(self, resume: bool = False) -> dict[str, Any]:
        """Train to the budget (or early stop / signal); returns the run's summary."""
        cfg = self.config
        set_deterministic(cfg.deterministic)
        if dist.is_main():
            self.out_dir.mkdir(parents=True, exist_ok=True)
        if resume:
            path = self.out_dir / "last.pt"
            self.load_state_dict(load_checkpoint(path, "cpu"))
        stopped = "budget"
        bar = self._open_logs()
        old_handlers = self._install_signal_handlers()
        timer = {"data": 0.0, "total": 0.0, "steps": 0}
        sums: dict[str, torch.Tensor] = {}
        try:
            while self.step < self.total_steps:
                t0 = time.perf_counter()
                labeled, unlabeled = self._next_batches()
                t1 = time.perf_counter()
                out = self._train_step(labeled, unlabeled)
                if out is None:  # a skipped non-finite step
                    continue
                for k, v in out.items():
                    sums[k] = sums.get(k, 0.0) + v.detach().float()
                for callback in self.callbacks:
                    callback(self, out)
                t2 = time.perf_counter()
                timer["data"] += t1 - t0
                timer["total"] += t2 - t0
                timer["steps"] += 1
                self.timing["data_s"] += t1 - t0
                self.timing["step_s"] += t2 - t0
                self.timing["steps"] += 1
                if self.step % cfg.log_every == 0 or self.step == self.total_steps:
                    self._log_train(sums, timer, bar)
                    sums, timer = {}, {"data": 0.0, "total": 0.0, "steps": 0}
                if bar is not None:
                    bar.update(1)
                due = self.step % self.val_every == 0 or self.step == self.total_steps
                if due and self._validate():
                    stopped = "early-stop"
                    break
                if self.step % cfg.checkpoint_every == 0:
                    self.save("last.pt")
                if dist.any_rank(self._stop_signal is not None):  # every rank stops together
                    stopped = "interrupted"
                    break
            self.save("last.pt")
        finally:
            self._restore_signal_handlers(old_handlers)
            if bar is not None:
                bar.close()
            if self._writer is not None:
                self._writer.close()
        return self.summary(stopped)

    def summary(self, stopped: str) -> dict[str, Any]:
        return {
            "stopped": stopped,
            "signal": self._stop_signal,
            "steps": self.step,
            "total_steps": self.total_steps,
            "epoch": self.labeled.epoch,
            "skipped_nonfinite": self.skipped_steps,
            "best": self.best,
            "final": _scalars(self.last_metrics),
            "throughput": throughput(self.timing),
            "history": self.history,
        }

    def _next_batches(self) -> tuple[Any, Any]:
        batch, _ = self.labeled.next_batch()
        if isinstance(batch, dict) and "labeled" in batch:
            labeled, unlabeled = batch["labeled"], batch.get("unlabeled")
        else:
            labeled, unlabeled = batch, None
        if self.unlabeled is not None:
            unlabeled, _ = self.unlabeled.next_batch()
        return _to_device(labeled, self.device), _to_device(unlabeled, self.device)

    def _train_step(self, labeled: Any, unlabeled: Any) -> dict[str, torch.Tensor] | None:
        fw, cfg = self.framework, self.config
        if fw.steps_per_epoch is None:  # epoch-counting ramps follow the labelled data
            fw.set_epoch(self.labeled.epoch)
        fw.train()
        for o in self.optimizers:
            o.zero_grad(set_to_none=True)
        dtype = self.amp_dtype
        with torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None):
            out = fw.step(labeled, unlabeled)
        loss = out["loss"]
        bad = not bool(torch.isfinite(loss.detach()))
        if dist.any_rank(bad):
            return self._non_finite(out)
        self.scaler.scale(loss).backward()
        out["loss"] = loss.detach()
        for i, (model, o) in enumerate(zip(fw.models, self.optimizers, strict=True)):
            if cfg.grad_clip is not None:
                self.scaler.unscale_(o)
                norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                out["grad_norm" if i == 0 else f"grad_norm_{i}"] = norm
            self.scaler.step(o)
        self.scaler.update()
        for s in self.schedulers:
            s.step()
        fw.after_step()
        self.step += 1
        out["lr"] = torch.tensor(self.optimizers[0].param_groups[0]["lr"])
        return out

    def _non_finite(self, out: dict[str, torch.Tensor]) -> None:
        terms = ", ".join(
            f"{k}={float(v.detach()):.4g}"
            for k, v in out.items()
            if not bool(torch.isfinite(v).all())
        )
        where = f"step {self.step + 1} (epoch {self.labeled.epoch})"
        if self.config.skip_nonfinite:
            self.skipped_steps += 1
            if self._writer is not None:
                self._writer.add_scalar("train/skipped_nonfinite", self.skipped_steps, self.step)
            return None
        self.save("last.pt")  # the state before the bad step, for a resume with other settings
        raise NonFiniteLoss(
            f"non-finite loss at {where}: {terms or 'loss'} (on some rank). last.pt holds the "
            "state before this step; lower the lr, turn amp off, or skip such steps with "
            "skip_nonfinite (--skip-nonfinite)"
        )

    def request_stop(self, signum: int = signal.SIGTERM) -> None:
        """End the run after the current step, as SIGINT/SIGTERM do (last.pt is written)."""
        self._stop_signal = signum

    # -- validation and early stopping -------------------------------------------------------
    def _validate(self) -> bool:
        """Validate (and audit); save best.pt on a gain. Returns True to stop early."""
        if self.validator is None:
            return False
        metrics = self.validator(self.framework.eval_model)
        if self.audit is not None:
            metrics.update({f"audit_{k}": v for k, v in self.audit(self.framework).items()})
        self.last_metrics = metrics
        value = metrics[self.config.select]
        record = {"step": self.step, "epoch": self.labeled.epoch, **_scalars(metrics)}
        self.history.append(record)
        if dist.is_main():
            with open(self.out_dir / "history.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")
            if self._writer is not None:
                for k, v in record.items():
                    if isinstance(v, (int, float)) and k not in ("step", "epoch"):
                        self._writer.add_scalar(f"val/{k}", v, self.step)
        if value > self.best["metric"]:
            self.best = {"metric": float(value), "step": self.step, "metrics": record}
            self.bad_validations = 0
            self.save("best.pt", resumable=False)
        else:
            self.bad_validations += 1
        patience = self.config.patience
        return patience is not None and self.bad_validations >= patience

    # -- logs, progress, signals -----------------------------------------------------------
    def _open_logs(self):
        if not dist.is_main():
            return None
        if self.config.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(self.out_dir / "tb", purge_step=self.step or None)
        if not self.config.progress:
            return None
        from tqdm.auto import tqdm

        return tqdm(total=self.total_steps, initial=self.step, desc=self.framework.name)

    def _log_train(self, sums: dict[str, torch.Tensor], timer: dict[str, float], bar) -> None:
        n = max(1, timer["steps"])
        means = {k: float(v) / n for k, v in sums.items()}
        means["steps_per_s"] = n / max(timer["total"], 1e-9)
        means["data_wait_share"] = timer["data"] / max(timer["total"], 1e-9)
        if self._writer is not None:
            for k, v in means.items():
                self._writer.add_scalar(f"train/{k}", v, self.step)
        if bar is not None:
            bar.set_postfix({k: f"{means[k]:.3g}" for k in ("loss", "sup") if k in means})

    def _install_signal_handlers(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}

        def handler(signum, _frame):
            self.request_stop(signum)

        return {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}

    @staticmethod
    def _restore_signal_handlers(old: dict[int, Any]) -> None:
        for s, h in old.items():
            signal.signal(s, h)


def throughput(timing: dict[str, float]) -> dict[str, float | None]:
    """steps/s and the share of step time spent waiting for data, from ``Trainer.timing``."""
    if not timing["steps"] or timing["step_s"] <= 0:
        return {"steps_per_s": None, "data_wait_share": None}
    return {
        "steps_per_s": timing["steps"] / timing["step_s"],
        "data_wait_share": timing["data_s"] / timing["step_s"],
    }


def _scalars(metrics: dict[str, Any] | None) -> dict[str, Any]:
    """The JSON-able scalars and per-class lists of a metrics dict (no per-case table)."""
    if not metrics:
        return {}
    return {k: v for k, v in metrics.items() if k != "per_case"}
