"""Loader benchmarks (CPU): NIfTI decode per core, and SSL batches/s at equal cores.

Decode: qgfast's Rust reader vs nibabel, one core, uncompressed MB/s.
SSL batches: 2 labelled + 2 unlabelled 112×112×80 patches per batch (z-score, crop, flips,
intensity, noise) from LA-like .nii.gz volumes, by qgfast's VolumeStream (2 threads; cache
off = one decode per sample, cache on = 4 samples per decoded volume; "qgfast-nii" = cache
off over the ``qgfast.data.convert`` uncompressed copies) and by a nibabel +
NumPy loop, a torch DataLoader with 2 workers, MONAI (Dataset and CacheDataset, 2
workers) and a TorchIO Queue (2 workers, 4 samples per volume); each provider runs in its
own process (``qgfast/bench/loader_providers.py``) so its peak RSS is its own (workers:
the largest worker's private memory × 2, sampled every 0.25 s through the warm-up
batches and once after the timed ones; a forked worker's own RSS misses the parent pages
it has not touched, and the parent's pages it shares are not its cost).
2D batches: 32 images 512² JPEG + PNG masks → 224² with flips, brightness/contrast jitter
and ImageNet normalisation (and again with a rotation by U(−20°, 20°) per image), by
ImageStream (2 threads) vs PIL in a DataLoader (2 workers),
over 512 images (16 batches an epoch, so epoch starts weigh as little as in real data);
the two providers run alternately for 3 rounds and each row pools its rounds, so load
from elsewhere on the machine falls on both alike.

Data: MR-like phantoms from ``qgfast.data.synthetic.organ_case`` (organs, bias field,
Rician noise: compresses like real MR), written with gzip levels 1 and 6 and uncompressed:
- LA-like: one 576×576×88 int16 volume;
- BraTS-like: four 240×240×155 int16 modalities + a uint8 label (one case = 5 files).
Rows record the compression ratio. Both readers return the same array (checked once);
both really read the voxels (nibabel's lazy memory map of a ``.nii`` is copied out, as
ours is).
A CPU benchmark: on a CUDA machine it records nothing unless ``--force``.

    python -m qgfast.bench.bench_loader [--quick] [--out benchmarks/results/loader.jsonl]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from qgfast.bench.harness import QUANTILES, Recorder, Timing
from qgfast.bench.loader_providers import IMAGE_PROVIDERS, PROVIDERS
from qgfast.data.nifti import read_nifti, write_nifti
from qgfast.data.synthetic import _case_generator, organ_case

CASES = {"LA": [(576, 576, 88)], "BraTS": [(240, 240, 155)] * 4}
QUICK = {"LA": [(64, 64, 24)], "BraTS": [(32, 32, 20)] * 4}


def write_case(folder: Path, name: str, shapes, ext: str, level: int) -> list[Path]:
    paths = []
    labels = None
    for i, shape in enumerate(shapes):
        volume, labels = organ_case(shape, _case_generator(7, i))
        path = folder / f"{name}_{i}{ext}"
        paths.append(write_nifti(path, volume, np.diag([1.0, 1.0, 1.0, 1.0]), compresslevel=level))
    if len(shapes) > 1:  # BraTS-style cases carry a label file too
        paths.append(write_nifti(folder / f"{name}_seg{ext}", labels, compresslevel=level))
    return paths


def bench_ssl(rec: Recorder, quick: bool) -> None:
    shape, patch, n_cases, n_batches = (
        ((64, 64, 40), (32, 32, 24), 3, 2) if quick else ((576, 576, 88), (112, 112, 80), 4, 12)
    )
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        for group in ("labelled", "unlabelled"):
            (data / group).mkdir()
            for i in range(n_cases):
                volume, labels = organ_case(shape, _case_generator(11 + (group == "unlabelled"), i))
                write_nifti(data / group / f"c{i}_img.nii.gz", volume, compresslevel=6)
                if group == "labelled":
                    write_nifti(data / group / f"c{i}_seg.nii.gz", labels, compresslevel=6)
        label = f"LA 2+2×{'x'.join(map(str, patch))} from {'x'.join(map(str, shape))}"
        _run_providers(
            rec, "ssl-batch", PROVIDERS, data, "x".join(map(str, patch)), n_batches, label
        )


def bench_images(rec: Recorder, quick: bool) -> None:
    """2D: batches of 32 images 512² JPEG (quality 90) + PNG masks → 224², flips, jitter,
    ImageNet normalisation; qgfast ImageStream (2 threads, no cache: every image decoded
    every time) vs PIL in a DataLoader with 2 workers."""
    from PIL import Image

    from qgfast.data.synthetic import lesion_case

    side, out, batch, n_images, n_batches = (64, 32, 8, 16, 3) if quick else (512, 224, 32, 512, 32)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        (data / "images").mkdir()
        (data / "masks").mkdir()
        unique = 8  # procedural 512² lesions are slow to draw: 8 drawn, each saved n/8 times
        for i in range(n_images):
            if i < unique:
                rgb, mask = lesion_case(side, _case_generator(3, i))
                Image.fromarray(rgb).save(data / "images" / f"{i:04d}.jpg", quality=90)
                Image.fromarray(mask * 255).save(data / "masks" / f"{i:04d}.png")
            else:
                for sub, ext in (("images", "jpg"), ("masks", "png")):
                    src = data / sub / f"{i % unique:04d}.{ext}"
                    (data / sub / f"{i:04d}.{ext}").write_bytes(src.read_bytes())
        label = f"{batch}×{side}² JPEG → {out}²"
        spec = f"{out}x{out}x{batch}"
        rounds = 1 if quick else 3
        _run_providers(rec, "image-batch", IMAGE_PROVIDERS, data, spec, n_batches, label, rounds)
        # the same with an SSL4MIS-style rotation by U(−20°, 20°) per image
        label, spec = f"{label} + rotation ±20°", f"{spec}x20"
        _run_providers(rec, "image-batch", IMAGE_PROVIDERS, data, spec, n_batches, label, rounds)


def _run_providers(rec, op, providers, data, spec, n_batches, label, rounds=1) -> None:
    """Each provider in its own process; with `rounds` > 1 the providers take turns and a
    row pools its rounds' batch times (rate = batches / their total time; memory: the
    largest round's)."""
    runs: dict[str, list[dict]] = {p: [] for p in providers}
    for _ in range(rounds):
        for provider in providers:
            cmd = [
                sys.executable,
                "-m",
                "qgfast.bench.loader_providers",
                provider,
                str(data),
                spec,
                str(n_batches),
            ]
            done = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                print(f"{op} {provider}: skipped ({done.stderr.strip().splitlines()[-1:]})")
                continue
            runs[provider].append(json.loads(done.stdout.strip().splitlines()[-1]))
    for provider, outs in runs.items():
        if not outs:
            continue
        times = [t for out in outs for t in out["times_ms"]]
        q = np.quantile(times, QUANTILES)
        worst = max(outs, key=lambda out: out["peak_mb"])
        rate = len(times) / (sum(times) / 1e3)
        rec.record(
            op,
            provider,
            Timing(float(q[0]), float(q[1]), float(q[2]), worst["peak_mb"]),
            shape=label,
            dtype="float32",
            mode="load",
            extra={
                "batches_per_s": round(rate, 2),
                **({"rounds": len(outs)} if rounds > 1 else {}),
                **{k: round(worst[k], 1) for k in ("rss_self_mb", "rss_worker_max_mb")},
            },
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/loader.jsonl"))
    parser.add_argument("--quick", action="store_true", help="tiny volumes (smoke test)")
    parser.add_argument("--force", action="store_true", help="run even on a CUDA machine")
    parser.add_argument("--decode-only", action="store_true", help="skip the SSL batch rows")
    parser.add_argument("--images-only", action="store_true", help="only the 2D batch rows")
    parser.add_argument("--ssl-only", action="store_true", help="only the 3D SSL batch rows")
    args = parser.parse_args(argv)
    if torch.cuda.is_available() and not args.force:
        print("bench_loader: CPU benchmark, skipped on a CUDA machine (--force runs it)")
        return 0
    try:
        import nibabel as nib
    except ImportError:
        nib = None
    torch.set_num_threads(1)  # per-core numbers: both readers decode on one thread
    rec = Recorder(args.out, torch.device("cpu"))
    if args.images_only:
        bench_images(rec, args.quick)
        return 0
    if args.ssl_only:
        bench_ssl(rec, args.quick)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        for name, shapes in (QUICK if args.quick else CASES).items():
            for ext, level in ((".nii.gz", 1), (".nii.gz", 6), (".nii", 0)):
                paths = write_case(Path(tmp), f"{name}{level}", shapes, ext, level)
                raw = sum(int(np.prod(read_nifti(p).shape)) * 2 for p in paths[: len(shapes)])
                raw += sum(int(np.prod(read_nifti(p).shape)) for p in paths[len(shapes) :])
                ratio = raw / sum(os.path.getsize(p) for p in paths)
                label = f"{name} {'+'.join('x'.join(map(str, s)) for s in shapes[:1])}"
                label += f"×{len(paths)} {ext} gz{level}" if level else f"×{len(paths)} {ext}"
                providers = {"qgfast": lambda paths=paths: [read_nifti(p).data for p in paths]}
                if nib is not None:
                    # np.array: an uncompressed file must really be read, not just mapped
                    providers["nibabel"] = lambda paths=paths: [
                        np.array(nib.load(p).dataobj) for p in paths
                    ]
                    for p in paths:
                        ours, theirs = read_nifti(p).data, np.asanyarray(nib.load(p).dataobj)
                        assert np.array_equal(ours, theirs), p
                for provider, fn in providers.items():
                    rec.bench(
                        "nifti-decode",
                        provider,
                        fn,
                        shape=label,
                        dtype="int16",
                        mode="decode",
                        bytes_moved=raw,
                        extra={"compression_ratio": round(ratio, 2)},
                        measure_memory=False,
                        min_run_time=0.05 if args.quick else 1.0,
                    )
    if not args.decode_only:
        bench_ssl(rec, args.quick)
        bench_images(rec, args.quick)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
