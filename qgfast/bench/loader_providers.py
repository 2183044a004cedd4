"""SSL batch providers for ``bench_loader``: the same 2 labelled + 2 unlabelled patch
batches (z-score, random crop, flips on 3 axes, intensity scale/shift p = 0.15, Gaussian
noise p = 0.15) built by qgfast's VolumeStream and by what users run today.

Run one provider per process (``python -m qgfast.bench.loader_providers NAME DATA PATCH N``)
so its memory is measured alone; it prints JSON: per-batch times, batches/s over the whole
run (p50 alone would hide a queue's periodic refills), peak RSS growth over the
interpreter + torch baseline, and the largest DataLoader worker's private memory.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

from qgfast.data.intensity import IMAGENET_MEAN, IMAGENET_STD

# qgfast-image decodes JPEGs with libjpeg-turbo (skipped where it does not load),
# qgfast-image-zune with the built-in zune-jpeg
IMAGE_PROVIDERS = ("qgfast-image", "qgfast-image-zune", "pil-dataloader-2w")
PROVIDERS = (
    "qgfast",
    "qgfast-nii",
    "qgfast-cache",
    "numpy-loop",
    "dataloader-2w",
    "monai-2w",
    "monai-cache-2w",
    "torchio-queue-2w",
)


def _cases(data: Path):
    labelled = sorted((data / "labelled").glob("*_img.nii.gz"))
    unlabelled = sorted((data / "unlabelled").glob("*_img.nii.gz"))
    label_of = {p: p.with_name(p.name.replace("_img", "_seg")) for p in labelled}
    return labelled, unlabelled, label_of


def _augment(img, lab, patch, rng):
    """The per-sample work every baseline does (qgfast does the same in Rust)."""
    img = (img - img.mean()) / max(float(img.std()), 1e-6)
    o = [rng.integers(0, max(1, s - p + 1)) for s, p in zip(img.shape, patch, strict=True)]
    sl = tuple(slice(a, a + p) for a, p in zip(o, patch, strict=True))
    img, lab = img[sl], None if lab is None else lab[sl]
    for axis in range(3):
        if rng.random() < 0.5:
            img = np.flip(img, axis)
            lab = None if lab is None else np.flip(lab, axis)
    if rng.random() < 0.15:
        img = img * rng.uniform(0.9, 1.1)
    if rng.random() < 0.15:
        img = img + rng.uniform(-0.1, 0.1)
    if rng.random() < 0.15:
        img = img + rng.normal(0, 0.1, img.shape).astype(np.float32)
    return np.ascontiguousarray(img, np.float32), None if lab is None else np.ascontiguousarray(lab)


class NibabelSSL(torch.utils.data.Dataset):
    def __init__(self, images, labels, patch):
        self.images, self.labels, self.patch = images, labels, patch

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        import nibabel as nib

        rng = np.random.default_rng()
        img = np.asanyarray(nib.load(self.images[i]).dataobj).astype(np.float32)
        lab = None
        if self.labels[i] is not None:
            lab = np.asanyarray(nib.load(self.labels[i]).dataobj).astype(np.uint8)
        img, lab = _augment(img, lab, self.patch, rng)
        lab = np.zeros(img.shape, np.uint8) if lab is None else lab
        return {"image": img[None], "label": lab[None]}


def _cycle(epochs):
    """Batches forever from a re-iterable (a stream or loader yields one epoch per pass)."""
    while True:
        yield from epochs


def _zero_label(d):
    if "label" not in d:
        d["label"] = torch.zeros(d["image"].shape, dtype=torch.uint8)
    return d


class TwoStream(torch.utils.data.Sampler):
    """SSL4MIS's two-stream batches: 2 labelled + 2 unlabelled indices, forever."""

    def __init__(self, n_labelled, n_total):
        self.n_labelled, self.n_total = n_labelled, n_total

    def __iter__(self):
        rng = np.random.default_rng(0)
        while True:
            lab = rng.choice(self.n_labelled, 2, replace=False)
            unl = self.n_labelled + rng.choice(self.n_total - self.n_labelled, 2, replace=False)
            yield [int(i) for i in (*lab, *unl)]


