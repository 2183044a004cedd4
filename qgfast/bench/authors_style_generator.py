"""A CPU corruption generator written the way the authors' release works: one sample at a
time, NumPy/SciPy ops, one process, Dice by NumPy. It draws the same category mixture and a
representative subset of each category's ops (square-kernel morphology, Gaussian smoothing,
shift/rotate/scale, elastic, holes/islands, components, bounding box, blobs, catastrophic
ops, cross-image swap), so its masks/s is the baseline ``bench_corrupt`` compares the
batched generator with. The release used OpenCV, faster than SciPy on 2D morphology; this is
an approximation of its cost, named as such in RESULTS.md.
"""

from __future__ import annotations

import numpy as np


def _disc(shape, centre, r):
    grids = np.ogrid[tuple(slice(0, s) for s in shape)]
    return sum((g - c) ** 2 for g, c in zip(grids, centre, strict=True)) <= r * r


def _holes(m, rng, n, lo, hi, fill):
    cand = np.argwhere(m if fill == 0 else ~m)
    out = m.copy()
    for _ in range(n if len(cand) else 0):
        out[_disc(m.shape, cand[rng.integers(len(cand))], rng.integers(lo, hi + 1))] = bool(fill)
    return out


def _affine(ndi, m, matrix, centre):
    inv = np.linalg.inv(matrix)
    return ndi.affine_transform(m.astype(np.uint8), inv, offset=centre - inv @ centre, order=0) > 0


def generate(masks: np.ndarray, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """masks [B, *S] bool → (corrupted [B·K, *S] bool, Dice [B·K])."""
    import scipy.ndimage as ndi

    rng = np.random.default_rng(seed)
    cats = ["identity", "single", "chained", "cross", "heavy", "catastrophic", "blob"]
    probs = np.array([0.20, 0.28, 0.18, 0.10, 0.12, 0.05, 0.07])
    nd = masks.ndim - 1

    def single(m):
        op = rng.integers(10)
        box = np.ones((int(rng.choice([5, 7, 9])),) * nd, bool)
        centre = np.argwhere(m).mean(0) if m.any() else (np.array(m.shape) - 1) / 2
        if op == 0:
            return ndi.binary_erosion(m, box)
        if op == 1:
            return ndi.binary_dilation(m, box)
        if op == 2:
            return ndi.gaussian_filter(m.astype(np.float32), 2.0) > 0.5
        if op == 3:
            return ndi.shift(m.astype(np.uint8), rng.uniform(-0.2, 0.2, nd) * m.shape, order=0) > 0
        if op == 4 and nd == 2:
            a = np.radians(rng.uniform(-30, 30))
            return _affine(
                ndi, m, np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]), centre
            )
        if op == 5:
            return _affine(ndi, m, np.eye(nd) * rng.uniform(0.75, 1.25), centre)
        if op == 6:
            field = [ndi.gaussian_filter(rng.normal(0, 30, m.shape), 4) for _ in range(nd)]
            coords = np.indices(m.shape) + np.stack(field)
            return ndi.map_coordinates(m.astype(np.uint8), coords, order=0) > 0
        if op == 7:
            return _holes(m, rng, 2, 3, 8, 0)
        if op == 8:
            lab, n = ndi.label(m)
            return lab == (np.bincount(lab.ravel())[1:].argmax() + 1) if n else m
        return _holes(m, rng, 2, 3, 8, 1)

    out, scores = [], []
    for b, gt in enumerate(masks):
        for _ in range(k):
            cat = cats[rng.choice(7, p=probs)]
            m = gt
            if cat == "single":
                m = single(m)
            elif cat == "chained":
                for _ in range(rng.integers(2, 4)):
                    m = single(m)
            elif cat == "cross" and len(masks) > 1:
                m = masks[(b + 1 + rng.integers(len(masks) - 1)) % len(masks)]
            elif cat == "heavy":
                m = (
                    ndi.binary_erosion(m, np.ones((11,) * nd, bool))
                    if rng.random() < 0.5
                    else _holes(m, rng, 5, 10, 20, 0)
                )
            elif cat == "catastrophic":
                m = [~m, np.zeros_like(m), np.ones_like(m), rng.random(m.shape) < 0.5][
                    rng.integers(4)
                ]
            elif cat == "blob":
                c = np.argwhere(m).mean(0) if m.any() else np.array(m.shape) / 2
                r = (m.sum() / np.pi) ** 0.5 if nd == 2 else (3 * m.sum() / (4 * np.pi)) ** (1 / 3)
                m = _disc(m.shape, c, r)
            denom = m.sum() + gt.sum()
            scores.append(1.0 if denom == 0 else 2 * (m & gt).sum() / denom)
            out.append(m)
    return np.stack(out), np.array(scores)
