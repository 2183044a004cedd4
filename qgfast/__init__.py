"""qgfast: fast quality-guided semi-supervised medical image segmentation.

Subpackages: ``kernels`` (Triton), ``reference`` (plain PyTorch oracles), ``losses``,
``corrupt``, ``data``, ``quality``, ``ssl``. See README.md for the layout.
"""

from __future__ import annotations

from qgfast._info import info


def _version() -> str:
    # The native module is built from the same Cargo version as the wheel metadata and is
    # present in source checkouts that carry a prebuilt extension (the GPU check machine).
    try:
        from qgfast._native import __version__ as native_version
    except ImportError:
        import importlib.metadata

        try:
            return importlib.metadata.version("qgfast")
        except importlib.metadata.PackageNotFoundError:
            return "unknown"
    return native_version


__version__ = _version()

__all__ = ["__version__", "info"]