class PilImages(torch.utils.data.Dataset):
    """What 2D pipelines do today: PIL decode + resize (bilinear, anti-aliased), optionally
    a rotation by U(−rotation, rotation)° (PIL's ``rotate``: bilinear, mask nearest, zero
    fill), random flips, brightness/contrast jitter and ImageNet normalisation in
    NumPy/torch."""

    def __init__(self, images, masks, size, rotation=0):
        self.images, self.masks, self.size, self.rotation = images, masks, size, rotation

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        from PIL import Image, ImageEnhance

        rng = np.random.default_rng()
        img = Image.open(self.images[i]).convert("RGB").resize(self.size[::-1], Image.BILINEAR)
        mask = Image.open(self.masks[i]).resize(self.size[::-1], Image.NEAREST)
        if self.rotation:
            angle = rng.uniform(-self.rotation, self.rotation)
            img = img.rotate(angle, resample=Image.BILINEAR)
            mask = mask.rotate(angle, resample=Image.NEAREST)
        if rng.random() < 0.8:
            img = ImageEnhance.Brightness(img).enhance(rng.uniform(0.8, 1.2))
            img = ImageEnhance.Contrast(img).enhance(rng.uniform(0.8, 1.2))
        x = torch.from_numpy(np.asarray(img, np.float32) / 255).permute(2, 0, 1)
        y = torch.from_numpy(np.asarray(mask, np.uint8).copy())[None]
        for axis in (1, 2):
            if rng.random() < 0.5:
                x, y = x.flip(axis), y.flip(axis)
        mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
        return {"image": (x - mean) / std, "label": y}


def make_images(name: str, data: Path, size, batch: int, rotation: int = 0):
    images = sorted((data / "images").glob("*.jpg"))
    masks = [data / "masks" / p.with_suffix(".png").name for p in images]
    if name.startswith("qgfast-image"):
        from qgfast.data import ImageStream

        cases = [{"images": [p], "label": m} for p, m in zip(images, masks, strict=True)]
        stream = ImageStream(
            cases,
            size,
            labeled_batch_size=batch,
            rot90=False,
            rotation=(-rotation, rotation) if rotation else None,
            gain=None,
            cache_bytes=0,
            threads=2,
            jpeg_decoder="zune" if name == "qgfast-image-zune" else "libjpeg-turbo",
        )

        return _cycle(stream)
    if name == "pil-dataloader-2w":
        loader = torch.utils.data.DataLoader(
            PilImages(images, masks, size, rotation),
            batch_size=batch,
            shuffle=True,
            num_workers=2,
            persistent_workers=True,
            drop_last=True,
        )
        return _cycle(loader)
    raise ValueError(f"unknown image provider {name!r}")


def make(name: str, data: Path, patch):
    labelled, unlabelled, label_of = _cases(data)
    images = labelled + unlabelled
    labels = [label_of[p] for p in labelled] + [None] * len(unlabelled)
    if name.startswith("qgfast"):
        from qgfast.data import VolumeStream

        cache = name == "qgfast-cache"
        cases = [{"images": [p], "label": lab} for p, lab in zip(images, labels, strict=True)]
        if name == "qgfast-nii":  # converted once, before any timing (one-off cost)
            from qgfast.data import convert

            cases = convert(cases, data / "uncompressed")
        stream = VolumeStream(
            cases,
            patch,
            labeled_batch_size=2,
            unlabeled_batch_size=2,
            samples_per_volume=4 if cache else 1,
            cache_bytes=(4 << 30) if cache else 0,
            foreground_prob=0.0,
            rot90_plane=None,
            gamma=None,
            threads=2,
            prefetch=4,
        )

        return _cycle(stream)
    if name == "numpy-loop":
        ds = NibabelSSL(images, labels, patch)
        sampler = iter(TwoStream(len(labelled), len(images)))

        def loop():
            while True:
                items = [ds[i] for i in next(sampler)]
                yield {k: torch.from_numpy(np.stack([it[k] for it in items])) for k in items[0]}

        return loop()
    if name == "dataloader-2w":
        ds = NibabelSSL(images, labels, patch)
        return iter(
            torch.utils.data.DataLoader(
                ds, batch_sampler=TwoStream(len(labelled), len(images)), num_workers=2
            )
        )
    if name.startswith("monai"):
        from monai import transforms as T
        from monai.data import CacheDataset, Dataset

        keys = ["image", "label"]
        fixed = [
            T.LoadImaged(keys, allow_missing_keys=True),
            T.EnsureChannelFirstd(keys, allow_missing_keys=True),
            T.NormalizeIntensityd("image"),
        ]
        rand = [
            T.RandSpatialCropd(keys, patch, random_size=False, allow_missing_keys=True),
            *[T.RandFlipd(keys, 0.5, a, allow_missing_keys=True) for a in range(3)],
            T.RandScaleIntensityd("image", 0.1, prob=0.15),
            T.RandShiftIntensityd("image", 0.1, prob=0.15),
            T.RandGaussianNoised("image", prob=0.15, std=0.1),
            _zero_label,  # unlabelled cases: a zero label so the batch collates
        ]
        items = [
            {"image": str(p)} | ({"label": str(lab)} if lab else {})
            for p, lab in zip(images, labels, strict=True)
        ]
        transform = T.Compose(fixed + rand)
        if name == "monai-cache-2w":
            ds = CacheDataset(items, transform, cache_rate=1.0, num_workers=2)
        else:
            ds = Dataset(items, transform)
        return iter(
            torch.utils.data.DataLoader(
                ds, batch_sampler=TwoStream(len(labelled), len(images)), num_workers=2
            )
        )
    if name == "torchio-queue-2w":
        import torchio as tio

        subjects = [tio.Subject(image=tio.ScalarImage(p)) for p in images]
        transform = tio.Compose(
            [
                tio.ZNormalization(),
                tio.RandomFlip(axes=(0, 1, 2)),
                tio.RandomNoise(std=(0, 0.1), p=0.15),
            ]
        )
        queue = tio.Queue(
            tio.SubjectsDataset(subjects, transform=transform),
            max_length=16,
            samples_per_volume=4,
            sampler=tio.UniformSampler(patch),
            num_workers=2,
        )

        return _cycle(torch.utils.data.DataLoader(queue, batch_size=4, num_workers=0))
    raise ValueError(f"unknown provider {name!r}")


