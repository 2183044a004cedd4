"""Backend dispatch: which implementation of an op runs for a given call.

Rule (docs/architecture.md): every tensor on CUDA and Triton importable → ``"triton"``; otherwise
``"reference"`` (plain PyTorch). Under ``"reference"``, CPU tensors take exact CPU fast
paths where an op has one (morphology on bit-packed rows, ``qgfast.corrupt.morphology_packed``;
label-map Dice statistics by counting, ``qgfast.losses._stats``; the corruption RNG's hash
and nearest remaps through ``qgfast._native``, ``qgfast.corrupt.rng`` and ``.geometry``),
all exact, unless the reference is forced. ``QGFAST_BACKEND=reference|triton`` forces one. Forcing
``triton`` on CPU tensors needs ``TRITON_INTERPRET=1`` set before triton is first
imported (the test suite does this), because compiled Triton kernels only run on GPUs.

The environment is read at every call, not cached, so tests and users can switch backends
without re-importing; the triton import itself is attempted once.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
from collections.abc import Iterator
from types import ModuleType
from typing import Literal

import torch

Backend = Literal["reference", "triton"]
BACKENDS: tuple[Backend, ...] = ("reference", "triton")
ENV_VAR = "QGFAST_BACKEND"


@functools.cache
def triton_import_error() -> str | None:
    """Why ``import triton`` fails here, or ``None`` when it works."""
    try:
        importlib.import_module("triton")
    except Exception as exc:  # an ImportError, or a broken install raising anything
        return f"{type(exc).__name__}: {exc}"
    return None


def triton_available() -> bool:
    """True when the ``triton`` package imports."""
    return triton_import_error() is None


def triton_interpret() -> bool:
    """True when Triton kernels run in the CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def forced_backend() -> Backend | None:
    """The backend named by ``QGFAST_BACKEND``, or ``None`` when it is unset or empty."""
    value = os.environ.get(ENV_VAR, "").strip().lower()
    if not value:
        return None
    if value not in BACKENDS:
        raise ValueError(f"{ENV_VAR}={value!r} is not a backend; use one of {', '.join(BACKENDS)}")
    return value  # type: ignore[return-value]


@contextlib.contextmanager
def use_backend(name: Backend | None) -> Iterator[None]:
    """Within the block, force ``name`` (``None``: choose automatically); the previous
    ``QGFAST_BACKEND`` is restored afterwards, also on error."""
    old = os.environ.get(ENV_VAR)
    if name is None:
        os.environ.pop(ENV_VAR, None)
    else:
        os.environ[ENV_VAR] = name
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(ENV_VAR, None)
        else:
            os.environ[ENV_VAR] = old


def _common_device(tensors: tuple[torch.Tensor, ...]) -> torch.device | None:
    devices = {t.device for t in tensors if isinstance(t, torch.Tensor)}
    if len(devices) > 1:
        names = ", ".join(sorted(str(d) for d in devices))
        raise ValueError(f"all tensors must be on one device, got {names}")
    return devices.pop() if devices else None


def cpu_fast_path(*tensors: torch.Tensor) -> bool:
    """True when every tensor is on the CPU and no backend is forced: an op with an exact CPU
    fast path (NumPy, or ``native_extension()``) beside its reference may take it. Forcing
    ``reference`` keeps the plain PyTorch reference (the oracle)."""
    return forced_backend() is None and all(t.device.type == "cpu" for t in tensors)


@functools.cache
def native_extension() -> ModuleType | None:
    """``qgfast._native``, or None in a source checkout without the built extension (the
    import is tried once)."""
    try:
        return importlib.import_module("qgfast._native")
    except ImportError:
        return None


def select_backend(*tensors: torch.Tensor) -> Backend:
    """The backend for an op over ``tensors``; raises if the tensors share no device or
    a forced backend cannot run them."""
    device = _common_device(tensors)
    forced = forced_backend()
    if forced == "reference":
        return "reference"
    if forced == "triton":
        if not triton_available():
            raise RuntimeError(
                f"{ENV_VAR}=triton but triton does not import: {triton_import_error()}"
            )
        if device is not None and device.type != "cuda" and not triton_interpret():
            raise RuntimeError(
                f"{ENV_VAR}=triton with tensors on {device} needs TRITON_INTERPRET=1 "
                "(set before triton is imported); compiled Triton kernels run on CUDA only"
            )
        return "triton"
    if device is not None and device.type == "cuda" and triton_available():
        return "triton"
    return "reference"


def backend_report() -> dict[str, object]:
    """What ``qgfast.info()`` shows about dispatch."""
    cuda = torch.cuda.is_available()
    return {
        "forced": os.environ.get(ENV_VAR) or None,
        "reference": True,
        "triton": triton_available(),
        "triton_error": triton_import_error(),
        "triton_interpret": triton_interpret(),
        "cpu_tensors": "reference",
        "cuda_tensors": ("triton" if triton_available() else "reference") if cuda else None,
    }
