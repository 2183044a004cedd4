"""One semi-supervised training step (MT, MT-QW, PL-QW, CPS-QW) and its unsupervised term.

Rows:
- ``ssl-step``: ``fw.step`` + backward + optimiser step(s) + ``after_step`` of a MONAI
  UNet (2D and 3D; on CUDA also a VNet at the LA setting, 2+2 × 112×112×80), with a
  ResNet-10 quality predictor guiding the -QW variants (threshold 0, so every sample's
  weight is computed and used). ``extra.unsup_share`` is the p50 of the framework's
  unsupervised loss term alone over the step's p50.
- ``ssl-unsup-term``: that term alone, forward + backward, on leaf logits of the step's
  shapes (MT: ``softmax_mse``; PL-QW: ``quality_weighted_dice_ce``; CPS-QW: both
  directions' per-sample CE, weighted) — the part the fused kernels replace.

Providers: ``qgfast`` (dispatched: Triton on CUDA) and ``reference`` (QGFAST_BACKEND=
reference). On a CPU both dispatch to the same reference, so only ``reference`` runs there.

    python -m qgfast.bench.bench_ssl [--quick] [--out ...]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import torch

from qgfast import losses, ssl
from qgfast.backend import use_backend
from qgfast.bench.harness import Recorder, default_device, time_callable
from qgfast.quality import QualityGuide, QualityPredictor
from qgfast.ssl.base import hard_labels, probabilities

FRAMEWORKS = ("MT", "MT-QW", "PL-QW", "CPS-QW")


def _unet(dims: int, channels: tuple[int, ...]) -> torch.nn.Module:
    from monai.networks.nets import UNet

    return UNet(dims, 1, 2, channels=channels, strides=(2,) * (len(channels) - 1))


def _vnet() -> torch.nn.Module:
    from monai.networks.nets import VNet

    return VNet(spatial_dims=3, in_channels=1, out_channels=2)


def settings(device: torch.device, quick: bool) -> dict[str, tuple[Callable, int, tuple]]:
    """name → (network factory, labelled = unlabelled batch size, patch size)."""
    if quick:
        return {
            "2D unet": (lambda: _unet(2, (8, 16, 32)), 2, (32, 32)),
            "3D unet": (lambda: _unet(3, (8, 16, 32)), 1, (16, 16, 16)),
        }
    out = {
        "2D unet": (lambda: _unet(2, (16, 32, 64, 128)), 8, (128, 128)),
        "3D unet": (lambda: _unet(3, (16, 32, 64)), 2, (64, 64, 48)),
    }
    if device.type == "cuda":
        out["LA vnet"] = (_vnet, 2, (112, 112, 80))
    return out


def build(name: str, model: torch.nn.Module, guide: QualityGuide) -> ssl.Framework:
    ramp = {"consistency_ramp": 1.0}
    if name == "MT":
        return ssl.MeanTeacher(model, **ramp)
    if name == "MT-QW":
        return ssl.MeanTeacher(model, quality=guide, **ramp)
    if name == "PL-QW":
        return ssl.PseudoLabel(model, quality=guide, **ramp)
    return ssl.CrossPseudoSupervision(model, quality=guide, **ramp)


def unsup_term(name: str, logits: torch.Tensor, labels: torch.Tensor, w: torch.Tensor):
    """The framework's unsupervised loss on given student logits (see the module doc)."""
    if name.startswith("MT"):
        target = probabilities(logits.detach().roll(1, 0))
        return losses.softmax_mse(logits, target, None if name == "MT" else w)
    if name == "PL-QW":
        return losses.quality_weighted_dice_ce(logits, labels, w, validate=False)
    per_a = losses.per_sample_dice_ce(logits, labels, lambda_ce=1.0, lambda_dice=0.0)
    per_b = losses.per_sample_dice_ce(logits.roll(1, 0), labels, lambda_ce=1.0, lambda_dice=0.0)
    return ((w * per_a).sum() + (w * per_b).sum()) / (w.sum() + 1e-8)


def bench_setting(rec: Recorder, setting: str, spec, providers, quick: bool) -> None:
    device = rec.device
    factory, b, size = spec
    dims = len(size)
    gen = torch.Generator(device=device).manual_seed(0)
    labeled = {
        "image": torch.randn(b, 1, *size, device=device, generator=gen),
        "label": torch.randint(0, 2, (b, 1, *size), device=device, generator=gen).to(torch.uint8),
    }
    unlabeled = {"image": torch.randn(b, 1, *size, device=device, generator=gen)}
    predictor = QualityPredictor(dims, 1, 2, backbone="resnet10").to(device)
    guide = QualityGuide(predictor, threshold=0.0)
    shape = f"{setting} {b}+{b}x1x{'x'.join(map(str, size))}"
    min_time = 0.05 if quick else 1.0
    for name in FRAMEWORKS:
        torch.manual_seed(0)
        fw = build(name, factory().to(device), guide)
        opts = [torch.optim.SGD(m.parameters(), lr=1e-3, momentum=0.9) for m in fw.models]

        def step(fw=fw, opts=opts):
            out = fw.step(labeled, unlabeled)
            for o in opts:
                o.zero_grad(set_to_none=True)
            out["loss"].backward()
            for o in opts:
                o.step()
            fw.after_step()

        logits = torch.randn(b, 2, *size, device=device, generator=gen).requires_grad_()
        pl = hard_labels(probabilities(logits.detach()))
        w = guide.weights(unlabeled["image"], pl)

        def term(name=name, logits=logits, pl=pl, w=w):
            unsup_term(name, logits, pl, w).backward()

        for provider, backend in providers.items():
            with use_backend(backend):
                t_term = rec.bench(
                    "ssl-unsup-term",
                    provider,
                    term,
                    shape=f"{name} {shape}",
                    dtype=torch.float32,
                    mode="fwd+bwd",
                    grad_to_none=[logits],
                    min_run_time=min_time,
                )
                t_step = time_callable(step, device, min_run_time=min_time)
                rec.record(
                    "ssl-step",
                    provider,
                    t_step,
                    shape=f"{name} {shape}",
                    dtype=torch.float32,
                    mode="step",
                    items=1,
                    extra={"unsup_share": round(t_term.p50_ms / t_step.p50_ms, 4)},
                )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny nets and patches")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/ssl.jsonl"))
    args = parser.parse_args(argv)
    device = default_device()
    rec = Recorder(args.out, device)
    providers = {"reference": "reference"}
    if device.type == "cuda":
        providers = {"qgfast": None, **providers}
    for setting, spec in settings(device, args.quick).items():
        bench_setting(rec, setting, spec, providers, args.quick)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
