"""``convert``: an uncompressed copy of a NIfTI dataset that streams without inflating.

Inflating a ``.nii.gz`` is most of what a cache-less ``VolumeStream`` spends per sample
(an LA volume: ~170 ms of libdeflate against ~20 ms to read the same voxels
uncompressed). ``convert`` inflates each file once into a ``.nii`` beside the others in
``out_dir``: the bytes of the gzip stream exactly (header, extensions, voxels; nothing is
re-encoded, so scaling, affine and byte order are preserved), checked against the header,
written to a temporary name and renamed, so an interrupted run never leaves a partial
file under a final name. Files already uncompressed, and 2D images, are used in place.
The trade: disk space (the ``.nii`` is the raw voxel size, ~1.6–2× the ``.nii.gz`` for MR).

Each copy also gets a statistics file (``<copy>.qgstats``: per image channel the value
counts, or for float voxels the z-score maps; per label its checked foreground positions),
so a ``VolumeStream`` over the copies reads only the bytes each patch covers (one
positioned read per z slice of the patch) instead of the whole volume, nnU-Net's trick,
with the same batches bit for bit. The statistics file records the copy's size and
modification time: a copy changed since is read whole again, never with stale statistics.
Why positioned reads and not a memory map: a mapped file truncated under a running job
kills the process with SIGBUS, and qgfast never crashes on bad input; a short read fails
cleanly with a ``DataError`` instead.
"""

from __future__ import annotations

import gzip
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from qgfast.data.errors import DataError, native_data_errors
from qgfast.data.folders import Case, case_paths
from qgfast.data.nifti import nifti_header

_CHUNK = 1 << 22


def _voxel_end(header: dict) -> int:
    itemsize = np.dtype(header["dtype"]).itemsize
    return int(header["vox_offset"]) + int(np.prod(header["shape"], dtype=np.int64)) * itemsize


def _inflate(src: Path, dst: Path) -> None:
    header = nifti_header(src)  # refuses a corrupt header before any writing
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.part")
    try:
        with gzip.open(src, "rb") as fin, open(tmp, "wb") as fout:
            shutil.copyfileobj(fin, fout, _CHUNK)
        size = tmp.stat().st_size
        if size < _voxel_end(header):
            raise DataError(
                src,
                f"inflates to {size} bytes; the header implies {_voxel_end(header)}: "
                "truncated file or corrupt header",
            )
        os.replace(tmp, dst)
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DataError(src, f"gzip stream is corrupt or truncated: {e}") from e
    finally:
        tmp.unlink(missing_ok=True)


def _stats_path(path: Path) -> Path:
    return path.with_name(path.name + ".qgstats")


def _is_gz(path: Path) -> bool:
    return path.name.lower().endswith(".nii.gz")


def _up_to_date(src: Path, dst: Path) -> bool:
    return dst.exists() and dst.stat().st_mtime_ns >= src.stat().st_mtime_ns


def convert(
    cases: Iterable[Case | dict], out_dir: str | Path, *, overwrite: bool = False
) -> list[Case | dict]:
    """Inflate every ``.nii.gz`` of ``cases`` into ``out_dir`` and return the same cases
    pointing at the copies (``Case`` objects stay ``Case``, dicts stay dicts). The copies
    keep the files' folders relative to their common parent (``imagesTr/x.nii.gz`` →
    ``out_dir/imagesTr/x.nii``), so same-named files in different folders stay apart. A
    copy newer than its source is reused unless ``overwrite``; each copy's statistics file
    is (re)written unless newer than the copy. Raises ``DataError`` naming a file that is not
    valid NIfTI, whose gzip stream is corrupt, or a label that is not whole numbers in
    0..255."""
    out_dir = Path(out_dir)
    cases = list(cases)
    listed = [case_paths(case) for case in cases]
    packed = {
        p: p.resolve()
        for images, label in listed
        for p in (*images, *([label] if label is not None else []))
        if _is_gz(p)
    }
    root = Path(os.path.commonpath([r.parent for r in packed.values()])) if packed else out_dir
    targets = {}  # input path as given → its copy
    for path, resolved in packed.items():
        relative = resolved.relative_to(root)
        targets[path] = out_dir / relative.with_name(relative.name[: -len(".gz")])
    # one inflation per file, however many spellings of its path the cases use
    for dst, src in {dst: src for src, dst in targets.items()}.items():
        if overwrite or not _up_to_date(src, dst):
            dst.parent.mkdir(parents=True, exist_ok=True)
            _inflate(src, dst)
    from qgfast import _native

    roles = {targets[p]: "image" for images, _ in listed for p in images if p in targets}
    roles |= {targets[lab]: "label" for _, lab in listed if lab in targets}
    for dst, role in roles.items():
        if overwrite or not _up_to_date(dst, _stats_path(dst)):
            with native_data_errors():
                _native.write_volume_stats(str(dst), role)
    converted = []
    for case, (images, label) in zip(cases, listed, strict=True):
        images = [targets.get(p, p) for p in images]
        label = None if label is None else targets.get(label, label)
        if isinstance(case, Case):
            converted.append(Case(case.case_id, tuple(images), label))
        else:
            converted.append({**case, "images": images, "label": label})
    return converted
