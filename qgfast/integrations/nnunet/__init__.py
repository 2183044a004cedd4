"""qgfast's trainers for nnU-Net v2.6+ (``pip install qgfast[nnunet]``; docs/integrations.md).

nnU-Net finds a trainer named by ``nnUNetv2_train ... -tr NAME`` by importing the modules
inside its own ``nnunetv2/training/nnUNetTrainer`` folder, so ``register()`` (``qgfast
nnunet register``) writes one small module there that imports qgfast's trainers, and
``unregister()`` removes it; nothing else of nnU-Net is touched.
"""

from __future__ import annotations

from pathlib import Path

MODULE_NAME = "qgfast_trainers.py"
MARKER = "# written by `qgfast nnunet register`; `qgfast nnunet unregister` removes it"
TRAINER_NAMES = (
    "nnUNetTrainerMeanTeacher",
    "nnUNetTrainerMeanTeacherQW",
    "nnUNetTrainerPL",
    "nnUNetTrainerPLQW",
)
SUPPORTED = "nnU-Net v2.6 or later (tested with 2.8.1)"


def _trainer_folder() -> Path:
    try:
        import nnunetv2
    except ImportError as err:
        raise ImportError("nnU-Net v2 is not installed: pip install 'qgfast[nnunet]'") from err
    return Path(nnunetv2.__file__).parent / "training" / "nnUNetTrainer"


def registration_file() -> Path:
    return _trainer_folder() / MODULE_NAME


def is_registered() -> bool:
    path = registration_file()
    return path.is_file() and MARKER in path.read_text()


def register() -> Path:
    """Make ``-tr nnUNetTrainerMeanTeacherQW`` (and the others) findable; idempotent."""
    path = registration_file()
    if path.exists() and MARKER not in path.read_text():
        raise FileExistsError(f"{path} exists and was not written by qgfast; not touching it")
    names = ", ".join(TRAINER_NAMES)
    path.write_text(
        f"{MARKER}\nfrom qgfast.integrations.nnunet.trainers import (  # noqa: F401\n"
        f"    {names},\n)\n"
    )
    return path


def unregister() -> bool:
    """Remove the module ``register`` wrote; False when there was none."""
    path = registration_file()
    if not path.exists():
        return False
    if MARKER not in path.read_text():
        raise FileExistsError(f"{path} was not written by qgfast; not removing it")
    path.unlink()
    return True
