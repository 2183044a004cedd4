"""The Trainer's loop fed by qgfast's Rust stream vs a torch DataLoader over the same cases.

Row ``train-loop``: mean-teacher steps of a MONAI 3D UNet through ``qgfast.ssl.Trainer``
(2 labelled + 2 unlabelled patches a step, SGD, no validation) on the synthetic ``organ3d``
set written as ``.nii.gz``. Providers:
- ``qgfast-stream``: the ``VolumeStream`` that ``qgfast train`` builds (``qgfast.ssl.run
  .make_stream``: z-score, crops with foreground oversampling, flips, rot90, scale,
  intensity and noise in Rust; 2 threads);
- ``dataloader-2w``: a torch DataLoader (2 workers) over nibabel reads with the same
  per-sample work in NumPy (``qgfast/bench/loader_providers.py``'s ``NibabelSSL``: z-score,
  a random crop, flips, intensity and noise; no rot90/scale, so it does less work).
Both share the machine's cores with the network, as they do in a real run. The row's p50 is
the mean step time over the timed steps (after warm-up steps that fill the queues and
start the workers); ``extra`` has steps/s and the share of step time the loop waited for a
batch (``Trainer.timing``, what ``report.json``'s ``training.throughput`` also gives).

    python -m qgfast.bench.bench_train [--quick] [--out benchmarks/results/train.jsonl]
"""

from __future__ import annotations

import argparse
import importlib.util
import tempfile
from pathlib import Path

import torch

from qgfast import ssl
from qgfast.bench.harness import Recorder, Timing, default_device
from qgfast.bench.loader_providers import NibabelSSL, TwoStream
from qgfast.data import find_cases, make_synthetic_dataset
from qgfast.ssl.trainer import Trainer, TrainerConfig, throughput


class _DataLoaderPairs:
    """A DataLoader of 2+2 index batches split into (labelled, unlabelled) pairs."""

    def __init__(self, cases, n_labelled: int, patch, workers: int = 2) -> None:
        images = [c.images[0] for c in cases]
        labels = [c.label if i < n_labelled else None for i, c in enumerate(cases)]
        self.loader = torch.utils.data.DataLoader(
            NibabelSSL(images, labels, patch),
            batch_sampler=TwoStream(n_labelled, len(cases)),
            num_workers=workers,
            persistent_workers=True,
        )

    def __iter__(self):
        for batch in self.loader:
            yield {
                "labeled": {"image": batch["image"][:2], "label": batch["label"][:2]},
                "unlabeled": {"image": batch["image"][2:]},
            }


def _qgfast_stream(cases, n_labelled: int, patch):
    from qgfast.ssl.config import RunConfig
    from qgfast.ssl.inference import Preprocessing
    from qgfast.ssl.run import make_stream

    cfg = RunConfig(batch_size=2, unlabeled_batch_size=2, threads=2)
    pre = Preprocessing(spatial_dims=3, patch=tuple(patch), normalisation="zscore")
    return make_stream(pre, cases[:n_labelled], cases[n_labelled:], cfg, seed=0)


def run_loop(
    source, device: torch.device, warm: int, steps: int, out_dir: Path
) -> tuple[Timing, dict[str, float]]:
    from monai.networks.nets import UNet

    torch.manual_seed(0)
    model = UNet(3, 1, 4, channels=(8, 16, 32), strides=(2, 2)).to(device)
    fw = ssl.MeanTeacher(model, consistency_ramp=1.0)

    def reset_after_warm_up(trainer, _losses) -> None:
        if trainer.step == warm:
            trainer.timing = {"data_s": 0.0, "step_s": 0.0, "steps": 0}

    trainer = Trainer(
        fw,
        source,
        out_dir=out_dir,
        config=TrainerConfig(
            max_steps=warm + steps,
            checkpoint_every=10**9,
            progress=False,
            tensorboard=False,
            log_every=10**9,
        ),
        device=device,
        callbacks=[reset_after_warm_up],
    )
    trainer.fit()
    rate = throughput(trainer.timing)
    mean_ms = 1e3 / rate["steps_per_s"]
    timing = Timing(p20_ms=mean_ms, p50_ms=mean_ms, p80_ms=mean_ms, peak_mb=None)
    return timing, {
        "steps_per_s": round(rate["steps_per_s"], 3),
        "data_wait_share": round(rate["data_wait_share"], 4),
        "timed_steps": trainer.timing["steps"],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default="benchmarks/results/train.jsonl")
    args = ap.parse_args(argv)
    device = default_device()
    if device.type == "cpu":
        torch.set_num_threads(2)
    if args.quick:
        n, size, patch = 8, (48, 48, 32), (32, 32, 24)
    else:
        n, size, patch = 16, (128, 128, 80), (64, 64, 48)
    warm, steps = (2, 4) if args.quick else (5, 30)
    rec = Recorder(args.out, device)
    with tempfile.TemporaryDirectory() as tmp:
        root = make_synthetic_dataset("organ3d", n, Path(tmp) / "data", seed=0, size=size)
        cases = find_cases(root)
        n_labelled = n // 4
        shape = f"MT 2+2x1x{'x'.join(map(str, patch))} from {n}x{'x'.join(map(str, size))}"
        providers = {"qgfast-stream": lambda: _qgfast_stream(cases, n_labelled, patch)}
        if importlib.util.find_spec("nibabel") is not None:  # the baseline reads with it
            providers["dataloader-2w"] = lambda: _DataLoaderPairs(cases, n_labelled, patch)
        else:
            print("train-loop dataloader-2w: skipped (needs nibabel)", flush=True)
        for name, make in providers.items():
            t, extra = run_loop(make(), device, warm, steps, Path(tmp) / name)
            rec.record(
                "train-loop",
                name,
                t,
                shape=shape,
                dtype=torch.float32,
                mode="train",
                extra=extra,
            )
            print(f"  {name}: {extra}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
