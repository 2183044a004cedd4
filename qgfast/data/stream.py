"""``VolumeStream``: SSL batches of 3D patches from NIfTI cases, built in Rust threads.

Each epoch: the labelled (and unlabelled) cases are permuted from (seed, epoch), sharded by
``(rank, world_size)`` × DataLoader worker, each case repeated ``samples_per_volume`` times
in a row (one decode serves several crops: consecutive slots of a batch share it, and
decoded volumes stay in a byte-budget cache across epochs — kept as stored, in the file's
voxel type, with each channel's normalisation computed once from the whole volume and
applied to the voxels a crop reads), and every batch slot draws its crop
(foreground-oversampled with ``foreground_prob``, zero-padded where the volume is smaller
than the patch) and its augmentation (flips, rot90 in a square plane, rotation by any
angle, intensity scale/shift, nnU-Net gamma, Gaussian noise) from a counter-based RNG
keyed by (seed, epoch, slot). Threads release the GIL; prefetch is bounded; batches
arrive in a fixed order whatever the thread count.

Batches: ``{"image": [B, C, *patch] float32, "label": [B, 1, *patch] uint8, "case",
"origin", ...}`` for a labelled-only stream; with ``unlabeled_batch_size`` > 0,
``{"labeled": {...}, "unlabeled": {...}}`` (the unlabelled part has no "label"). Tensors are
``torch.from_numpy`` views of the Rust buffers (no copy); ``pin_memory=True`` pins them.
A dropped batch's buffers go back to the stream and are reused for a later batch (a batch
that is kept, or any tensor viewing it, keeps its memory). Likewise a decoded volume the
cache does not keep gives its buffers (voxels, compressed file bytes; those of 4 MiB and
more) to the stream's next decodes instead of being unmapped: no more than the stream had
in use at once, held until the stream is freed (``stats()["reused_volume_buffers"]``).
Uncompressed copies written by ``convert`` carry statistics files: such a case is opened
without reading its voxels and each sample reads only the block its crop covers
(``stats()["block_reads"]``), with the same batches as a whole read.
Every batch also carries what was drawn for each sample — "case", "origin" [B, 3], "flip"
[B, 3], "rot90", "angle", "scale", "shift", "gamma", "noise", "brightness", "contrast",
"gain" [B, 3] — so any sample can be reproduced.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import IterableDataset, get_worker_info

from qgfast.data.errors import DataError, native_data_errors
from qgfast.data.folders import EXTENSIONS_2D, Case, case_paths
from qgfast.data.intensity import imagenet_stats

log = logging.getLogger(__name__)


def auto_jpeg_decoder() -> tuple[str, str]:
    """The JPEG decoder ``jpeg_decoder="auto"`` takes in this process and why: libjpeg-turbo
    where the system's libturbojpeg loads (PIL's decoder: pixels equal PIL's, and faster),
    zune-jpeg (built in; within a few levels of PIL) otherwise."""
    from qgfast import _native

    detail = _native.build_info("jpeg_decoder")
    return ("libjpeg-turbo" if detail.startswith("libjpeg-turbo") else "zune"), detail


def _stream_config(**options: Any):
    """The native ``StreamConfig`` of ``options`` (every value is checked there, once; a bad
    one raises ``ValueError`` naming the option). Lists become tuples first: a range read
    from a JSON or YAML config arrives as a list."""
    from qgfast import _native

    return _native.StreamConfig(
        **{k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}
    )


# The 2D-only options (colour jitter, post-normalisation, JPEG decoder), off for a 3D stream.
_2D_ONLY_OFF = {
    "brightness": None,
    "contrast": None,
    "gain": None,
    "jitter_prob": 0.0,
    "post_norm": "none",
    "post_mean": [],
    "post_std": [],
    "jpeg_decoder": "auto",
}


# The options both streams take under the config's own names, passed on as given.
_AS_GIVEN = (
    "labeled_batch_size",
    "unlabeled_batch_size",
    "samples_per_volume",
    "cache_bytes",
    "rotation",
    "rotation_prob",
    "noise_std",
    "intensity_prob",
    "seed",
    "rank",
    "world_size",
    "threads",
    "prefetch",
    "on_error",
    "max_bytes",
)


def _as_given(arguments: dict[str, Any]) -> dict[str, Any]:
    """The ``_AS_GIVEN`` options among a stream constructor's arguments (its ``locals()``)."""
    return {k: arguments[k] for k in _AS_GIVEN}


