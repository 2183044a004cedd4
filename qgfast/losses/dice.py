"""``DiceLoss`` and ``DiceCELoss``: MONAI's constructor keywords and semantics, fused.

Both compute the segmentation statistics in one sweep (``qgfast.losses._stats``) and the
loss from those (B, C) sums, so the one-hot target, the activated probabilities and the
per-voxel cross-entropy never exist in memory on the Triton path. Values and gradients
equal MONAI's on the same inputs (tests/losses/test_dice.py). Losses of fp16/bf16 inputs
are accumulated and returned in float32.

Options MONAI has and qgfast does not fuse (``other_act``, ``ignore_index``,
``label_smoothing``) raise NotImplementedError naming them; ``qgfast.integrations.monai``
falls back to MONAI's own class for those.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from torch.nn.modules.loss import _Loss

from qgfast.losses import _checks
from qgfast.losses._compose import dice_loss_terms, select_classes, sum_over_batch
from qgfast.losses._stats import seg_stats
from qgfast.losses.spec import Stats, StatsSpec

_REDUCTIONS = ("none", "mean", "sum")


def _unsupported(**options: object) -> None:
    for name, value in options.items():
        if value is not None and value is not False and value != 0.0:
            raise NotImplementedError(
                f"qgfast does not fuse {name}={value!r}; use the MONAI loss for this option"
            )


def _constructor_options(arguments: dict[str, object]) -> dict[str, object]:
    """The MONAI constructor arguments among a loss's ``__init__`` locals."""
    return {k: v for k, v in arguments.items() if k not in ("self", "__class__", "validate")}


def _monai_for_scripting(loss: _Loss) -> _Loss:
    """What ``torch.jit.script`` compiles in place of a qgfast loss: MONAI's class of the
    same name, built with the same options (docs/integrations.md, "TorchScript")."""
    name = "DiceCELoss" if isinstance(loss, DiceCELoss) else "DiceLoss"
    try:
        from qgfast.integrations.monai import original_monai_class

        monai_cls = original_monai_class(name)
    except ImportError as err:
        raise RuntimeError(
            f"TorchScript cannot compile qgfast's {name} (its fused sweep is Triton and "
            f"Python); with MONAI installed, torch.jit.script compiles MONAI's {name} with "
            "the same options instead. torch.export and torch.compile trace qgfast's loss."
        ) from err
    warnings.warn(
        f"torch.jit.script: qgfast's {name} is not scriptable; compiling MONAI's {name} "
        "with the same options (same values, MONAI's speed)",
        stacklevel=3,
    )
    return monai_cls(**loss.monai_options)


def _class_weight(weight: object) -> torch.Tensor | None:
    if weight is None:
        return None
    w = torch.as_tensor(weight, dtype=torch.float32)
    if w.dim() > 1:
        raise ValueError(f"weight must be a number or a 1-D sequence, got shape {tuple(w.shape)}")
    if bool((w < 0).any()):
        raise ValueError("the value/values of the `weight` should be no less than 0.")
    return w


