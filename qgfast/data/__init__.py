"""Data loading: the Python face of the Rust NIfTI/image streamer, and synthetic data."""

from qgfast.data.dataset import CaseDataset, normalise, resize
from qgfast.data.errors import DataError
from qgfast.data.folders import Case, find_cases, read_case, read_image, read_label
from qgfast.data.synthetic import make_synthetic_dataset

__all__ = [
    "Case",
    "CaseDataset",
    "DataError",
    "find_cases",
    "make_synthetic_dataset",
    "normalise",
    "read_case",
    "read_image",
    "read_label",
    "resize",
]
