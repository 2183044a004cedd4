"""NIfTI volumes: ``read_nifti`` (Rust, GIL released: ``.nii`` in one positioned read,
``.nii.gz`` inflated by libdeflate, or zlib-rs for unusual streams) and ``write_nifti``
(numpy + gzip, for tests and synthetic data).

``read_nifti(path).data`` holds the values of ``np.asanyarray(nibabel.load(path).dataobj)``
in the same shape and index order (a Fortran-ordered view, as nibabel's): the on-disk type
when the header does not scale, float64 ``raw * slope + inter`` when it does; always native
byte order. ``.affine`` is nibabel's ``get_best_affine()`` (sform, else qform, else the
centred zoom affine), computed with nibabel's formulas and its load-time header fixes
(zero spatial pixdims → 1, negative → absolute, qfac not ±1 → 1).
"""

from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qgfast.data.errors import DataError, native_data_errors

DEFAULT_MAX_BYTES = 16 << 30  # refuse headers claiming more than 16 GiB of voxels
_XFORM_CODES = range(1, 6)


@dataclass(frozen=True)
class NiftiVolume:
    """A decoded volume: ``data`` (numpy, nibabel's shape and values), ``affine`` (4×4
    float64), ``header`` (the raw fields as parsed)."""

    data: np.ndarray
    affine: np.ndarray
    header: dict[str, Any] = field(repr=False)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.header["shape"])

    @property
    def zooms(self) -> tuple[float, ...]:
        """Voxel sizes per axis (pixdim[1 : ndim + 1] after nibabel's fixes)."""
        return header_zooms(self.header)

    @property
    def datatype(self) -> str:
        """The on-disk voxel type (``data`` is float64 when the header scales)."""
        return self.header["dtype"]


def read_nifti(
    path: str | Path, raw: bool = False, max_bytes: int = DEFAULT_MAX_BYTES
) -> NiftiVolume:
    """Read a single-file NIfTI-1/2 volume (``.nii`` or ``.nii.gz``, either byte order).

    raw: skip the header's scaling (nibabel's ``dataobj.get_unscaled()``).
    max_bytes: refuse, before allocating, a header whose voxels would exceed this (a
        ``.nii.gz`` file larger than this is inflated as a stream, never held whole).
    Every bad file raises ``DataError`` naming the path and the reason.
    """
    from qgfast import _native

    with native_data_errors():
        header, buffer, offset = _native.read_nifti(Path(path), raw, int(max_bytes))
    shape = tuple(header["shape"])
    count = int(np.prod(shape, dtype=np.int64))
    if buffer.dtype != np.float64 or offset:  # raw words: view them as the voxel type
        dtype = np.dtype(header["dtype"])
        buffer = buffer.view(np.uint8)[offset : offset + count * dtype.itemsize].view(dtype)
    voxels = buffer[:count].reshape(shape[::-1])  # C order of the reversed shape
    try:
        affine = best_affine(header)
    except ValueError as err:
        raise DataError(path, str(err)) from None
    return NiftiVolume(voxels.T, affine, header)


def nifti_header(path: str | Path) -> dict[str, Any]:
    """The parsed header fields only (``.nii.gz``: decodes just the header)."""
    from qgfast import _native

    with native_data_errors():
        return _native.nifti_header(Path(path))


def header_zooms(header: dict[str, Any]) -> tuple[float, ...]:
    """Voxel sizes per axis of a parsed header (``nifti_header``), as nibabel's
    ``get_zooms()``: pixdim[1 : ndim + 1] with zeros read as 1 and signs dropped."""
    return tuple(float(z) for z in _fixed_pixdim(header)[1 : len(header["shape"]) + 1])


def _float_type(header: dict[str, Any]) -> type:
    return np.float32 if header["version"] == 1 else np.float64


def _fixed_pixdim(header: dict[str, Any]) -> np.ndarray:
    pix = np.array(header["pixdim"], dtype=_float_type(header))
    spatial = pix[1:4]
    spatial[spatial == 0] = 1
    pix[1:4] = np.abs(spatial)
    if pix[0] not in (-1, 1):
        pix[0] = 1
    return pix


