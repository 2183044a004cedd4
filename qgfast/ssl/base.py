"""What every semi-supervised framework shares (docs/frameworks.md).

A framework wraps the user's model(s). ``step(labeled, unlabeled)`` checks the batches,
computes the supervised term L_sup = λ_ce·CE + λ_dice·(1 − soft Dice) (per-sample Dice
averaged, smoothing 1e-6, the fused ``DiceCELoss``), the framework's unsupervised term and,
with ``qar=guide``, QAR's λ_qar·(1 − mean g(x_u ⊕ p)); it returns a dict of 0-dim tensors
whose ``"loss"`` is the total to backpropagate. The caller runs backward and the
optimiser(s), then ``after_step()`` (EMA update, step counter).

Counters: ``global_step`` (optimiser steps taken, advanced by ``after_step``) and the epoch,
either ``global_step // steps_per_epoch`` or what ``set_epoch`` was last told. Random draws
(teacher noise, mixup, views, anchors) come from a generator seeded per step from
(seed, global_step, rank), so a restored ``state_dict`` continues the same draws.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from qgfast.losses import DiceCELoss
from qgfast.quality.guide import QualityGuide
from qgfast.ssl.ema import Decay, as_decay, ema_update, make_teacher, unwrap
from qgfast.ssl.ramps import Ramp, as_ramp, paper_qar_ramp, paper_unsupervised_ramp

Batch = Mapping[str, Any]
QarPair = tuple[torch.Tensor, torch.Tensor]  # (images the student saw, its logits)


def probabilities(logits: torch.Tensor) -> torch.Tensor:
    """Softmax over channels, or the sigmoid of a single binary channel; float32."""
    logits = logits.float()
    return torch.sigmoid(logits) if logits.shape[1] == 1 else torch.softmax(logits, 1)


def hard_labels(probs: torch.Tensor) -> torch.Tensor:
    """Label map [B, 1, *S] uint8 (int64 past 256 classes) of probabilities [B, C, *S]."""
    if probs.shape[1] == 1:
        return (probs >= 0.5).to(torch.uint8)
    labels = probs.argmax(1, keepdim=True)
    return labels.to(torch.uint8) if probs.shape[1] <= 256 else labels


def confidence(probs: torch.Tensor) -> torch.Tensor:
    """Per-voxel confidence [B, *S]: the largest class probability (max(p, 1 − p) binary)."""
    if probs.shape[1] == 1:
        return torch.maximum(probs[:, 0], 1.0 - probs[:, 0])
    return probs.amax(1)


def weight_summary(weights: torch.Tensor, prefix: str) -> dict[str, torch.Tensor]:
    """Mean weight, its 10th/50th/90th percentiles and the share of samples with a non-zero
    weight, for the logs (0-dim tensors: no device sync until the trainer logs them)."""
    w = weights.detach().float().flatten()
    q = torch.quantile(w, torch.tensor([0.1, 0.5, 0.9], device=w.device))
    return {
        f"{prefix}_mean": w.mean(),
        f"{prefix}_p10": q[0],
        f"{prefix}_p50": q[1],
        f"{prefix}_p90": q[2],
        f"{prefix}_kept": (w > 0).float().mean(),
    }


def _images(batch: Any, role: str) -> torch.Tensor:
    if not isinstance(batch, Mapping):
        raise ValueError(
            f"the {role} batch must be a dict with 'image' (as the loaders yield), "
            f"got {type(batch).__name__}"
        )
    if "image" not in batch:
        raise ValueError(f"the {role} batch has no 'image' (keys: {sorted(batch)})")
    x = batch["image"]
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise ValueError(f"{role}['image'] must be a float tensor [B, C, *S], got {x!r:.60}")
    if x.dim() < 3 or x.shape[0] == 0:
        raise ValueError(f"{role}['image'] must be [B, C, *S] with B >= 1, got {tuple(x.shape)}")
    return x


def _labels(batch: Batch, images: torch.Tensor) -> torch.Tensor:
    if "label" not in batch:
        raise ValueError(f"the labeled batch has no 'label' (keys: {sorted(batch)})")
    y = batch["label"]
    if not isinstance(y, torch.Tensor):
        raise ValueError(f"labeled['label'] must be a tensor [B, 1, *S], got {type(y).__name__}")
    if y.dim() != images.dim() or y.shape[0] != images.shape[0] or y.shape[1] != 1:
        raise ValueError(
            f"labeled['label'] must be a label map [B, 1, *S] matching the images "
            f"{tuple(images.shape)}, got {tuple(y.shape)}"
        )
    if y.shape[2:] != images.shape[2:]:
        raise ValueError(
            f"labels {tuple(y.shape)} and images {tuple(images.shape)} differ in spatial size"
        )
    if y.device != images.device:
        raise ValueError(f"labels are on {y.device} but images on {images.device}")
    if y.is_complex():
        raise ValueError(f"labels must be an integer label map, got {y.dtype}")
    return y


class Framework:
    """Base of the frameworks; see the module docstring. Subclasses set ``name`` (the
    paper's abbreviation) and implement ``_losses``."""

    name = "framework"
    needs_unlabeled = True
    unsupervised_weight = 0.1  # λ_final of the default ramp (paper's W = 15, R = 30 epochs)

    def __init__(
        self,
        model: nn.Module,
        *,
        quality: QualityGuide | None = None,
        consistency_ramp: Ramp | float | None = None,
        qar: QualityGuide | None = None,
        qar_ramp: Ramp | float | None = None,
        steps_per_epoch: int | None = None,
        seed: int = 0,
        lambda_ce: float = 0.5,
        lambda_dice: float = 0.5,
        include_background: bool = False,
        validate: bool = True,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if quality is not None and not isinstance(quality, QualityGuide):
            raise TypeError("quality must be a qgfast.quality.QualityGuide (a frozen predictor)")
        if qar is not None and not isinstance(qar, QualityGuide):
            raise TypeError("qar must be a qgfast.quality.QualityGuide (a frozen predictor)")
        if steps_per_epoch is not None and steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
        if lambda_ce < 0 or lambda_dice < 0 or lambda_ce + lambda_dice == 0:
            raise ValueError(
                f"lambda_ce and lambda_dice must be >= 0 and not both 0, got {lambda_ce}, "
                f"{lambda_dice}"
            )
        self.model = model
        self.quality = quality
        self.consistency_ramp = as_ramp(
            paper_unsupervised_ramp(self.unsupervised_weight)
            if consistency_ramp is None
            else consistency_ramp,
            "consistency_ramp",
        )
        self.qar = qar
        self.qar_ramp = as_ramp(paper_qar_ramp() if qar_ramp is None else qar_ramp, "qar_ramp")
        self.steps_per_epoch = steps_per_epoch
        self.seed = int(seed)
        self.lambda_ce = lambda_ce
        self.lambda_dice = lambda_dice
        self.include_background = include_background
        self.validate = validate
        self.global_step = 0
        self._epoch: int | None = None
        self._teacher: nn.Module | None = None
        self.num_classes: int | None = None  # output channels, from the first forward
        self._sup_loss: DiceCELoss | None = None
        self._checked_guides: set[tuple[int, int, int]] = set()
        self._step_seed = 0

    # -- what optimisers, validation and checkpoints need -------------------------------
    @property
    def models(self) -> list[nn.Module]:
        """The modules the optimiser(s) update, one optimiser each for CPS."""
        return [self.model]

    @property
    def teacher(self) -> nn.Module | None:
        """The EMA teacher where the framework has one."""
        return self._teacher

    @property
    def eval_model(self) -> nn.Module:
        """What validation scores: the student (the paper evaluates the student)."""
        return self.model

    @property
    def epoch(self) -> int | None:
        if self.steps_per_epoch is not None:
            return self.global_step // self.steps_per_epoch
        return self._epoch

    def set_epoch(self, epoch: int) -> None:
        """Tell epoch-counting ramps the epoch (not needed with ``steps_per_epoch``)."""
        if self.steps_per_epoch is not None:
            raise ValueError("this framework counts epochs from steps_per_epoch; set_epoch clashes")
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self._epoch = int(epoch)

    def train(self, mode: bool = True) -> Framework:
        """Put the trained models in train (or eval) mode; a teacher stays in eval mode."""
        for m in self.models:
            m.train(mode)
        return self

    def eval(self) -> Framework:
        return self.train(False)

    def ramp(self, ramp: Ramp) -> float:
        return float(ramp(step=self.global_step, epoch=self.epoch))

    # -- one step ------------------------------------------------------------------------
    def step(self, labeled: Batch, unlabeled: Batch | None = None) -> dict[str, torch.Tensor]:
        """Losses of one step: a dict of 0-dim tensors; backpropagate ``out["loss"]``."""
        images_l = _images(labeled, "labeled")
        labels = _labels(labeled, images_l)
        images_u = None
        if unlabeled is not None:
            images_u = _images(unlabeled, "unlabeled")
            if images_u.shape[1:2] != images_l.shape[1:2] or images_u.dim() != images_l.dim():
                raise ValueError(
                    f"unlabeled images {tuple(images_u.shape)} and labeled images "
                    f"{tuple(images_l.shape)} differ in channels or dimensions"
                )
            if images_u.device != images_l.device:
                raise ValueError(
                    f"unlabeled images are on {images_u.device}, labeled on {images_l.device}"
                )
        elif self.needs_unlabeled or self.qar is not None:
            raise ValueError(f"{self.name} needs an unlabeled batch: step(labeled, unlabeled)")
        self._sync_teacher(images_l.device)
        gen = self._generator(images_l.device)
        out, qar_pairs = self._losses(images_l, labels, images_u, gen)
        total = out["loss"]
        if self.qar is not None:
            lam = self.ramp(self.qar_ramp)
            qar = torch.stack([self._qar_term(x, z) for x, z in qar_pairs]).sum()
            out["qar"] = qar.detach()
            out["lambda_qar"] = torch.tensor(lam)
            total = total + lam * qar
        out["loss"] = total
        return out

    def _losses(
        self,
        images_l: torch.Tensor,
        labels: torch.Tensor,
        images_u: torch.Tensor | None,
        gen: torch.Generator,
    ) -> tuple[dict[str, torch.Tensor], list[QarPair]]:
        """The framework's terms, "loss" their weighted sum without QAR, and the
        (images, student logits) pairs QAR scores."""
        raise NotImplementedError

    def after_step(self) -> None:
        """Call after the optimiser step: EMA update (where there is a teacher), counters."""
        self.global_step += 1

    # -- helpers for the subclasses -------------------------------------------------------
    def forward(
        self, model: nn.Module, images_l: torch.Tensor, *more: torch.Tensor
    ) -> list[torch.Tensor]:
        """Logits of the labelled images and each further batch, in one forward pass when
        their shapes allow (BatchNorm then sees them together, as SSL4MIS does)."""
        parts = [images_l, *more]
        if all(p.shape[1:] == images_l.shape[1:] for p in parts):
            images = torch.cat(parts)
            logits = self.check_logits(model(images), images)
            return list(logits.split([p.shape[0] for p in parts]))
        return [self.check_logits(model(p), p) for p in parts]

    def check_logits(self, logits: Any, images: torch.Tensor) -> torch.Tensor:
        if not isinstance(logits, torch.Tensor):
            raise ValueError(
                f"the model returned {type(logits).__name__}; frameworks need one tensor of "
                "logits [B, C, *S] (turn deep supervision off)"
            )
        if (
            logits.dim() != images.dim()
            or logits.shape[0] != images.shape[0]
            or logits.shape[2:] != images.shape[2:]
        ):
            raise ValueError(
                f"the model maps images {tuple(images.shape)} to {tuple(logits.shape)}; "
                "frameworks need logits [B, C, *S] at the input's batch and spatial size"
            )
        c = logits.shape[1]
        if self.num_classes is None:
            self.num_classes = c
        elif c != self.num_classes:
            raise ValueError(
                f"the model output {c} channels where it output {self.num_classes} before"
            )
        return logits

    def classes(self) -> int:
        """Classes the label maps hold: C, or 2 for a single sigmoid channel."""
        assert self.num_classes is not None
        return max(self.num_classes, 2)

    def supervised(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """L_sup of the labelled part (labels checked against the model's channels)."""
        c = logits.shape[1]
        if self.validate and labels.numel():
            lo, hi = (int(v) for v in torch.aminmax(labels.detach().to(torch.float32)))
            if lo < 0 or hi >= self.classes():
                raise ValueError(
                    f"labels hold values {lo}..{hi} but the model outputs {c} channel(s), "
                    f"i.e. classes 0..{self.classes() - 1}: its output channels disagree "
                    "with the labels"
                )
            if labels.is_floating_point() and not bool((labels == labels.round()).all()):
                raise ValueError("float labels must hold whole class numbers")
        if self._sup_loss is None:
            self._sup_loss = DiceCELoss(
                include_background=self.include_background or c == 1,
                to_onehot_y=c > 1,
                sigmoid=c == 1,
                softmax=c > 1,
                smooth_nr=1e-6,
                smooth_dr=1e-6,
                lambda_ce=self.lambda_ce,
                lambda_dice=self.lambda_dice,
                validate=False,
            )
        target = labels.to(logits.dtype) if c == 1 else labels.long()
        return self._sup_loss(logits, target)

    def combine(
        self,
        sup: torch.Tensor,
        key: str,
        term: torch.Tensor,
        extra: dict[str, torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        """{"loss": sup + λ·term, "sup", key, "lambda_<key>", **extra}, λ the ramp's now."""
        lam = self.ramp(self.consistency_ramp)
        return {
            "loss": sup + lam * term,
            "sup": sup.detach(),
            key: term.detach(),
            f"lambda_{key}": torch.tensor(lam),
            **(extra or {}),
        }

    def check_guide(self, guide: QualityGuide, images: torch.Tensor, role: str) -> None:
        """A guide must score this model's classes and these images' channels."""
        key = (id(guide), self.classes(), images.shape[1])
        if key in self._checked_guides:
            return
        g = guide.predictor
        want = getattr(g, "num_classes", None)
        if want is not None and want != self.classes():
            raise ValueError(
                f"the {role} guide's predictor scores masks of {want} classes but the model "
                f"predicts {self.classes()} (output channels: {self.num_classes})"
            )
        channels = getattr(g, "image_channels", None)
        if channels is not None and channels != images.shape[1]:
            raise ValueError(
                f"the {role} guide's predictor reads {channels} image channel(s), the images "
                f"have {images.shape[1]}"
            )
        dims = getattr(g, "spatial_dims", None)
        if dims is not None and dims != images.dim() - 2:
            raise ValueError(
                f"the {role} guide's predictor is {dims}D, the images are {images.dim() - 2}D"
            )
        self._checked_guides.add(key)

    def quality_weights(
        self, guide: QualityGuide, images: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor:
        """w = q^T·1[q ≥ τ] of (images, label maps), [B] float32, no gradient."""
        self.check_guide(guide, images, "quality")
        return guide.weights(images, labels).float()

    def _qar_term(self, images: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        assert self.qar is not None
        self.check_guide(self.qar, images, "qar")
        return self.qar.qar_loss(images, probabilities(logits))

    def noise(
        self, images: torch.Tensor, gen: torch.Generator, std: float, clip: float
    ) -> torch.Tensor:
        """images + clamp(N(0, std²), ±clip), the mean-teacher input perturbation."""
        if std == 0:
            return images
        n = torch.randn(images.shape, generator=gen, device=images.device, dtype=images.dtype)
        return images + (n * std).clamp(-clip, clip)

    def _generator(self, device: torch.device) -> torch.Generator:
        rank = 0
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            rank = torch.distributed.get_rank()
        seed = np.random.SeedSequence([self.seed, self.global_step, rank]).generate_state(1)[0]
        self._step_seed = int(seed)
        return torch.Generator(device=device).manual_seed(self._step_seed)

    def numpy_rng(self) -> np.random.Generator:
        """This step's host-side draws (mixup factors, flip axes): no device sync."""
        return np.random.default_rng([self._step_seed, 1])

    def _sync_teacher(self, device: torch.device) -> None:
        """Move the teacher to the data's device (the model may have moved after building)."""
        t = self._teacher
        if t is not None:
            p = next(t.parameters(), None)
            if p is not None and p.device != device:
                t.to(device)

    # -- checkpoints -------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Counters and the teacher (the models and optimisers are the caller's to save)."""
        return {
            "framework": self.name,
            "global_step": self.global_step,
            "epoch": self._epoch,
            "seed": self.seed,
            "num_classes": self.num_classes,
            "teacher": None if self._teacher is None else self._teacher.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("framework") != self.name:
            raise ValueError(
                f"state is of framework {state.get('framework')!r}, this is {self.name!r}"
            )
        if (state["teacher"] is None) != (self._teacher is None):
            raise ValueError("the state's teacher does not match this framework's")
        self.global_step = int(state["global_step"])
        self._epoch = state["epoch"]
        self.seed = int(state["seed"])
        self.num_classes = state["num_classes"]
        if self._teacher is not None:
            self._teacher.load_state_dict(state["teacher"])

    def __repr__(self) -> str:
        models = ", ".join(type(unwrap(m)).__name__ for m in self.models)
        return f"{type(self).__name__}[{self.name}]({models}, step={self.global_step})"


class TeacherFramework(Framework):
    """A framework with an EMA teacher of its model, updated in ``after_step``."""

    def __init__(self, model: nn.Module, *, ema_decay: Decay | float, **common: Any) -> None:
        super().__init__(model, **common)
        self.ema_decay = as_decay(ema_decay)
        self._teacher = make_teacher(self.model)

    def after_step(self) -> None:
        assert self._teacher is not None
        ema_update(self._teacher, self.model, self.ema_decay(self.global_step))
        super().after_step()

    @torch.no_grad()
    def teacher_probs(self, images: torch.Tensor) -> torch.Tensor:
        """The teacher's probabilities [B, C, *S] float32 (no gradient)."""
        assert self._teacher is not None
        return probabilities(self.check_logits(self._teacher(images), images))


@contextlib.contextmanager
def dropout_on(model: nn.Module) -> Iterator[None]:
    """Dropout layers in train mode inside the block (stochastic teacher passes), the rest
    of the model (BatchNorm) as it was."""
    layers = [
        m
        for m in model.modules()
        if isinstance(m, (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout))
    ]
    modes = [m.training for m in layers]
    for m in layers:
        m.train(True)
    try:
        yield
    finally:
        for m, mode in zip(layers, modes, strict=True):
            m.train(mode)
