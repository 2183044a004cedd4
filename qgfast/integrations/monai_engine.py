"""Any qgfast framework inside MONAI's engine (docs/integrations.md, "MONAI engines").

A MONAI user keeps ``monai.engines.SupervisedTrainer`` (its loaders, handlers, metrics,
checkpointing and bundle configs) and hands it two qgfast pieces:

    trainer = SupervisedTrainer(
        device, max_epochs, labeled_loader, network, optimizer, loss_function=None,
        iteration_update=SemiSupervisedIteration(framework, unlabeled_loader),
        train_handlers=[EMAUpdateHandler(framework), SSLStatsHandler(log_dir="runs/tb"),
                        PseudolabelAuditHandler(framework, audit_loader)],
    )

``SemiSupervisedIteration`` runs ``framework.step(labeled, unlabeled)`` on the trainer's
labelled batch and the next unlabelled batch, backpropagates and steps the trainer's
optimiser (its GradScaler under ``amp``); ``EMAUpdateHandler`` calls
``framework.after_step()`` after each iteration (the EMA teacher update and the step count
the ramps read). Forgetting the handler would leave the teacher frozen at its first
weights, so the iteration refuses to run a second step without it.

Needs pytorch-ignite (MONAI's engine), ``pip install qgfast[monai]``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch

from qgfast.ssl.base import Framework

IMAGE, LABEL, LOSS = "image", "label", "loss"


def _plain(x: Any) -> Any:
    """MONAI's MetaTensor as a plain tensor (the frameworks need no metadata, and
    MetaTensor's per-op bookkeeping costs time)."""
    return x.as_tensor() if hasattr(x, "as_tensor") else x


def _label_map(label: torch.Tensor) -> torch.Tensor:
    """A label map as integers (MONAI's image readers return labels as floats)."""
    return label.round().long() if label.is_floating_point() else label


def _image_of(batch: Any, key: str) -> torch.Tensor:
    if isinstance(batch, dict):
        if key not in batch:
            raise KeyError(f"unlabelled batch has no {key!r} key (keys: {sorted(batch)})")
        return batch[key]
    if isinstance(batch, list | tuple):
        return batch[0]
    return batch


class SemiSupervisedIteration:
    """``iteration_update`` for ``monai.engines.SupervisedTrainer``: one step of a qgfast
    framework on the trainer's labelled batch and the next batch of ``unlabeled_loader``
    (cycled: a new pass starts whenever it runs out, so each pass reshuffles).

    The trainer's ``network`` should be ``framework.models[0]`` and its ``optimizer`` cover
    the parameters of every model in ``framework.models`` (CPS trains two). The engine's
    output holds ``image``, ``label``, ``loss`` and every term the framework returns
    (``sup``, ``consistency``, ``quality_weight_mean``, ...), so MONAI's ``StatsHandler``
    and qgfast's ``SSLStatsHandler`` can log them.
    """

    def __init__(
        self,
        framework: Framework,
        unlabeled_loader: Iterable[Any],
        image_key: str = IMAGE,
        label_key: str = LABEL,
    ) -> None:
        if not isinstance(framework, Framework):
            raise TypeError(f"framework must be a qgfast.ssl framework, got {type(framework)}")
        self.framework = framework
        self.unlabeled_loader = unlabeled_loader
        self.image_key, self.label_key = image_key, label_key
        self._unlabeled: Iterator[Any] | None = None
        self._stepped_at: int | None = None  # framework.global_step of the last step
        from monai.engines.utils import IterationEvents

        self._events = IterationEvents

    def _next_unlabeled(self) -> Any:
        for _ in range(2):  # a fresh pass when the current one is exhausted
            if self._unlabeled is None:
                self._unlabeled = iter(self.unlabeled_loader)
            try:
                return next(self._unlabeled)
            except StopIteration:
                self._unlabeled = None
        raise ValueError("the unlabelled loader yields no batch")

    def __call__(self, engine: Any, batchdata: dict[str, Any]) -> dict[str, Any]:
        fw = self.framework
        if self._stepped_at is not None and fw.global_step == self._stepped_at:
            raise RuntimeError(
                "the framework's step count did not advance since the last iteration: attach "
                "qgfast.integrations.monai_engine.EMAUpdateHandler(framework) to the trainer "
                "(train_handlers=[...]); without it the teacher never updates"
            )
        if batchdata is None:
            raise ValueError("Must provide batch data for current iteration.")
        device = engine.state.device
        nb = getattr(engine, "non_blocking", False)
        image = _plain(batchdata[self.image_key]).to(device, non_blocking=nb)
        label = _plain(batchdata[self.label_key]).to(device, non_blocking=nb)
        unlabeled = _plain(_image_of(self._next_unlabeled(), self.image_key))
        unlabeled = unlabeled.to(device, non_blocking=nb)
        for model in fw.models:
            model.train()
        engine.optimizer.zero_grad(set_to_none=getattr(engine, "optim_set_to_none", False))
        scaler = getattr(engine, "scaler", None) if getattr(engine, "amp", False) else None
        with torch.autocast(
            device.type if isinstance(device, torch.device) else torch.device(device).type,
            enabled=scaler is not None,
            **(getattr(engine, "amp_kwargs", None) or {}),
        ):
            out = fw.step({"image": image, "label": label}, {"image": unlabeled})
        engine.state.output = {IMAGE: image, LABEL: label, **out}
        engine.fire_event(self._events.FORWARD_COMPLETED)
        engine.fire_event(self._events.LOSS_COMPLETED)
        loss = out["loss"]
        if scaler is not None:
            scaler.scale(loss).backward()
            engine.fire_event(self._events.BACKWARD_COMPLETED)
            scaler.step(engine.optimizer)
            scaler.update()
        else:
            loss.backward()
            engine.fire_event(self._events.BACKWARD_COMPLETED)
            engine.optimizer.step()
        engine.fire_event(self._events.MODEL_COMPLETED)
        self._stepped_at = fw.global_step
        return engine.state.output