class DiceLoss(_Loss):
    """Soft Dice (or Jaccard) loss, as ``monai.losses.DiceLoss``.

    input [B, C, *S] logits or probabilities; target [B, 1, *S] label map (with
    ``to_onehot_y``) or [B, C, *S] one-hot/probabilities. ``validate=False`` skips the
    label-range check, the one host synchronisation (it is skipped anyway while a CUDA
    graph is captured).
    """

    def __init__(
        self,
        include_background: bool = True,
        to_onehot_y: bool = False,
        sigmoid: bool = False,
        softmax: bool = False,
        other_act: object | None = None,
        squared_pred: bool = False,
        jaccard: bool = False,
        reduction: str = "mean",
        smooth_nr: float = 1e-5,
        smooth_dr: float = 1e-5,
        batch: bool = False,
        weight: Sequence[float] | float | int | torch.Tensor | None = None,
        soft_label: bool = False,
        ignore_index: int | None = None,
        *,
        validate: bool = True,
    ) -> None:
        options = _constructor_options(locals())
        reduction = str(getattr(reduction, "value", reduction))
        if reduction not in _REDUCTIONS:
            raise ValueError(
                f"Unsupported reduction: {reduction}, available options are {list(_REDUCTIONS)}."
            )
        super().__init__(reduction=reduction)
        if int(sigmoid) + int(softmax) + int(other_act is not None) > 1:
            raise ValueError(
                "Incompatible values: more than 1 of "
                "[sigmoid=True, softmax=True, other_act is not None]."
            )
        _unsupported(other_act=other_act, ignore_index=ignore_index)
        self.include_background = include_background
        self.to_onehot_y = to_onehot_y
        self.sigmoid = sigmoid
        self.softmax = softmax
        self.squared_pred = squared_pred
        self.jaccard = jaccard
        self.smooth_nr = float(smooth_nr)
        self.smooth_dr = float(smooth_dr)
        self.batch = batch
        self.soft_label = soft_label
        self.validate = validate
        self.monai_options = options
        self.register_buffer("class_weight", _class_weight(weight))
        self.class_weight: torch.Tensor | None

    # -- shared with DiceCELoss -------------------------------------------------------
    def _spec(self, input: torch.Tensor, target: torch.Tensor, ce: str = "none") -> StatsSpec:
        _checks.check_prediction(input)
        _checks.check_floating(input, "input")
        _checks.check_pair(input, target, ("input", "target"))
        _checks.check_no_target_grad(target, "target")
        c = input.shape[1]
        if target.shape[1] not in (1, c):
            raise _checks.ShapeMismatchError(
                "number of channels for target is neither 1 (without one-hot encoding) nor the "
                f"same as input, got shape {tuple(input.shape)} and {tuple(target.shape)}."
            )
        act = "sigmoid" if self.sigmoid else "none"
        if self.softmax:
            if c == 1:
                warnings.warn("single channel prediction, `softmax=True` ignored.", stacklevel=3)
            else:
                act = "softmax"
        if c == 1:
            if self.to_onehot_y:
                warnings.warn(
                    "single channel prediction, `to_onehot_y=True` ignored.", stacklevel=3
                )
            if not self.include_background:
                warnings.warn(
                    "single channel prediction, `include_background=False` ignored.", stacklevel=3
                )
            _checks.check_label_range(
                target, 1, "target", self.validate and not target.is_floating_point()
            )
            mode = "dense"  # the single channel's values, as MONAI uses them
        elif target.shape[1] == 1:
            if not self.to_onehot_y:
                raise _checks.ShapeMismatchError(
                    f"ground truth has different shape ({tuple(target.shape)}) from input "
                    f"({tuple(input.shape)}): set to_onehot_y=True for a label map"
                )
            _checks.check_label_dtype(target, "target", allow_float=True)  # MONAI casts to long
            _checks.check_label_range(target, c, "target", self.validate)
            mode = "labels"
        else:
            if self.to_onehot_y:
                raise ValueError(
                    "to_onehot_y=True needs a (B, 1, ...) label map, "
                    f"got target {tuple(target.shape)}"
                )
            mode = "dense"
        # MONAI's soft-label Dice uses L1 norms, Σ|p|, for the volumes.
        return StatsSpec(
            act=act,
            target=mode,
            num_classes=c,
            squared=self.squared_pred,
            ce=ce,
            absolute=self.soft_label,
            diff=self.soft_label and not self.squared_pred,
        )

    def _dice_from_stats(self, stats: Stats, spatial_dims: int) -> torch.Tensor:
        if not self.include_background and stats.I.shape[1] > 1:
            stats = select_classes(stats, 1)
        if self.batch:
            stats = sum_over_batch(stats)
        f = dice_loss_terms(
            stats,
            jaccard=self.jaccard,
            soft_label=self.soft_label and not self.squared_pred,
            smooth_nr=self.smooth_nr,
            smooth_dr=self.smooth_dr,
        )
        if self.batch:
            f = f[0]  # MONAI reduces the batch axis away: f is (C,)
        classes = f.shape[-1]
        if self.class_weight is not None and classes != 1:
            w = self.class_weight.to(f)
            if w.dim() == 0:
                w = w.expand(classes)
            elif w.shape[0] != classes:
                raise ValueError(
                    f"The length of the `weight` sequence ({w.shape[0]}) should be the same as "
                    f"the number of classes ({classes}). If `include_background=False`, the "
                    "weight should not include the background category class 0."
                )
            f = f * w
        if self.reduction == "mean":
            return f.mean()
        if self.reduction == "sum":
            return f.sum()
        return f.view(list(f.shape[0:2]) + [1] * spatial_dims)

    def __prepare_scriptable__(self) -> _Loss:
        return _monai_for_scripting(self)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        spec = self._spec(input, target)
        stats = seg_stats(input, target, spec)
        return self._dice_from_stats(stats, input.dim() - 2)


