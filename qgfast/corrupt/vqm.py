"""The variable-quality-mask (VQM) generator of docs/method.md, phase 1.

For every ground-truth mask and each of its K copies, draw a category (identity, single,
chained, cross-image, heavy, catastrophic, blob) and the op(s) inside it, apply them, and
score the result against the ground truth with ``dice_scores`` (hard Dice; 1 when both are
empty) — all on the masks' device. Optionally, with probability ``p_weak`` a copy is instead
the thresholded prediction of a randomly chosen weak segmentation model on the image.

Determinism: every draw is keyed by (seed, b·K + k), so copy k of sample b is the same
whatever the batch size or the other samples (cross-image copies excepted: they depend on
the batch by definition), and draws the same ops on every device. Ops are applied
to groups of copies that drew the same op, under ``rng.sample_keys`` so each copy keeps its
own key.

Label maps (``num_classes``): each copy corrupts one foreground class (drawn per copy) as a
binary mask and puts it back; quality targets are per class.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
import torch

from qgfast.corrupt import rng
from qgfast.corrupt._checks import check_masks
from qgfast.corrupt.pool import (
    BLOB_OPS,
    CATEGORIES,
    Op,
    blob_category_pool,
    catastrophic_pool,
    heavy_pool,
    single_pool,
)
from qgfast.corrupt.warp import cross_image_partners
from qgfast.losses.scores import dice_scores

MAX_CHAIN = 3


class VQMResult(NamedTuple):
    masks: torch.Tensor  # [B·K, 1, *S], the input's dtype
    quality: torch.Tensor  # [B·K] (binary) or [B·K, C − 1] (label maps) float32 hard Dice
    ops: torch.Tensor  # [B·K, 3] int64 indices into VQMGenerator.op_names, −1 padded


class VQMGenerator:
    """``generate(masks, images=None, k=1, seed=0)`` → ``VQMResult``.

    categories: category → weight (the paper's mixture by default).
    footprint: "cube" (the authors' square kernels) or "ball" for the morphology ops.
    weak_models: callables image batch [n, C, *S] → logits [n, 1 or C_out, *S]; with
        probability ``p_weak`` a copy is the model's prediction (1 channel: logits > 0;
        several: the argmax label map). Needs ``images`` in ``generate``.
    chain_lengths: how many distinct single-pool ops a chained copy applies (uniform).
    cross_image_fraction: a cross-image copy takes the mask of another sample of the batch
        whose area is among this closest fraction of the others.
    """

    def __init__(
        self,
        categories: dict[str, float] | None = None,
        *,
        footprint: str = "cube",
        weak_models: Sequence[Callable[[torch.Tensor], torch.Tensor]] = (),
        p_weak: float = 0.0,
        chain_lengths: Sequence[int] = (2, 3),
        cross_image_fraction: float = 0.2,
    ) -> None:
        self.categories = dict(CATEGORIES if categories is None else categories)
        unknown = set(self.categories) - set(CATEGORIES)
        if unknown:
            raise ValueError(f"unknown categories {sorted(unknown)}; known: {list(CATEGORIES)}")
        if any(w < 0 for w in self.categories.values()) or sum(self.categories.values()) <= 0:
            raise ValueError("category weights must be >= 0 with a positive sum")
        if not 0.0 <= p_weak <= 1.0:
            raise ValueError(f"p_weak must be in [0, 1], got {p_weak}")
        if p_weak > 0 and not weak_models:
            raise ValueError("p_weak > 0 needs weak_models")
        if not chain_lengths or any(n < 1 or n > MAX_CHAIN for n in chain_lengths):
            raise ValueError(f"chain_lengths must lie in 1..{MAX_CHAIN}, got {chain_lengths}")
        self.pools: dict[str, list[Op]] = {
            "single": single_pool(footprint),
            "heavy": heavy_pool(footprint),
            "catastrophic": catastrophic_pool(),
            "blob": blob_category_pool(),
        }
        self.footprint = footprint
        self.weak_models = list(weak_models)
        self.p_weak = p_weak
        self.chain_lengths = tuple(chain_lengths)
        self.cross_image_fraction = cross_image_fraction
        self.op_names = ["identity", "cross_image", "weak_model"]
        self._ops: list[Op | None] = [None, None, None]
        for pool in self.pools.values():
            for op in pool:
                self.op_names.append(op.name)
                self._ops.append(op)
        self._index = {name: i for i, name in enumerate(self.op_names)}

    def config(self) -> dict:
        """The constructor keywords that rebuild this generator, weak models excepted (they
        are modules: checkpoints store them beside this dict)."""
        return {
            "categories": dict(self.categories),
            "footprint": self.footprint,
            "p_weak": self.p_weak,
            "chain_lengths": list(self.chain_lengths),
            "cross_image_fraction": self.cross_image_fraction,
        }

    # -- sampling -----------------------------------------------------------------------
    def plan(
        self, ids: torch.Tensor, spatial_dims: int, seed: int, weak: bool = False
    ) -> torch.Tensor:
        """The op indices [n, 3] (−1 padded) drawn for copies with global keys ``ids``."""
        draws = 2 + MAX_CHAIN + 1  # category, chain length, ops, weak coin
        u = rng.uniform(
            seed, ids.to(torch.int64)[:, None], rng.STREAM_VQM, torch.arange(draws)[None, :]
        )
        names = list(self.categories)
        weights = [self.categories[c] for c in names]
        rows = []
        for uc, ul, *uo, uw in u.tolist():
            if weak and uw < self.p_weak:
                rows.append([self._index["weak_model"], -1, -1])
                continue
            category = names[_choose(weights, uc)]
            if category == "identity":
                row = [self._index["identity"]]
            elif category == "cross_image":
                row = [self._index["cross_image"]]
            elif category == "chained":
                length = self.chain_lengths[
                    min(int(ul * len(self.chain_lengths)), len(self.chain_lengths) - 1)
                ]
                candidates = [
                    op for op in self._available("single", spatial_dims) if op.name not in BLOB_OPS
                ]
                row = []
                for step in range(length):
                    op = candidates.pop(_choose([o.weight for o in candidates], uo[step]))
                    row.append(self._index[op.name])
            else:
                pool = self._available(category, spatial_dims)
                row = [self._index[pool[_choose([o.weight for o in pool], uo[0])].name]]
            rows.append(row + [-1] * (MAX_CHAIN - len(row)))
        return torch.tensor(rows, dtype=torch.int64).view(-1, MAX_CHAIN)

    def _available(self, pool: str, spatial_dims: int) -> list[Op]:
        return [op for op in self.pools[pool] if spatial_dims in op.spatial_dims]

    # -- generation ---------------------------------------------------------------------
    def generate(
        self,
        masks: torch.Tensor,
        images: torch.Tensor | None = None,
        k: int = 1,
        seed: int = 0,
        num_classes: int | None = None,
    ) -> VQMResult:
        """K corrupted copies of each mask [B, 1, *S], their Dice and op ids.

        Binary masks (0/1, ``num_classes=None``): quality [B·K]. Label maps with
        ``num_classes`` = C ≥ 2: each copy corrupts one foreground class drawn uniformly (the
        op sees that class as a binary mask; the result replaces the class, the other classes
        stay), cross-image and weak-model copies replace the whole map, and quality is the
        per-class Dice [B·K, C − 1] (background excluded).
        """
        check_masks(masks)
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        classes = 2 if num_classes is None else num_classes
        if classes < 2:
            raise ValueError(f"num_classes must be >= 2 for label maps, got {num_classes}")
        top = 1 if masks.dtype == torch.bool else int(masks.max())
        if top >= classes or int(masks.min()) < 0:
            if num_classes is None:
                raise ValueError(
                    f"masks hold labels up to {top}: binary masks need values 0/1; "
                    "pass num_classes for label maps"
                )
            raise ValueError(f"masks hold labels up to {top} but num_classes={classes}")
        if images is not None and (
            images.shape[0] != masks.shape[0] or images.shape[2:] != masks.shape[2:]
        ):
            raise ValueError(
                f"images {tuple(images.shape)} do not match masks {tuple(masks.shape)}"
            )
        use_weak = self.p_weak > 0 and images is not None
        b, nd = masks.shape[0], masks.dim() - 2
        ids = torch.arange(b * k)
        ops = self.plan(ids, nd, seed, weak=use_weak)
        gt = masks.to(torch.uint8) if masks.dtype == torch.bool else masks
        per_copy = (-1,) + (1,) * (nd + 1)
        if num_classes is None:
            target_class = None  # binary: the copy is the class
            # no repeat of the ground truths: each op reads its copies' sources from the
            # (cache-sized) batch itself, and every row of ``work`` is written once
            source = gt.to(torch.uint8)
            work = _uninitialised((b * k, *masks.shape[1:]), gt.device)
            untouched = torch.ones(b * k, dtype=torch.bool)
        else:
            rep = gt.repeat_interleave(k, dim=0)
            u = rng.uniform(
                seed,
                ids[:, None].to(gt.device),
                rng.STREAM_VQM,
                torch.tensor([[98]], device=gt.device),
            )
            drawn = (1 + (u[:, 0] * (classes - 1)).to(torch.int64)).clamp_max(classes - 1)
            target_class = drawn.view(per_copy).to(gt.dtype)
            work = (rep == target_class).to(torch.uint8)  # the class each copy corrupts, as 0/1
            untouched = None
        whole: list[tuple[torch.Tensor, torch.Tensor]] = []  # (rows, maps) replaced outright
        scale = sum(masks.shape[2:]) / nd / 224.0
        for step in range(MAX_CHAIN):
            for op_id in ops[:, step].unique().tolist():
                if op_id < 0 or self.op_names[op_id] == "identity":
                    continue
                rows = (ops[:, step] == op_id).nonzero()[:, 0]
                idx = rows.to(gt.device)
                step_seed = seed + 7919 * step
                with rng.sample_keys(ids[rows] * MAX_CHAIN + step):
                    if self.op_names[op_id] in ("cross_image", "weak_model"):
                        maps = self._replace_map(op_id, gt, images, rows, k, step_seed, classes)
                        whole.append((idx, maps))
                        if untouched is not None:
                            untouched[rows] = False  # written whole below
                    else:
                        op = self._ops[op_id]
                        assert op is not None
                        if step == 0 and untouched is not None:
                            inputs = _take_rows(source, idx // k)
                            untouched[rows] = False
                        else:
                            inputs = _take_rows(work, idx)
                        done = _binary(op.fn(inputs, step_seed, scale))
                        _put_rows(work, rows, done)
        if untouched is not None and bool(untouched.any()):  # the identity copies
            rows = untouched.nonzero()[:, 0]
            _put_rows(work, rows, _take_rows(source, rows.to(gt.device) // k))
        if target_class is None:
            out = work if gt.dtype == torch.uint8 else work.to(gt.dtype)
        else:  # put each corrupted class back into its map: old voxels cleared, new ones set
            out = torch.where(work.bool(), target_class, torch.where(rep == target_class, 0, rep))
        for idx, maps in whole:  # a whole-map copy takes no other op (one-op categories)
            _put_rows(out, idx, maps)
        if num_classes is None:
            quality = dice_scores(out, gt, num_classes=1, repeats=k, validate=False)[:, 0]
        else:
            quality = dice_scores(
                out, gt, num_classes=classes, repeats=k, include_background=False, validate=False
            )
        return VQMResult(out.to(masks.dtype), quality, ops.to(masks.device))

    def _replace_map(self, op_id, gt, images, rows, k, seed, classes) -> torch.Tensor:
        """Whole label maps for cross-image and weak-model copies."""
        sources = (rows // k).to(gt.device)
        if self.op_names[op_id] == "cross_image":
            if gt.shape[0] < 2:
                return _take_rows(gt, sources)  # no other image in the batch to swap with
            partners = cross_image_partners(gt, sources, self.cross_image_fraction, seed)
            return _take_rows(gt, partners)
        return self._weak(images, sources, seed, rows).to(gt.dtype).clamp_max(classes - 1)

    def _weak(self, images, sources, seed, rows) -> torch.Tensor:
        u = rng.uniform(seed, rows.to(torch.int64)[:, None], rng.STREAM_VQM, torch.tensor([[99]]))[
            :, 0
        ]
        choice = (u * len(self.weak_models)).to(torch.int64).clamp_max(len(self.weak_models) - 1)
        out = []
        with torch.no_grad():
            for i, model in zip(choice.tolist(), sources.tolist(), strict=True):
                logits = self.weak_models[i](images[model : model + 1])
                labels = logits > 0 if logits.shape[1] == 1 else logits.argmax(1, keepdim=True)
                out.append(labels.to(torch.uint8))
        return torch.cat(out).to(images.device)


def _uninitialised(shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """An uninitialised uint8 tensor; on a CPU allocated by NumPy, which asks the kernel for
    huge pages on large arrays: a generator's output (80 MB for 1,600 masks at 224²) then
    costs ~3x fewer page faults than torch's allocator takes."""
    if device.type != "cpu":
        return torch.empty(shape, dtype=torch.uint8, device=device)
    return torch.from_numpy(np.empty(shape, dtype=np.uint8))


def _binary(masks: torch.Tensor) -> torch.Tensor:
    """An op's output as 0/1 uint8. The pool's ops return 0/1 in their input's dtype
    (uint8 here; tests/corrupt/test_pool.py holds every op to it), so only another dtype
    takes a pass."""
    if masks.dtype == torch.uint8:
        return masks
    if masks.dtype == torch.bool:
        return masks.view(torch.uint8)
    return masks.ne(0).view(torch.uint8)


def _take_rows(x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """x[rows] along the first axis. On a CPU through NumPy, which copies each row whole
    (torch's index_select and advanced indexing of uint8 rows are ~5x slower there)."""
    if x.device.type == "cpu":
        return torch.from_numpy(x.numpy()[rows.numpy()])
    return x.index_select(0, rows)


def _put_rows(work: torch.Tensor, rows: torch.Tensor, values: torch.Tensor) -> None:
    """work[rows] = values along the first axis (NumPy's row copies on a CPU, as above)."""
    if work.device.type == "cpu":
        work.numpy()[rows.numpy()] = values.numpy()
    else:
        work.index_copy_(0, rows.to(work.device), values)


def _choose(weights: Sequence[float], u: float) -> int:
    """Index drawn with probability ∝ weight from one uniform."""
    total = sum(weights)
    acc = 0.0
    for i, w in enumerate(weights):
        acc += w / total
        if u < acc:
            return i
    return len(weights) - 1
