"""Dataset folders: find (image, label) cases and read them.

Layouts recognised under a root folder (the first image folder found wins):
- nnU-Net / MSD: ``imagesTr/`` + ``labelsTr/`` (optionally ``imagesTs/`` unlabelled);
  multi-modal images as ``{case}_{channel:04d}.ext`` files (nnU-Net) or one 4D NIfTI
  whose last axis is the channel (MSD);
- plain: ``images/`` + ``masks/`` or ``labels/``, masks matched to images by name with an
  optional ``_mask``/``_segmentation``/``_label``/``_gt`` suffix (ISIC, Kvasir style).
2D files (PNG, JPEG, BMP, TIFF) are read with Pillow, NIfTI with ``read_nifti`` (Rust).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qgfast.data.errors import DataError

IMAGE_DIRS = ("imagesTr", "images", "image", "imgs", "img")
LABEL_DIRS = ("labelsTr", "labels", "masks", "mask", "segmentations", "gt")
EXTENSIONS_2D = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
EXTENSIONS_3D = (".nii.gz", ".nii")
_LABEL_SUFFIX = re.compile(r"_(mask|segmentation|seg|label|gt)$", re.IGNORECASE)
_CHANNEL_SUFFIX = re.compile(r"_(\d{4})$")


@dataclass(frozen=True)
class Case:
    """One case: its id, its image file(s) (one per channel group) and optional label."""

    case_id: str
    images: tuple[Path, ...]
    label: Path | None

    @property
    def spatial_dims(self) -> int:
        return 3 if _extension(self.images[0]) in EXTENSIONS_3D else 2


def case_paths(case: Case | dict) -> tuple[list[Path], Path | None]:
    """(image paths, label path or None) of a ``Case`` or a dict
    {"images": path | [paths], "label": path | None} (the two forms the loaders take)."""
    if isinstance(case, Case):
        return list(case.images), case.label
    images = case["images"]
    images = [images] if isinstance(images, (str, Path)) else images
    label = case.get("label")
    return [Path(p) for p in images], None if label is None else Path(label)


def _extension(path: Path) -> str:
    name = path.name.lower()
    for ext in EXTENSIONS_3D + EXTENSIONS_2D:
        if name.endswith(ext):
            return ext
    return ""


def _stem(path: Path) -> str:
    return path.name[: len(path.name) - len(_extension(path))]


def _data_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and _extension(p))


def _first_dir(root: Path, names: tuple[str, ...]) -> Path | None:
    return next((root / n for n in names if (root / n).is_dir()), None)


def find_cases(root: str | Path) -> list[Case]:
    """The cases under ``root``, sorted by id; cases without a label have ``label=None``."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(root, "not a directory")
    image_dir = _first_dir(root, IMAGE_DIRS)
    if image_dir is None:
        raise DataError(root, f"no image folder: expected one of {', '.join(IMAGE_DIRS)}")
    label_dir = _first_dir(root, LABEL_DIRS)
    labels: dict[str, Path] = {}
    if label_dir is not None:
        for path in _data_files(label_dir):
            case_id = _LABEL_SUFFIX.sub("", _stem(path))
            if case_id in labels:
                raise DataError(path, f"second label file for case {case_id!r}")
            labels[case_id] = path
    # nnU-Net names every image file {case}_{channel:04d}; elsewhere (and where the full
    # stem names a label) a trailing _dddd is part of the case id
    nnunet = image_dir.name == "imagesTr"
    groups: dict[str, list[tuple[int, Path]]] = {}
    for path in _data_files(image_dir):
        stem = _stem(path)
        match = _CHANNEL_SUFFIX.search(stem) if nnunet and stem not in labels else None
        case_id, channel = (stem[: match.start()], int(match[1])) if match else (stem, 0)
        groups.setdefault(case_id, []).append((channel, path))
    if not groups:
        raise DataError(image_dir, "no image files (.png, .jpg, .nii, .nii.gz, ...)")
    cases = []
    for case_id, files in sorted(groups.items()):
        channels = [c for c, _ in sorted(files)]
        if channels != list(range(len(channels))):
            raise DataError(image_dir, f"case {case_id!r} has channel files {channels}")
        cases.append(Case(case_id, tuple(p for _, p in sorted(files)), labels.get(case_id)))
    kinds = {c.spatial_dims for c in cases}
    if len(kinds) > 1:
        raise DataError(image_dir, "mixes 2D image files and NIfTI volumes")
    return cases


