"""Fused losses vs what users run today: DiceCE, the quality-weighted pseudolabel loss and
dice_scores, forward and forward+backward, time and loss-attributable peak memory.

Providers (ratios in RESULTS.md are against ``reference``, the eager PyTorch reference):
- ``qgfast``: the dispatched op (Triton on CUDA; on CPU the losses are the reference and
  are skipped, while ``dice_scores`` of label maps counts them, ``qgfast.losses._stats``);
- ``reference``: qgfast's plain PyTorch reference (QGFAST_BACKEND=reference);
- ``reference-compile``: ``torch.compile`` of the same reference, fp32/uint8 at the target
  shapes LA and BraTS-SSL only (compiling costs tens of seconds a shape); on by default on
  CUDA, ``--compile`` on CPU, ``--no-compile`` to skip;
- ``monai``: ``monai.losses.DiceCELoss`` / ``monai.metrics.compute_dice`` (if installed);
- ``nnunet-style``: nnU-Net's memory-efficient soft Dice + CE, written here from its
  published formula (softmax, bool one-hot under no_grad, sums, −mean Dice + CE).

``bytes_moved`` is the minimum traffic of a fused implementation (read logits and labels;
backward also reads them again and writes the gradient), so ``GB_per_s`` of any provider
compares directly with ``bench_bandwidth``'s floor of the same run.

    python -m qgfast.bench.bench_losses [--quick] [--compile | --no-compile]
        [--only dice_ce|dice_scores] [--out ...]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from qgfast import losses
from qgfast.backend import use_backend
from qgfast.bench.harness import Recorder, default_device

SHAPES = {
    "LA": (4, 2, 112, 112, 80),
    "BraTS-SSL": (4, 2, 96, 96, 96),
    "ACDC": (24, 4, 256, 256),
    "stress": (8, 4, 128, 128, 128),
}
QUICK_SHAPES = {"tiny3d": (2, 2, 24, 20, 16), "tiny2d": (4, 4, 48, 40)}
COMPILE_SHAPES = {"LA", "BraTS-SSL", "tiny3d"}


def nnunet_style_dice_ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """nnU-Net's MemoryEfficientSoftDiceLoss (batch_dice=False, do_bg=False, smooth=1e-5)
    plus RobustCrossEntropyLoss, weights 1 and 1."""
    probs = torch.softmax(logits, 1)
    axes = tuple(range(2, logits.dim()))
    with torch.no_grad():
        onehot = torch.zeros(logits.shape, device=logits.device, dtype=torch.bool)
        onehot.scatter_(1, labels.long(), 1)
        onehot = onehot[:, 1:]
        sum_gt = onehot.sum(axes)
    probs_fg = probs[:, 1:]
    intersect = (probs_fg * onehot).sum(axes)
    sum_pred = probs_fg.sum(axes)
    dc = (2 * intersect + 1e-5) / torch.clip(sum_gt + sum_pred + 1e-5, 1e-8)
    return F.cross_entropy(logits, labels[:, 0].long()) - dc.mean()


def _providers(device: torch.device, use_compile: bool) -> dict[str, Callable]:
    """name → wrapper turning a qgfast loss f(logits, labels) into that provider's call."""
    out: dict[str, Callable] = {}
    if device.type == "cuda":
        out["qgfast"] = lambda fn: fn
    out["reference"] = lambda fn: with_backend(fn, "reference")
    if use_compile:
        # the backend is forced outside the compiled region: dynamo cannot trace putenv
        out["reference-compile"] = lambda fn: with_backend(torch.compile(fn), "reference")
    return out


def with_backend(fn: Callable, name: str) -> Callable:
    def run(*args):
        with use_backend(name):
            return fn(*args)

    return run


def _bytes(x: torch.Tensor, y: torch.Tensor, mode: str) -> int:
    fwd = x.nbytes + y.nbytes
    return fwd if mode == "fwd" else 2 * fwd + x.nbytes


def _time_loss(
    rec, op, provider, loss_fn, x, y, shape_name, mode, label_dtype, quick=False
) -> None:
    x.grad = None
    if mode == "fwd":

        def step():
            return loss_fn(x, y)
    else:

        def step():
            loss_fn(x, y).backward()

    rec.bench(
        op,
        provider,
        step,
        shape=f"{shape_name} {'x'.join(map(str, x.shape))}",
        dtype=f"{str(x.dtype).removeprefix('torch.')}/{str(label_dtype).removeprefix('torch.')}",
        mode=mode,
        bytes_moved=_bytes(x, y, mode),
        grad_to_none=[x],
        min_run_time=0.05 if quick else 0.5,
    )


