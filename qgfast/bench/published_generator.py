"""The method's published corruption generator as an optional benchmark provider.

Set ``QGFAST_QGSSL_PATH`` to a checkout of the authors' QG-SSL repository (the folder that
holds ``data/vqm_generator.py``); ``bench_corrupt`` then times its ``VQMGenerator`` beside
qgfast's on the same 2D masks (row provider ``authors-published-cpu``). Nothing of that code
is in this repository: it is imported from the user's path, and it needs OpenCV
(``pip install opencv-python-headless``) and SciPy.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

PATH_ENV = "QGFAST_QGSSL_PATH"


def load() -> Callable[[np.ndarray, int], list] | None:
    """``generate(masks [B, H, W] bool, k)`` → B·k (mask, Dice, name) triples from the
    published generator, or None when ``QGFAST_QGSSL_PATH`` is unset. A set but unusable
    path is an error that says what is missing."""
    root = os.environ.get(PATH_ENV)
    if not root:
        return None
    if not (Path(root) / "data" / "vqm_generator.py").is_file():
        raise FileNotFoundError(f"{PATH_ENV}={root}: no data/vqm_generator.py there")
    try:
        import cv2  # noqa: F401 - the published ops import it
    except ImportError as err:
        raise ImportError(
            f"{PATH_ENV} is set but OpenCV is missing: pip install opencv-python-headless"
        ) from err
    sys.path.insert(0, str(Path(root).resolve()))
    try:
        module = importlib.import_module("data.vqm_generator")
    finally:
        sys.path.pop(0)

    def generate(masks: np.ndarray, k: int) -> list:
        if masks.ndim != 3:
            raise ValueError("the published generator is 2D: masks [B, H, W]")
        gts = [m.astype(np.uint8) for m in masks]
        gen = module.VQMGenerator(gt_masks=gts)
        rng = np.random.RandomState(0)
        return [gen(gt, i, rng) for i, gt in enumerate(gts) for _ in range(k)]

    return generate
