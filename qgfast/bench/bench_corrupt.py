"""Mask corruption vs what users run today: morphology (erosion, dilation) per op, and the
whole VQM generator (masks/s and quality targets/s) against a per-sample NumPy/SciPy
generator in the authors' style (``qgfast/bench/authors_style_generator.py``, a
re-implementation) and, where ``QGFAST_QGSSL_PATH`` points to a checkout of the authors'
release, their published generator itself (``authors-published-cpu``, 2D only;
``qgfast/bench/published_generator.py``).

Providers (ratios in RESULTS.md are against ``reference``, qgfast's PyTorch chord reference):
- ``qgfast``: the dispatched op (Triton on CUDA; on CPU the bit-packed rows of
  ``qgfast.corrupt.morphology_packed``);
- ``reference``: qgfast's plain PyTorch chord decomposition (QGFAST_BACKEND=reference);
- ``scipy``: scipy.ndimage binary_erosion/dilation with the same footprint, one sample at a
  time on one core (CPU only; what the authors' data-loader workers do);
- ``maxpool-cube``: max_pool3d/2d of the float mask (cube only; erosion as −maxpool(−x));
- ``conv-ball``: conv3d/2d with the ball as kernel, thresholded (> 0 dilation, = |ball| erosion);
- ``monai``: monai.transforms.utils_morphological_ops erode/dilate (cube footprint).

Shapes: 8×1×128³ and 24×1×256², uint8, ~10 % foreground (a smooth blob field).

    python -m qgfast.bench.bench_corrupt [--quick] [--only morphology|generator]
        [--out benchmarks/results/corrupt.jsonl]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from qgfast import corrupt
from qgfast.backend import use_backend
from qgfast.bench.harness import Recorder, default_device
from qgfast.reference.morphology import footprint

SHAPES = {"3D": (8, 1, 128, 128, 128), "2D": (24, 1, 256, 256)}
QUICK_SHAPES = {"3D": (2, 1, 24, 20, 16), "2D": (4, 1, 40, 36)}


def blob_masks(shape: tuple[int, ...], device: torch.device, fraction: float = 0.1) -> torch.Tensor:
    """Smooth random blobs covering ~``fraction`` of the volume."""
    g = torch.Generator(device="cpu").manual_seed(0)
    coarse = torch.rand((shape[0], 1, *(max(2, s // 8) for s in shape[2:])), generator=g)
    mode = "trilinear" if len(shape) == 5 else "bilinear"
    field = F.interpolate(coarse, size=shape[2:], mode=mode, align_corners=False)
    cut = torch.quantile(field.flatten()[:: max(1, field.numel() // 1_000_000)], 1 - fraction)
    return (field > cut).to(torch.uint8).to(device)


def _pool(x: torch.Tensor, radius: int) -> torch.Tensor:
    pool = F.max_pool3d if x.dim() == 5 else F.max_pool2d
    return pool(x, 2 * radius + 1, stride=1, padding=radius)


def _maxpool_cube(masks: torch.Tensor, radius: int, erode: bool) -> torch.Tensor:
    x = masks.float()
    if erode:  # border 0: pad with 0 explicitly, max-pool pads with −inf
        xp = F.pad(x, (radius, radius) * (x.dim() - 2), value=0.0)
        return (-_pool(-xp, radius))[(..., *[slice(radius, -radius)] * (x.dim() - 2))].to(
            masks.dtype
        )
    return _pool(x, radius).to(masks.dtype)


def _conv_ball(masks: torch.Tensor, radius: int, erode: bool) -> torch.Tensor:
    nd = masks.dim() - 2
    kernel = footprint(radius, nd, "ball").to(masks.device, torch.float32)[None, None]
    conv = F.conv3d if nd == 3 else F.conv2d
    hits = conv(masks.float(), kernel, padding=radius)
    return (hits >= kernel.sum() - 0.5 if erode else hits > 0.5).to(masks.dtype)


def _providers(device: torch.device, shape: str) -> dict[str, Callable]:
    out: dict[str, Callable] = {
        "qgfast": lambda m, r, erode: (corrupt.erode if erode else corrupt.dilate)(
            m, r, shape=shape
        )
    }

    def reference(m, r, erode):
        with use_backend("reference"):
            return (corrupt.erode if erode else corrupt.dilate)(m, r, shape=shape)

    out["reference"] = reference
    if shape == "cube":
        out["maxpool-cube"] = _maxpool_cube
        try:
            from monai.transforms.utils_morphological_ops import dilate, erode

            out["monai"] = lambda m, r, e: (erode if e else dilate)(m, 2 * r + 1, pad_value=0.0)
        except ImportError:
            pass
    else:
        out["conv-ball"] = _conv_ball
    if device.type == "cpu":
        try:
            import scipy.ndimage as ndi

            def scipy_op(m, r, erode):
                fp = footprint(r, m.dim() - 2, shape).numpy()
                op = ndi.binary_erosion if erode else ndi.binary_dilation
                return [op(s[0].numpy(), structure=fp, border_value=0) for s in m]

            out["scipy"] = scipy_op
        except ImportError:
            pass
    return out


def bench_morphology(rec: Recorder, device: torch.device, radii: list[int], quick: bool) -> None:
    """Erosion and dilation per footprint and radius against every provider."""
    for name, shape in (QUICK_SHAPES if quick else SHAPES).items():
        masks = blob_masks(shape, device)
        for fp_shape in ("ball", "cube"):
            for r in radii:
                for erode in (True, False):
                    op = f"{'erode' if erode else 'dilate'}-{fp_shape}"
                    for provider, fn in _providers(device, fp_shape).items():
                        rec.bench(
                            op,
                            provider,
                            lambda fn=fn, r=r, erode=erode, masks=masks: fn(masks, r, erode),
                            shape=f"{name} r={r} {'x'.join(map(str, shape))}",
                            dtype="uint8",
                            mode="fwd",
                            bytes_moved=2 * masks.nbytes,
                            min_run_time=0.05 if quick else 0.3,
                        )


# The category probabilities of the published generator's CorruptionConfig (its defaults;
# the paper's, qgfast's default, has 0.20 identity and 0.10 cross-image).
RELEASE_MIX = {
    "identity": 0.12,
    "single": 0.28,
    "chained": 0.18,
    "cross_image": 0.18,
    "heavy": 0.12,
    "catastrophic": 0.05,
    "blob": 0.07,
}
GENERATOR_CASES = {"paper-2D 32x50": (32, 50, (224, 224)), "LA-3D 4x8": (4, 8, (112, 112, 80))}
QUICK_GENERATOR_CASES = {"tiny-2D 4x3": (4, 3, (48, 40))}


def bench_generator(rec: Recorder, quick: bool) -> None:
    """Masks/s of ``VQMGenerator.generate`` (copies and their quality targets) vs the
    authors-style per-sample CPU generator (CPU rows only; it never runs on a GPU)."""
    from qgfast.bench import authors_style_generator, published_generator
    from qgfast.corrupt import VQMGenerator

    gen = VQMGenerator()
    release = VQMGenerator(categories=RELEASE_MIX)
    published = published_generator.load() if rec.device.type == "cpu" else None
    device = rec.device
    cases = QUICK_GENERATOR_CASES if quick else GENERATOR_CASES
    for name, (b, k, spatial) in cases.items():
        masks = blob_masks((b, 1, *spatial), device, fraction=0.2)
        runs = {"qgfast": lambda masks=masks, k=k: gen.generate(masks, k=k, seed=0)}
        if published is not None and len(spatial) == 2:
            # the release's category mixture (more cross-image copies, fewer identities than
            # the paper's default): the published generator's own target distribution
            runs["qgfast-release-mix"] = lambda masks=masks, k=k: release.generate(
                masks, k=k, seed=0
            )
        if device.type == "cpu":
            np_masks = masks[:, 0].numpy().astype(bool)
            runs["authors-style-cpu"] = lambda m=np_masks, k=k: authors_style_generator.generate(
                m, k
            )
            if published is not None and len(spatial) == 2:
                runs["authors-published-cpu"] = lambda m=np_masks, k=k: published(m, k)
        for provider, fn in runs.items():
            rec.bench(
                "vqm_generator",
                provider,
                fn,
                shape=f"{name} {'x'.join(map(str, (b * k, 1, *spatial)))}",
                dtype="uint8",
                mode="fwd",
                min_run_time=0.05 if quick else 12.0,  # >= 3 calls of a few seconds
                measure_memory=False,
                items=b * k,
                extra={"quality": _quality_summary(provider, fn())},
            )


def _quality_summary(provider: str, result) -> dict[str, float]:
    """Mean and quartiles of one call's quality targets (Dice), so a row shows that the
    providers draw the same distribution, not only how fast they draw it."""
    if provider.startswith("qgfast"):
        q = result.quality.double().numpy()
    elif provider == "authors-published-cpu":
        q = np.array([dice for _, dice, _ in result], dtype=np.float64)
    else:
        q = np.asarray(result[1], dtype=np.float64)
    quartiles = np.quantile(q, [0.25, 0.5, 0.75])
    return {
        "mean": round(float(q.mean()), 3),
        **{f"q{p}": round(float(v), 3) for p, v in zip((25, 50, 75), quartiles, strict=True)},
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/corrupt.jsonl"))
    parser.add_argument("--quick", action="store_true", help="tiny shapes (smoke test)")
    parser.add_argument("--radii", type=int, nargs="*", help="default: 1 3 5 on GPU, 3 on CPU")
    parser.add_argument(
        "--only", choices=("morphology", "generator"), help="one part (default: both)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        help="CPU threads for torch and OpenCV (1: per-core rows; default: torch's own)",
    )
    args = parser.parse_args(argv)
    if args.threads is not None:
        if args.threads < 1:
            parser.error(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
        try:
            import cv2

            cv2.setNumThreads(args.threads)
        except ImportError:
            pass
    device = default_device()
    rec = Recorder(args.out, device)
    radii = args.radii or ([1, 3, 5] if device.type == "cuda" and not args.quick else [3])
    if args.only != "generator":
        bench_morphology(rec, device, radii, args.quick)
    if args.only != "morphology":
        bench_generator(rec, args.quick)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