class EMAUpdateHandler:
    """After every iteration, ``framework.after_step()``: the EMA teacher update (MT,
    UA-MT, ICT, PL) and the step count every framework's ramps read."""

    def __init__(self, framework: Framework) -> None:
        self.framework = framework

    def attach(self, engine: Any) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def __call__(self, engine: Any) -> None:
        self.framework.after_step()


def _writer(summary_writer: Any, log_dir: str | Path | None) -> Any:
    if summary_writer is not None or log_dir is None:
        return summary_writer
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(log_dir))


class SSLStatsHandler:
    """Every ``interval`` iterations, each scalar of the framework's output (the named
    losses, the ramp weights ``lambda_*``, ``quality_weight_mean`` and
    ``quality_weight_kept``) to TensorBoard as ``{prefix}{name}``; the latest values also
    land in ``engine.state.ssl_stats`` for other handlers."""

    def __init__(
        self,
        summary_writer: Any = None,
        log_dir: str | Path | None = None,
        interval: int = 1,
        prefix: str = "ssl/",
    ) -> None:
        if interval < 1:
            raise ValueError(f"interval must be >= 1, got {interval}")
        self.writer = _writer(summary_writer, log_dir)
        self.interval, self.prefix = interval, prefix

    def attach(self, engine: Any) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.ITERATION_COMPLETED(every=self.interval), self)

    def __call__(self, engine: Any) -> None:
        output = engine.state.output or {}
        if isinstance(output, list):  # decollated per sample (MONAI's default): scalars repeat
            output = output[0] if output else {}
        stats = {
            k: float(v)
            for k, v in output.items()
            if k not in (IMAGE, LABEL)
            and (isinstance(v, float | int) or (isinstance(v, torch.Tensor) and v.numel() == 1))
        }
        engine.state.ssl_stats = stats
        if self.writer is not None:
            for name, value in stats.items():
                self.writer.add_scalar(self.prefix + name, value, engine.state.iteration)


class PseudolabelAuditHandler:
    """Every ``every`` epochs, the pseudolabel audit (``qgfast.ssl.audit``): the guide's
    predicted quality of the teacher's pseudolabels on ``audit_loader``'s cases (unlabelled
    in training, labels kept for this check only) against their true Dice. The result goes
    to ``engine.state.metrics`` as ``audit_pearson``, ``audit_mae``, ``audit_quality_mean``
    and ``audit_dice_mean`` (so MONAI's StatsHandler prints it) and to TensorBoard."""

    def __init__(
        self,
        framework: Framework,
        audit_loader: Iterable[dict[str, Any]],
        every: int = 1,
        summary_writer: Any = None,
        log_dir: str | Path | None = None,
        image_key: str = IMAGE,
        label_key: str = LABEL,
    ) -> None:
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        if framework.quality is None and framework.qar is None:
            raise ValueError("the audit needs a quality-guided framework (quality= or qar=)")
        self.framework, self.audit_loader, self.every = framework, audit_loader, every
        self.writer = _writer(summary_writer, log_dir)
        self.keys = (image_key, label_key)
        self._audit = None

    def attach(self, engine: Any) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.every), self)

    def __call__(self, engine: Any) -> None:
        from qgfast.ssl.audit import PseudolabelAudit

        if self._audit is None:  # read the audit cases once, on the engine's device
            image_key, label_key = self.keys
            batches = (
                {"image": _plain(b[image_key]), "label": _label_map(_plain(b[label_key]))}
                for b in self.audit_loader
            )
            self._audit = PseudolabelAudit(batches, engine.state.device)
        result = self._audit(self.framework)
        for name in ("pearson", "mae", "quality_mean", "dice_mean"):
            if name in result:
                engine.state.metrics[f"audit_{name}"] = result[name]
                if self.writer is not None:
                    self.writer.add_scalar(f"audit/{name}", result[name], engine.state.epoch)


def monai_datalists(
    root: str | Path,
    labeled: int,
    *,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> dict[str, list[dict[str, Any]]]:
    """A dataset folder (nnU-Net/MSD or images/masks) as MONAI data lists, split as
    ``qgfast train`` splits it (``qgfast.ssl.splits.make_split``): ``labeled``,
    ``unlabeled`` (its cases with labels keep them, for the audit only), ``audit`` (those
    cases), ``validation`` and ``test``; each item ``{"image": path(s), "label": path}``."""
    from qgfast.data import find_cases
    from qgfast.ssl.splits import make_split

    split = make_split(
        find_cases(root),
        labeled=labeled,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        seed=seed,
    )

    def item(case) -> dict[str, Any]:
        images = [str(p) for p in case.images]
        row: dict[str, Any] = {"image": images[0] if len(images) == 1 else images}
        if case.label is not None:
            row["label"] = str(case.label)
        return row

    return {
        name: [item(c) for c in getattr(split, name)]
        for name in ("labeled", "unlabeled", "audit", "validation", "test")
    }
