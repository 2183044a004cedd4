"""Data loading: the Python face of the Rust NIfTI/image streamer, and synthetic data."""

from qgfast.data.convert import convert
from qgfast.data.dataset import CaseDataset, normalise, resize
from qgfast.data.errors import DataError
from qgfast.data.folders import (
    Case,
    declared_num_classes,
    find_cases,
    read_case,
    read_image,
    read_label,
)
from qgfast.data.nifti import NiftiVolume, nifti_header, read_nifti, write_nifti
from qgfast.data.stream import ImageStream, VolumeStream, auto_jpeg_decoder
from qgfast.data.synthetic import make_synthetic_dataset

__all__ = [
    "Case",
    "CaseDataset",
    "DataError",
    "ImageStream",
    "NiftiVolume",
    "VolumeStream",
    "auto_jpeg_decoder",
    "convert",
    "declared_num_classes",
    "find_cases",
    "make_synthetic_dataset",
    "nifti_header",
    "normalise",
    "read_case",
    "read_image",
    "read_label",
    "read_nifti",
    "resize",
    "write_nifti",
]