WARM_BATCHES = 8  # one epoch of the cached qgfast stream (4 cases × 4 samples / 2)


def _status_mb(key: str) -> float:
    """VmRSS / VmHWM of this process image (unlike ru_maxrss, not inherited through exec
    from the parent that launched us)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def _rss_mb() -> float:
    return _status_mb("VmRSS")


def _children_private_mb() -> float:
    """The most private memory (Private_Clean + Private_Dirty of smaps_rollup) among this
    process's live children, the DataLoader workers: what a worker adds on top of the pages
    it shares with the parent. (A forked child's own RSS does not start at the parent's —
    file-backed pages are faulted in lazily — so "child peak RSS − parent RSS" undercounts.)"""
    worst = 0.0
    for children in Path("/proc/self/task").glob("*/children"):
        for pid in children.read_text().split():
            try:
                rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
            except OSError:  # exited meanwhile
                continue
            kb = sum(
                int(line.split()[1])
                for line in rollup.splitlines()
                if line.startswith(("Private_Clean:", "Private_Dirty:"))
            )
            worst = max(worst, kb / 1024)
    return worst


def main() -> None:
    name, data, patch, n = sys.argv[1], Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    patch = tuple(int(p) for p in patch.split("x"))
    torch.set_num_threads(1)
    base = _rss_mb()  # interpreter + torch: not the loader's memory
    if name in IMAGE_PROVIDERS:
        # "HxWxB[xR]" for images: R = rotation range in degrees (± R)
        batches = make_images(name, data, patch[:2], patch[2], *patch[3:])
    else:
        batches = make(name, data, patch)
    # workers' memory sampled every 0.25 s through the warm-up (decode transients included)
    # and once after the timed batches: reading smaps_rollup costs ms of kernel time, kept
    # out of the timed loop
    peaks, warm = [0.0], threading.Event()

    def sample() -> None:
        while not warm.wait(0.25):
            peaks.append(_children_private_mb())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    for _ in range(WARM_BATCHES):  # workers started, caches (qgfast, MONAI, TorchIO) filled
        next(batches)
    warm.set()
    sampler.join()
    workers_mb = max(peaks)
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        next(batches)
        times.append((time.perf_counter() - t0) * 1e3)
    workers_mb = max(workers_mb, _children_private_mb())
    del batches
    import gc

    gc.collect()
    own = _status_mb("VmHWM")
    workers = 2 if name.endswith("2w") else 0
    grow_self, grow_child = own - base, workers_mb  # no workers: no children, 0
    result = {
        "times_ms": times,
        "batches_per_s": n / (sum(times) / 1e3),
        "rss_self_mb": grow_self,
        "rss_worker_max_mb": grow_child,
        "peak_mb": grow_self + workers * grow_child,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