def _read_pil(path: Path):
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            return img.copy()
    except (OSError, UnidentifiedImageError, SyntaxError) as err:
        raise DataError(path, f"cannot decode image: {err}") from err


def _read_nifti_array(path: Path) -> np.ndarray:
    from qgfast.data.nifti import read_nifti

    return read_nifti(path).data


def declared_num_classes(root: str | Path) -> int | None:
    """Classes (background included) that ``root/dataset.json``'s "labels" declares, or
    None when the folder has no such file (callers then count the labels' values)."""
    meta = Path(root) / "dataset.json"
    if not meta.is_file():
        return None
    try:
        labels = json.loads(meta.read_text()).get("labels")
        if isinstance(labels, dict) and labels:
            return max(int(v) for v in labels.values() if not isinstance(v, list)) + 1
    except (ValueError, TypeError, AttributeError) as err:
        raise DataError(meta, f'unreadable "labels" ({err})') from err
    return None


def read_image(path: str | Path) -> np.ndarray:
    """Image as float32 [C, *S]: 2D files in 0..255 (RGB or grey), NIfTI values as stored
    (3D → one channel; 4D → last axis as channels, the MSD convention)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "no such file")
    if _extension(path) in EXTENSIONS_3D:
        data = _read_nifti_array(path)
        if data.ndim == 4:
            data = np.moveaxis(data, -1, 0)
        elif data.ndim == 3:
            data = data[None]
        else:
            raise DataError(path, f"expected a 3D or 4D volume, got shape {data.shape}")
        if not np.issubdtype(data.dtype, np.number) or np.iscomplexobj(data):
            raise DataError(path, f"unsupported voxel type {data.dtype}")
        return data.astype(np.float32)
    img = _read_pil(path)
    if img.mode not in ("RGB", "L"):
        img = img.convert("RGB" if img.mode in ("RGBA", "P", "CMYK", "YCbCr") else "L")
    arr = np.asarray(img, dtype=np.float32)
    return arr[None] if arr.ndim == 2 else np.moveaxis(arr, -1, 0)


def read_label(path: str | Path) -> np.ndarray:
    """Label map as uint8 [1, *S]. A 2D mask stored as 0/255 becomes 0/1; palette PNGs
    give their indices; non-integer or negative values, or labels above 255, are refused."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "no such file")
    if _extension(path) in EXTENSIONS_3D:
        data = _read_nifti_array(path)
        if data.ndim == 4 and data.shape[-1] == 1:
            data = data[..., 0]
        if data.ndim != 3:
            raise DataError(path, f"expected a 3D label volume, got shape {data.shape}")
    else:
        img = _read_pil(path)
        data = np.asarray(img)
        if data.ndim == 3:  # a grey mask saved as RGB(A): all colour channels must agree
            rgb = data[..., :3]
            if not (rgb == rgb[..., :1]).all():
                raise DataError(path, "colour mask: expected grey levels or palette indices")
            data = rgb[..., 0]
        data = data.astype(np.int64)
        if set(np.unique(data).tolist()) <= {0, 255}:
            data = data // 255
    if not np.issubdtype(data.dtype, np.integer) and (
        not np.all(np.isfinite(data)) or not np.array_equal(data, np.round(data))
    ):
        raise DataError(path, "label values must be whole numbers")
    if data.size and (data.min() < 0 or data.max() > 255):
        raise DataError(path, f"labels must lie in 0..255, got {data.min()}..{data.max()}")
    return data.astype(np.uint8)[None]


def read_case(case: Case) -> tuple[np.ndarray, np.ndarray | None]:
    """(image float32 [C, *S], label uint8 [1, *S] or None); shapes checked to agree."""
    parts = [read_image(p) for p in case.images]
    shapes = {p.shape[1:] for p in parts}
    if len(shapes) > 1:
        raise DataError(case.images[0], f"channel files of case {case.case_id!r} differ: {shapes}")
    image = np.concatenate(parts)
    label = None if case.label is None else read_label(case.label)
    if label is not None and label.shape[1:] != image.shape[1:]:
        raise DataError(
            case.label, f"label shape {label.shape[1:]} != image shape {image.shape[1:]}"
        )
    return image, label
