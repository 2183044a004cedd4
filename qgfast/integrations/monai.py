"""Swap qgfast's fused ``DiceLoss`` / ``DiceCELoss`` into ``monai.losses``.

    import qgfast.integrations.monai as qm
    qm.patch()      # existing code that builds monai.losses.DiceCELoss(...) now gets qgfast's
    ...
    qm.unpatch()    # restores MONAI's classes

``patch`` replaces the names in ``monai.losses`` and ``monai.losses.dice`` (``DiceLoss``,
``Dice``, ``DiceCELoss``, ``dice_ce``). It affects code that looks the names up after the
call (``monai.losses.DiceCELoss(...)``, ``from monai.losses import DiceCELoss`` executed
later); a reference taken before the patch keeps pointing at MONAI's class. A loss built
with an option qgfast does not fuse (``other_act``, ``ignore_index``, ``label_smoothing``)
is MONAI's own, with a warning, so patching never breaks working code. The patched classes
keep MONAI's exception types, warnings and TorchScript support (docs/integrations.md).
"""

from __future__ import annotations

import importlib
import warnings
from types import ModuleType

from torch import nn

from qgfast.losses import DiceCELoss, DiceLoss

_NAMES = {"DiceLoss": DiceLoss, "Dice": DiceLoss, "DiceCELoss": DiceCELoss, "dice_ce": DiceCELoss}
_originals: dict[tuple[str, str], object] = {}


def _with_fallback(fast_cls: type[nn.Module], monai_cls: type[nn.Module]) -> type[nn.Module]:
    """A subclass of ``fast_cls`` whose construction falls back to ``monai_cls`` for options
    qgfast does not fuse (``__new__`` returns the MONAI instance, so ``__init__`` of the
    fast class is skipped)."""

    def __new__(cls, *args, **kwargs):
        try:
            fast_cls(*args, **kwargs)  # cheap: validates the options
        except NotImplementedError as exc:
            warnings.warn(f"qgfast: {exc}; using MONAI's {monai_cls.__name__}", stacklevel=2)
            return monai_cls(*args, **kwargs)
        return nn.Module.__new__(cls)

    return type(
        fast_cls.__name__,
        (fast_cls,),
        {"__new__": __new__, "__module__": __name__, "__doc__": fast_cls.__doc__},
    )


def _modules() -> list[ModuleType]:
    try:
        return [
            importlib.import_module("monai.losses"),
            importlib.import_module("monai.losses.dice"),
        ]
    except ImportError as exc:
        raise ImportError("qgfast.integrations.monai.patch() needs MONAI installed") from exc


def original_monai_class(name: str) -> type[nn.Module]:
    """MONAI's own ``monai.losses.dice.<name>``, patched or not (ImportError without
    MONAI)."""
    original = _originals.get(("monai.losses.dice", name))
    if original is not None:
        return original  # type: ignore[return-value]
    return getattr(importlib.import_module("monai.losses.dice"), name)


def is_patched() -> bool:
    return bool(_originals)


def patch() -> None:
    """Replace MONAI's Dice losses by qgfast's; calling it twice is harmless."""
    if is_patched():
        return
    modules = _modules()
    dice_module = modules[1]
    patched = {
        name: _with_fallback(fast, getattr(dice_module, fast.__name__))
        for name, fast in _NAMES.items()
    }
    # one class per MONAI class, so aliases stay identical (Dice is DiceLoss)
    patched["Dice"] = patched["DiceLoss"]
    patched["dice_ce"] = patched["DiceCELoss"]
    for module in modules:
        for name, cls in patched.items():
            if hasattr(module, name):
                _originals[(module.__name__, name)] = getattr(module, name)
                setattr(module, name, cls)


def unpatch() -> None:
    """Restore MONAI's classes exactly as they were."""
    for (module_name, name), original in _originals.items():
        setattr(importlib.import_module(module_name), name, original)
    _originals.clear()