def bench_dice_ce(
    rec: Recorder, shapes, dtypes, label_dtypes, use_compile: bool, quick: bool = False
) -> None:
    device = rec.device
    fused = losses.DiceCELoss(to_onehot_y=True, softmax=True)
    qw = losses.QualityWeightedDiceCELoss()
    baselines = {"nnunet-style": nnunet_style_dice_ce}
    try:
        import monai.losses

        baselines["monai"] = monai.losses.DiceCELoss(to_onehot_y=True, softmax=True)
    except ImportError:
        pass
    for shape_name, shape in shapes.items():
        b, c, *s = shape
        for dtype in dtypes:
            x = torch.randn(shape, device=device, dtype=dtype).requires_grad_()
            for label_dtype in label_dtypes:
                y = torch.randint(0, c, (b, 1, *s), device=device, dtype=label_dtype)
                w = torch.rand(b, device=device)

                def qw_fn(x, y, w=w):
                    return qw(x, y, w)

                for mode in ("fwd", "fwd+bwd"):
                    compile_here = (
                        use_compile and dtype == torch.float32 and label_dtype == torch.uint8
                    )
                    for name, wrap in _providers(device, compile_here).items():
                        _time_loss(
                            rec, "dice_ce", name, wrap(fused), x, y, shape_name, mode, label_dtype
                        )
                        _time_loss(
                            rec,
                            "qw_dice_ce",
                            name,
                            wrap(qw_fn),
                            x,
                            y,
                            shape_name,
                            mode,
                            label_dtype,
                        )
                    for name, fn in baselines.items():
                        _time_loss(
                            rec, "dice_ce", name, fn, x, y, shape_name, mode, label_dtype, quick
                        )
            del x


def bench_dice_scores(rec: Recorder, quick: bool) -> None:
    """Quality targets: K candidate masks per ground truth, hard foreground Dice."""
    device = rec.device
    cases = {"paper-2D 32x50": (32, 50, (224, 224)), "LA-3D 4x8": (4, 8, (112, 112, 80))}
    if quick:
        cases = {"tiny 4x3": (4, 3, (32, 24))}
    try:
        from monai.metrics import compute_dice
    except ImportError:
        compute_dice = None
    for name, (b, k, spatial) in cases.items():
        gt = (torch.rand(b, 1, *spatial, device=device) > 0.8).to(torch.uint8)
        cand = (torch.rand(b * k, 1, *spatial, device=device) > 0.8).to(torch.uint8)
        moved = cand.nbytes + gt.nbytes

        def scores(gt=gt, cand=cand, k=k):
            return losses.dice_scores(cand, gt, num_classes=1, repeats=k, validate=False)

        providers = {"qgfast": scores, "reference": with_backend(scores, "reference")}
        if compute_dice is not None:

            def monai_scores(gt=gt, cand=cand, k=k):
                # what MONAI users do: repeat the ground truth, one-hot both, compute_dice
                pred = F.one_hot(cand[:, 0].long(), 2).movedim(-1, 1)
                target = F.one_hot(gt.repeat_interleave(k, 0)[:, 0].long(), 2).movedim(-1, 1)
                return compute_dice(pred, target, include_background=False, ignore_empty=False)

            providers["monai"] = monai_scores
        for provider, fn in providers.items():
            rec.bench(
                "dice_scores",
                provider,
                fn,
                shape=f"{name} {'x'.join(map(str, cand.shape))}",
                dtype="uint8",
                mode="fwd",
                bytes_moved=moved,
            )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/losses.jsonl"))
    parser.add_argument("--quick", action="store_true", help="tiny shapes (smoke test)")
    parser.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="add torch.compile(reference) (default: on for CUDA, off for CPU)",
    )
    parser.add_argument("--shapes", nargs="*", help=f"subset of {list(SHAPES)}")
    parser.add_argument(
        "--only", choices=("dice_ce", "dice_scores"), help="one part (default: both)"
    )
    args = parser.parse_args(argv)
    device = default_device()
    rec = Recorder(args.out, device)
    shapes = QUICK_SHAPES if args.quick else {k: SHAPES[k] for k in (args.shapes or SHAPES)}
    gpu = device.type == "cuda"
    dtypes = [torch.float32, torch.bfloat16] if gpu and not args.quick else [torch.float32]
    label_dtypes = [torch.uint8, torch.int64] if gpu and not args.quick else [torch.uint8]
    use_compile = gpu if args.compile is None else args.compile
    if args.only != "dice_scores":
        bench_dice_ce(rec, shapes, dtypes, label_dtypes, use_compile, args.quick)
    if args.only != "dice_ce":
        bench_dice_scores(rec, args.quick)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
