"""Cross pseudo supervision (CPS, Chen et al., CVPR 2021) and CPS-QW.

Two networks of the same architecture, initialised differently and trained by separate
optimisers; each is supervised on the unlabelled batch by the other's hard prediction
(argmax, no threshold), with cross-entropy as in the paper and SSL4MIS
(``pseudo_lambda_dice`` adds the soft-Dice term of PL-QW's ℓ_j). CPS-QW weights each
direction per sample by the quality of the pseudolabel it learns from:
net A's term uses w_j = q^T·1[q ≥ τ] of (x_u,j, ŷ_B,j), and vice versa.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from qgfast.losses import per_sample_dice_ce
from qgfast.losses._compose import weighted_mean
from qgfast.quality.guide import QualityGuide
from qgfast.ssl.base import Framework, QarPair, hard_labels, probabilities, weight_summary
from qgfast.ssl.ema import unwrap
from qgfast.ssl.ramps import Ramp


def reinitialised_copy(model: nn.Module, seed: int) -> nn.Module:
    """A copy of ``model`` whose every layer with ``reset_parameters`` is re-drawn from
    ``seed`` (the global RNG state is restored afterwards)."""
    twin = copy.deepcopy(unwrap(model))
    with torch.random.fork_rng(devices=range(torch.cuda.device_count())):
        torch.manual_seed(seed)
        for module in twin.modules():
            reset = getattr(module, "reset_parameters", None)
            if callable(reset):
                reset()
    return twin


def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    pa, pb = list(unwrap(a).parameters()), list(unwrap(b).parameters())
    return len(pa) == len(pb) and all(
        x.shape == y.shape and torch.equal(x.detach(), y.detach().to(x.device))
        for x, y in zip(pa, pb, strict=True)
    )


class CrossPseudoSupervision(Framework):
    """CPS, or CPS-QW with ``quality=guide``.

    model_b: the second network; ``None`` builds it as a copy of ``model_a`` re-initialised
        from ``seed_b``. It must not start from ``model_a``'s weights.
    consistency_ramp: λ of the cross terms; the paper's W = 15, R = 30 epochs to 0.1.
    ``models`` is [model_a, model_b] (one optimiser each); ``eval_model`` is model_a.
    """

    def __init__(
        self,
        model_a: nn.Module,
        model_b: nn.Module | None = None,
        *,
        quality: QualityGuide | None = None,
        seed_b: int = 1,
        consistency_ramp: Ramp | float | None = None,
        pseudo_lambda_ce: float = 1.0,
        pseudo_lambda_dice: float = 0.0,
        **common: Any,
    ) -> None:
        if (
            pseudo_lambda_ce < 0
            or pseudo_lambda_dice < 0
            or pseudo_lambda_ce + pseudo_lambda_dice == 0
        ):
            raise ValueError("pseudo_lambda_ce and pseudo_lambda_dice must be >= 0, not both 0")
        super().__init__(model_a, quality=quality, consistency_ramp=consistency_ramp, **common)
        if model_b is None:
            model_b = reinitialised_copy(model_a, seed_b)
            p = next(unwrap(model_a).parameters(), None)
            if p is not None:
                model_b.to(p.device)
        elif not isinstance(model_b, nn.Module):
            raise TypeError(f"model_b must be a torch.nn.Module, got {type(model_b).__name__}")
        if unwrap(model_b) is unwrap(model_a):
            raise ValueError("CPS needs two networks: model_b is model_a")
        if _same_weights(model_a, model_b):
            raise ValueError(
                "model_b starts from model_a's weights; CPS needs differently initialised "
                "networks (pass model_b=None to re-initialise a copy from seed_b)"
            )
        self.model_b = model_b
        self.pseudo_lambda_ce = pseudo_lambda_ce
        self.pseudo_lambda_dice = pseudo_lambda_dice
        self.name = "CPS" if quality is None else "CPS-QW"

    @property
    def models(self) -> list[nn.Module]:
        return [self.model, self.model_b]

    def _cross(
        self, logits: torch.Tensor, pseudolabels: torch.Tensor, weights: torch.Tensor | None
    ) -> torch.Tensor:
        per_sample = per_sample_dice_ce(
            logits,
            pseudolabels,
            lambda_ce=self.pseudo_lambda_ce,
            lambda_dice=self.pseudo_lambda_dice,
            include_background=self.include_background,
            smooth=1e-6,
            validate=False,  # argmax labels are in range by construction
        )
        if weights is None:
            return per_sample.mean()
        return weighted_mean(per_sample, weights.to(per_sample.dtype), 1e-8)

    def _losses(
        self,
        images_l: torch.Tensor,
        labels: torch.Tensor,
        images_u: torch.Tensor | None,
        gen: torch.Generator,
    ) -> tuple[dict[str, torch.Tensor], list[QarPair]]:
        assert images_u is not None
        logits_la, logits_ua = self.forward(self.model, images_l, images_u)
        logits_lb, logits_ub = self.forward(self.model_b, images_l, images_u)
        sup_a = self.supervised(logits_la, labels)
        sup_b = self.supervised(logits_lb, labels)
        with torch.no_grad():
            labels_a = hard_labels(probabilities(logits_ua))
            labels_b = hard_labels(probabilities(logits_ub))
        extra: dict[str, torch.Tensor] = {}
        w_a = w_b = None  # w_a weights net A's term, which learns from B's pseudolabels
        if self.quality is not None:
            w_a = self.quality_weights(self.quality, images_u, labels_b)
            w_b = self.quality_weights(self.quality, images_u, labels_a)
            extra.update(weight_summary(torch.cat([w_a, w_b]), "quality_weight"))
        cps = self._cross(logits_ua, labels_b, w_a) + self._cross(logits_ub, labels_a, w_b)
        extra.update(sup_a=sup_a.detach(), sup_b=sup_b.detach())
        out = self.combine(sup_a + sup_b, "cps", cps, extra)
        return out, [(images_u, logits_ua), (images_u, logits_ub)]