class _Batches:
    """What both streams share: the cases, the labelled/unlabelled split, the native core
    (one per process and shard), the epoch counter and the iteration. The streams own one
    each and differ only in the config they build and in the shape of their output."""

    def __init__(
        self,
        cases: Sequence[Case | dict[str, Any]],
        config,
        labeled: Sequence[int] | None,
        unlabeled: Sequence[int] | None,
        *,
        name: str,
        pin_memory: bool,
    ) -> None:
        self.name = name
        self.images: list[list[str]] = []
        self.labels: list[str | None] = []
        for case in cases:
            images, label = case_paths(case)
            self.images.append([str(p) for p in images])
            self.labels.append(None if label is None else str(label))
        if not self.images:
            raise ValueError(f"{name} needs at least one case")
        self.config = config
        options = config.fields()
        self.labeled_batch_size = options["labeled_batch_size"]
        self.unlabeled_batch_size = options["unlabeled_batch_size"]
        self.samples_per_volume = options["samples_per_volume"]
        self.rank, self.world_size = options["rank"], options["world_size"]
        with_label = [i for i, lab in enumerate(self.labels) if lab is not None]
        self.labeled = list(with_label if labeled is None else labeled)
        self.unlabeled = list(
            [i for i, lab in enumerate(self.labels) if lab is None]
            if unlabeled is None
            else unlabeled
        )
        missing = [i for i in self.labeled if self.labels[i] is None]
        if missing:
            raise DataError(self.images[missing[0]][0], "labelled case without a label file")
        if self.labeled_batch_size and not self.labeled:
            raise ValueError("labeled_batch_size > 0 but no labelled case")
        if self.unlabeled_batch_size and not self.unlabeled:
            raise ValueError("unlabeled_batch_size > 0 but no unlabelled case")
        self.two_stream = self.labeled_batch_size > 0 and self.unlabeled_batch_size > 0
        self.pin_memory = pin_memory
        self.epoch = 0
        self._core = None
        self._core_key = None
        self._logged: set[int] = set()

    def __getstate__(self) -> dict[str, Any]:
        # DataLoader workers started by spawn get the stream by pickle: they build their
        # own core (it holds threads' state and caches that do not cross processes)
        state = dict(self.__dict__)
        state["_core"] = state["_core_key"] = None
        return state

    def shard(self) -> tuple[int, int]:
        """(shard, shards) of this process: rank × DataLoader worker."""
        info = get_worker_info()
        workers, worker = (1, 0) if info is None else (info.num_workers, info.id)
        return self.rank * workers + worker, self.world_size * workers

    def core(self):
        """One core per process and shard (created lazily: after a DataLoader fork, so no
        thread crosses a fork)."""
        from qgfast import _native

        key = self.shard()
        if self._core is None or self._core_key != key:
            with native_data_errors():
                self._core = _native.VolumeStreamCore(
                    self.images, self.labels, self.labeled, self.unlabeled, self.config, *key
                )
            self._core_key = key
        return self._core

    def stats(self) -> dict[str, Any]:
        return {} if self._core is None else self._core.stats()

    def _tensors(self, part: dict[str, Any]) -> dict[str, torch.Tensor]:
        out = {k: torch.from_numpy(v) for k, v in part.items()}
        if self.pin_memory and torch.cuda.is_available():
            out["image"] = out["image"].pin_memory()
            if "label" in out:
                out["label"] = out["label"].pin_memory()
        return out

    def iterate(self, output) -> Iterator[dict[str, Any]]:
        """The next epoch's batches, each part passed through ``output``."""
        core = self.core()
        try:
            with native_data_errors():
                epoch = core.start(self.epoch)
        except DataError:  # a ValueError too: pass it through unwrapped
            raise
        except ValueError as err:
            raise ValueError(f"{self.name}: {err}") from None
        self.epoch += 1
        try:
            while True:
                try:
                    with native_data_errors():
                        batch = next(epoch)
                except StopIteration:
                    return
                self._log_skips(core)
                parts = {k: output(self._tensors(v)) for k, v in batch.items()}
                yield parts if self.two_stream else next(iter(parts.values()))
        finally:
            epoch.close()

    def _log_skips(self, core) -> None:
        for case, reason in core.stats()["skipped"]:
            if case not in self._logged:
                self._logged.add(case)
                log.warning("%s skipped case %d: %s", self.name, case, reason)

    def __len__(self) -> int:
        """Batches per epoch on this shard (labelled stream, or unlabelled when alone)."""
        shard, shards = self.shard()
        cases = self.labeled if self.labeled_batch_size else self.unlabeled
        size = self.labeled_batch_size or self.unlabeled_batch_size
        mine = len(range(shard, len(cases), shards))
        return mine * self.samples_per_volume // size


