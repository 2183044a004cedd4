"""Run checkpoints of the semi-supervised trainer: atomic writes and every RNG state.

A checkpoint is one ``torch.save`` dict of plain types and tensors, so it loads with
``weights_only=True`` (no pickled code runs when a user opens a file from elsewhere).
Writes are atomic (``qgfast._atomic``): a kill or a full disk at any moment leaves either
the old checkpoint or the new one, never a truncated file.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from qgfast._atomic import atomic_torch_save

FORMAT = "qgfast.ssl/1"


class CheckpointError(RuntimeError):
    """A checkpoint could not be written or read; the message names the file."""


def atomic_save(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``{"format": FORMAT, **state}`` to ``path`` atomically (see the module
    docstring); on failure the old ``path`` is intact and the error names the file."""
    path = Path(path)
    try:
        return atomic_torch_save({"format": FORMAT, **state}, path)
    except OSError as err:
        previous = "the previous checkpoint is intact" if path.exists() else "none existed"
        raise CheckpointError(f"could not write {path}: {err} ({previous})") from err


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """The checkpoint dict at ``path`` (tensors on ``device``); a clear error for a missing,
    damaged or foreign file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # torch raises several types for a damaged file
        raise CheckpointError(f"{path}: not a readable checkpoint ({err})") from err
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"{path}: not a qgfast training checkpoint ({FORMAT}; found {found})")
    return state


# -- random number generator states ----------------------------------------------------
def rng_state() -> dict[str, Any]:
    """Python's, numpy's global, torch's CPU and every CUDA device's generator states,
    as tensors and plain types (``weights_only`` loadable)."""
    version, internal, gauss = random.getstate()
    np_state = np.random.get_state(legacy=False)  # noqa: NPY002 (user code may use it)
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": {
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what ``rng_state`` captured (CUDA states only where devices match)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state(  # noqa: NPY002
        {
            "bit_generator": "MT19937",
            "state": {"key": n["key"].numpy().astype(np.uint32), "pos": n["pos"]},
            "has_gauss": n["has_gauss"],
            "gauss": n["gauss"],
        }
    )
    torch.set_rng_state(state["torch"].cpu())
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda])