class DiceCELoss(_Loss):
    """λ_dice·Dice + λ_ce·cross-entropy, as ``monai.losses.DiceCELoss``: softmax CE (with
    class ``weight``) against the label map or probabilities for C > 1, BCE with logits
    (``weight`` as pos_weight) for C = 1; one fused sweep for both terms."""

    def __init__(
        self,
        include_background: bool = True,
        to_onehot_y: bool = False,
        sigmoid: bool = False,
        softmax: bool = False,
        other_act: object | None = None,
        squared_pred: bool = False,
        jaccard: bool = False,
        reduction: str = "mean",
        smooth_nr: float = 1e-5,
        smooth_dr: float = 1e-5,
        batch: bool = False,
        weight: torch.Tensor | None = None,
        lambda_dice: float = 1.0,
        lambda_ce: float = 1.0,
        label_smoothing: float = 0.0,
        *,
        validate: bool = True,
    ) -> None:
        options = _constructor_options(locals())
        super().__init__()
        reduction = str(getattr(reduction, "value", reduction))
        if reduction not in ("mean", "sum"):
            raise ValueError(
                f"Unsupported option: {reduction}; DiceCELoss reduction is 'mean' or 'sum'."
            )
        _unsupported(other_act=other_act, label_smoothing=label_smoothing)
        if lambda_dice < 0.0:
            raise ValueError("lambda_dice should be no less than 0.0.")
        if lambda_ce < 0.0:
            raise ValueError("lambda_ce should be no less than 0.0.")
        ce_weight = _class_weight(weight)
        dice_weight = (
            ce_weight[1:] if ce_weight is not None and not include_background else ce_weight
        )
        self.dice = DiceLoss(
            include_background=include_background,
            to_onehot_y=to_onehot_y,
            sigmoid=sigmoid,
            softmax=softmax,
            squared_pred=squared_pred,
            jaccard=jaccard,
            reduction=reduction,
            smooth_nr=smooth_nr,
            smooth_dr=smooth_dr,
            batch=batch,
            weight=dice_weight,
            validate=validate,
        )
        self.register_buffer("ce_weight", ce_weight)
        self.ce_weight: torch.Tensor | None
        self.monai_options = options
        self.reduction = reduction
        self.lambda_dice = lambda_dice
        self.lambda_ce = lambda_ce

    def __prepare_scriptable__(self) -> _Loss:
        return _monai_for_scripting(self)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if input.dim() != target.dim():
            raise _checks.ShapeMismatchError(
                "the number of dimensions for input and target should be the same, got shape "
                f"{tuple(input.shape)} and {tuple(target.shape)}; give a label map as B1H[WD]."
            )
        ce = "bce" if input.shape[1] == 1 else "softmax"
        spec = self.dice._spec(input, target, ce=ce)  # also checks the channels
        stats = seg_stats(input, target, spec, class_weight=self.ce_weight)
        dice = self.dice._dice_from_stats(stats, input.dim() - 2)
        ce = stats.ce_sum.sum()
        if self.reduction == "mean":
            ce = ce / stats.ce_norm.sum()
        return self.lambda_dice * dice + self.lambda_ce * ce