class _Stream(IterableDataset):
    """The dataset face both streams share, over their ``_Batches``."""

    _batches: _Batches

    @property
    def config(self):
        """The native ``StreamConfig`` (``config.fields()``: the options it was built from)."""
        return self._batches.config

    @property
    def labeled(self) -> list[int]:
        return self._batches.labeled

    @property
    def unlabeled(self) -> list[int]:
        return self._batches.unlabeled

    @property
    def two_stream(self) -> bool:
        return self._batches.two_stream

    @property
    def epoch(self) -> int:
        """The next epoch to run; advanced by every full pass (``set_epoch`` overrides)."""
        return self._batches.epoch

    def set_epoch(self, epoch: int) -> None:
        self._batches.epoch = int(epoch)

    def stats(self) -> dict[str, Any]:
        """Cache hits/misses/bytes, samples cropped from a block read for them
        (``block_reads``: copies opened by their statistics files), the skipped cases (this
        process's shard) and how many large volume buffers were reused for a later decode
        instead of mapped afresh (``reused_volume_buffers``)."""
        return self._batches.stats()

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self._batches.iterate(self._output)

    def _output(self, part: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return part

    def __len__(self) -> int:
        return len(self._batches)


class VolumeStream(_Stream):
    """Iterable of patch batches; see the module docstring.

    cases: ``Case`` objects (``find_cases``) or dicts {"images": [paths], "label": path|None}.
    labeled / unlabeled: which cases feed each stream (default: cases with a label are
        labelled, the rest unlabelled).
    normalisation: one of ``qgfast.data.intensity.VOLUME_NORMALISATIONS``: "zscore" (all
        voxels), "zscore-nonzero" (MR), "percentile" (clip to ``clip`` percentiles, then
        z-score), "window" (clip to ``window``, map to [0, 1]), "none".
    on_error: "raise" (a bad case raises ``DataError``) or "skip" (the case is logged once,
        counted in ``stats()["skipped"]`` and its slots move to the next case).
    rotation: (low, high) degrees: with probability ``rotation_prob`` a sample is rotated by
        an angle drawn uniformly from the range in ``rotation_plane`` about the patch
        centre, sampled from the volume itself (the corners show the volume around the
        patch, zero only outside it): output voxel o, at offsets (u, v) from the patch
        centre in the plane (a, b), reads the volume at origin + (patch − 1)/2 +
        (u·cos θ − v·sin θ, u·sin θ + v·cos θ); images bilinear, labels nearest. Flips and
        rot90 apply after it: sample = rot90(flip(rotate(volume))). The angle is in the
        batch's "angle" (0 = not rotated).
    Every option is checked once, by the native ``StreamConfig``; a bad one raises
    ``ValueError`` naming it.
    """

    def __init__(
        self,
        cases: Sequence[Case | dict[str, Any]],
        patch_size: Sequence[int],
        *,
        labeled_batch_size: int = 2,
        unlabeled_batch_size: int = 0,
        labeled: Sequence[int] | None = None,
        unlabeled: Sequence[int] | None = None,
        samples_per_volume: int = 4,
        foreground_prob: float = 0.33,
        cache_bytes: int = 2 << 30,
        flip_axes: Sequence[int] = (0, 1, 2),
        rot90_plane: tuple[int, int] | None = (0, 1),
        rotation: tuple[float, float] | None = None,
        rotation_prob: float = 1.0,
        rotation_plane: tuple[int, int] = (0, 1),
        scale: tuple[float, float] | None = (0.9, 1.1),
        shift: tuple[float, float] | None = (-0.1, 0.1),
        gamma: tuple[float, float] | None = (0.7, 1.5),
        noise_std: float = 0.1,
        intensity_prob: float = 0.15,
        normalisation: str = "zscore",
        clip: tuple[float, float] = (0.5, 99.5),
        window: tuple[float, float] = (-1000.0, 1000.0),
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        threads: int = 2,
        prefetch: int = 4,
        pin_memory: bool = False,
        on_error: str = "raise",
        max_bytes: int = 16 << 30,
    ) -> None:
        given = _as_given(locals())
        super().__init__()
        config = _stream_config(
            **given,
            patch_size=list(patch_size),
            foreground_prob=foreground_prob,
            flip_axes=list(flip_axes),
            rot90_plane=rot90_plane,
            rotation_plane=rotation_plane,
            scale=scale,
            shift=shift,
            gamma=gamma,
            normalisation=normalisation,
            clip=clip,
            window=window,
            **_2D_ONLY_OFF,
        )
        self._batches = _Batches(
            cases, config, labeled, unlabeled, name="VolumeStream", pin_memory=pin_memory
        )


class ImageStream(_Stream):
    """The 2D counterpart: folders of PNG/JPEG/BMP/TIFF images with PNG masks.

    Images decode in Rust threads (grey → 1 channel, others → RGB, values in [0, 1]),
    resize to ``size`` with PIL's anti-aliased bilinear filter (masks: nearest), are cached
    resized, and per sample get flips, rot90 (square sizes), rotation by an angle drawn
    from ``rotation`` (degrees, with ``rotation_prob``; e.g. SSL4MIS's (-20, 20): about the
    image centre, bilinear / nearest for the mask, zero outside the image), colour jitter
    (torchvision order: brightness, contrast, per-channel gain, each clamped to [0, 1]) and
    then the normalisation, one of ``qgfast.data.intensity.IMAGE_NORMALISATIONS``:
    "imagenet" (mean/std per channel, ``imagenet_stats``), "per-image" (z-score per channel)
    or "none". Batches: "image" [B, C, H, W] float32, "label" [B, 1, H, W] uint8, plus the
    draws ("flip" [B, 3]: axis 0 = vertical, 1 = horizontal; "rot90"; "angle"; "brightness",
    "contrast", "gain" [B, 3]; "scale"/"shift"/"gamma" stay at identity). Same two-stream batching,
    seeding, sharding, caching and error handling as ``VolumeStream``; ``noise_std`` adds
    Gaussian noise with probability ``intensity_prob`` as there.
    """

    def __init__(
        self,
        cases: Sequence[Case | dict[str, Any]],
        size: int | Sequence[int] = 224,
        *,
        labeled_batch_size: int = 2,
        unlabeled_batch_size: int = 0,
        labeled: Sequence[int] | None = None,
        unlabeled: Sequence[int] | None = None,
        samples_per_volume: int = 1,
        hflip: bool = True,
        vflip: bool = True,
        rot90: bool = True,
        rotation: tuple[float, float] | None = None,
        rotation_prob: float = 1.0,
        brightness: tuple[float, float] | None = (0.8, 1.2),
        contrast: tuple[float, float] | None = (0.8, 1.2),
        gain: tuple[float, float] | None = (0.9, 1.1),
        jitter_prob: float = 0.8,
        noise_std: float = 0.0,
        intensity_prob: float = 0.15,
        normalisation: str = "imagenet",
        cache_bytes: int = 1 << 30,
        jpeg_decoder: str = "auto",
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        threads: int = 2,
        prefetch: int = 4,
        pin_memory: bool = False,
        on_error: str = "raise",
        max_bytes: int = 16 << 30,
    ) -> None:
        given = _as_given(locals())
        super().__init__()
        h, w = (size, size) if isinstance(size, int) else tuple(size)
        if min(h, w) < 1:
            raise ValueError(f"size must be positive, got {size}")
        post = {"imagenet": "mean-std", "per-image": "per-image", "none": "none"}
        if normalisation not in post:
            raise ValueError(f"normalisation must be one of {tuple(post)}, got {normalisation!r}")
        for case in cases:
            images = case.images if isinstance(case, Case) else case["images"]
            first = images if isinstance(images, (str, Path)) else images[0]
            if Path(first).suffix.lower() not in EXTENSIONS_2D:
                raise ValueError(f"ImageStream reads 2D image files, got {first}")
        mean, std = imagenet_stats(3) if normalisation == "imagenet" else ((), ())
        config = _stream_config(
            **given,
            patch_size=[h, w, 1],
            foreground_prob=0.0,
            flip_axes=[a for a, on in ((0, vflip), (1, hflip)) if on],
            rot90_plane=(0, 1) if rot90 and h == w else None,
            rotation_plane=(0, 1),
            scale=None,
            shift=None,
            gamma=None,
            normalisation="none",
            clip=(0.0, 100.0),
            window=(0.0, 1.0),
            brightness=brightness,
            contrast=contrast,
            gain=gain,
            jitter_prob=jitter_prob,
            post_norm=post[normalisation],
            post_mean=list(mean),
            post_std=list(std),
            jpeg_decoder=jpeg_decoder,
        )
        self._batches = _Batches(
            cases, config, labeled, unlabeled, name="ImageStream", pin_memory=pin_memory
        )

    def _output(self, part: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        part["image"] = part["image"][..., 0]  # [B, C, H, W, 1] → [B, C, H, W], a view
        if "label" in part:
            part["label"] = part["label"][..., 0]
        return part
