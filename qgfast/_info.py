"""``qgfast.info()``: versions, devices, usable backends and the native build, in one dict.

Used by ``qgfast info``, by bug reports and by the benchmark rows, so it must never raise:
whatever cannot be determined is reported as such.
"""

from __future__ import annotations

import importlib.metadata
import platform
import sys

import numpy as np
import torch

from qgfast.backend import backend_report

# Optional packages worth knowing in a report; absent ones show as None.
_OPTIONAL = ("triton", "monai", "nibabel", "scipy", "skimage")


def _dist_version(module: str) -> str | None:
    dist = {"skimage": "scikit-image"}.get(module, module)
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        mod = sys.modules.get(module)
        return getattr(mod, "__version__", None)


def native_report() -> dict[str, object]:
    """Build facts of ``qgfast._native``, or why it does not import."""
    try:
        from qgfast import _native
    except ImportError as exc:
        return {"available": False, "error": f"{type(exc).__name__}: {exc}"}
    return {"available": True, **_native.build_info()}


def device_report() -> dict[str, object]:
    cuda = torch.cuda.is_available()
    devices = []
    if cuda:
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            devices.append(
                {
                    "index": i,
                    "name": props.name,
                    "capability": f"{props.major}.{props.minor}",
                    "memory_gib": round(props.total_memory / 2**30, 1),
                }
            )
    return {
        "cuda_available": cuda,
        "cuda_runtime": torch.version.cuda,
        "gpus": devices,
        "cpu": platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
    }


def info() -> dict[str, object]:
    """Versions, devices, backends and native build of this installation."""
    from qgfast import __version__

    versions = {
        "qgfast": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
    }
    versions.update({name: _dist_version(name) for name in _OPTIONAL})
    return {
        "versions": versions,
        "platform": platform.platform(),
        "devices": device_report(),
        "backends": backend_report(),
        "native": native_report(),
    }