def best_affine(header: dict[str, Any]) -> np.ndarray:
    """nibabel's ``get_best_affine`` for these header fields."""
    ftype = _float_type(header)
    if header["sform_code"] in _XFORM_CODES:
        out = np.eye(4)
        out[:3, :] = np.array(header["srow"], dtype=ftype)
        return out
    pix = _fixed_pixdim(header)
    if header["qform_code"] in _XFORM_CODES:
        xyz = np.asarray(np.array(header["quatern"], dtype=ftype), dtype=np.longdouble)
        w2 = 1.0 - xyz @ xyz
        if np.abs(w2) < np.finfo(ftype).eps * 3:
            w = 0
        elif w2 < 0:
            raise ValueError(f"qform quaternion is not unit length (w² = {w2:e})")
        else:
            w = np.sqrt(w2)
        rotation = _quat2mat(np.r_[w, xyz])
        vox = pix[1:4].copy()
        vox[-1] *= pix[0]
        out = np.eye(4)
        out[:3, :3] = np.dot(rotation, np.diag(vox))
        out[:3, 3] = np.array(header["qoffset"], dtype=ftype)
        return out
    ndim = len(header["shape"])
    shape = np.ones(3)
    zooms = np.ones(3, dtype=ftype if ndim >= 3 else np.float64)
    shape[: min(ndim, 3)] = header["shape"][:3]
    zooms[: min(ndim, 3)] = pix[1 : 1 + min(ndim, 3)]
    zooms[0] *= -1
    out = np.eye(4)
    out[:3, :3] = np.diag(zooms)
    out[:3, -1] = -((shape - 1) / 2.0) * zooms
    return out


def _quat2mat(q: np.ndarray) -> np.ndarray:
    w, x, y, z = q
    nq = w * w + x * x + y * y + z * z
    if nq < np.finfo(np.float64).eps:
        return np.eye(3)
    s = 2.0 / nq
    X, Y, Z = x * s, y * s, z * s
    wX, wY, wZ = w * X, w * Y, w * Z
    xX, xY, xZ = x * X, x * Y, x * Z
    yY, yZ, zZ = y * Y, y * Z, z * Z
    return np.array(
        [
            [1.0 - (yY + zZ), xY - wZ, xZ + wY],
            [xY + wZ, 1.0 - (xX + zZ), yZ - wX],
            [xZ - wY, yZ + wX, 1.0 - (xX + yY)],
        ]
    )


_DTYPE_CODES = {
    np.dtype(np.uint8): 2,
    np.dtype(np.int16): 4,
    np.dtype(np.int32): 8,
    np.dtype(np.float32): 16,
    np.dtype(np.float64): 64,
    np.dtype(np.int8): 256,
    np.dtype(np.uint16): 512,
    np.dtype(np.uint32): 768,
    np.dtype(np.int64): 1024,
    np.dtype(np.uint64): 1280,
}


def write_nifti(
    path: str | Path,
    data: np.ndarray,
    affine: np.ndarray | None = None,
    *,
    zooms: tuple[float, ...] | None = None,
    slope: float | None = None,
    inter: float | None = None,
    compresslevel: int = 6,
) -> Path:
    """Write ``data`` (1–7 dims, nibabel's index order) as little-endian NIfTI-1;
    ``.nii.gz`` paths are gzip-compressed at ``compresslevel``. The affine goes to the
    sform (code 2, "aligned"); zooms default to the affine's column norms."""
    path = Path(path)
    data = np.asanyarray(data)
    if data.dtype == np.bool_:
        data = data.astype(np.uint8)
    code = _DTYPE_CODES.get(data.dtype.newbyteorder("="))
    if code is None:
        raise TypeError(f"write_nifti: unsupported dtype {data.dtype}")
    if not 1 <= data.ndim <= 7 or max(data.shape) > 32767:
        raise ValueError(f"write_nifti: NIfTI-1 holds 1–7 dims of <= 32767, got {data.shape}")
    affine = np.eye(4) if affine is None else np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4):
        raise ValueError(f"write_nifti: affine must be 4×4, got {affine.shape}")
    if zooms is None:
        zooms = tuple(np.sqrt((affine[:3, :3] ** 2).sum(0))) + (1.0,) * (data.ndim - 3)
    pixdim = [1.0] + list(zooms[: data.ndim]) + [1.0] * (7 - min(data.ndim, len(zooms)))
    dims = [data.ndim, *data.shape] + [1] * (7 - data.ndim)
    hdr = bytearray(352)
    struct.pack_into("<i", hdr, 0, 348)
    struct.pack_into("<8h", hdr, 40, *dims)
    struct.pack_into("<hh", hdr, 70, code, data.dtype.itemsize * 8)
    struct.pack_into("<8f", hdr, 76, *pixdim[:8])
    struct.pack_into("<f", hdr, 108, 352.0)
    struct.pack_into("<ff", hdr, 112, 1.0 if slope is None else slope, inter or 0.0)
    hdr[123] = 2 | 8  # millimetres, seconds
    struct.pack_into("<hh", hdr, 252, 0, 2)  # qform unknown, sform aligned
    struct.pack_into("<12f", hdr, 280, *affine[:3].flatten())
    hdr[344:348] = b"n+1\0"
    payload = bytes(hdr) + np.asarray(data, dtype=data.dtype.newbyteorder("<")).tobytes("F")
    if path.name.endswith(".gz"):
        with gzip.open(path, "wb", compresslevel=compresslevel) as f:
            f.write(payload)
    else:
        path.write_bytes(payload)
    return path
