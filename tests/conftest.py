"""Shared test set-up.

- Without a CUDA GPU, Triton kernels run in its CPU interpreter: TRITON_INTERPRET=1 must
  be set before triton is first imported, so it is set here, at collection start.
- Every test starts from fixed seeds (torch, numpy, random).
- Markers: ``gpu`` tests are skipped without CUDA; ``slow`` tests are excluded by default
  (pyproject addopts) and run with ``-m slow``.
- Modules that need optional test extras (hypothesis, monai, nibabel, scipy, skimage) use
  ``pytest.importorskip`` so that the GPU check machine, which has only torch, triton,
  numpy and pytest, can collect the whole tree.
"""

from __future__ import annotations

import os
import random
import sys

import torch

HAS_CUDA = torch.cuda.is_available()

if not HAS_CUDA:
    if "triton" in sys.modules and os.environ.get("TRITON_INTERPRET") != "1":
        raise RuntimeError("triton was imported before conftest could set TRITON_INTERPRET=1")
    os.environ["TRITON_INTERPRET"] = "1"

import numpy as np  # noqa: E402
import pytest  # noqa: E402

try:  # hypothesis is a test extra; the GPU machine may not have it
    from hypothesis import HealthCheck, settings

    # The `backend` fixture only sets an environment variable that holds for every example.
    _quiet = [HealthCheck.function_scoped_fixture]
    settings.register_profile(
        "ci", deadline=None, max_examples=25, derandomize=True, suppress_health_check=_quiet
    )
    settings.register_profile("dev", deadline=None, max_examples=50, suppress_health_check=_quiet)
    settings.load_profile("ci" if os.environ.get("CI") else "dev")
except ImportError:
    pass

SEED = 1234


@pytest.fixture(autouse=True)
def _fixed_seeds() -> None:
    random.seed(SEED)
    np.random.seed(SEED)  # noqa: NPY002 -- code under test may draw from the legacy global RNG
    torch.manual_seed(SEED)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if HAS_CUDA:
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture
def device() -> torch.device:
    """The device kernel tests run on: CUDA when present, else CPU (Triton interpreter)."""
    return torch.device("cuda" if HAS_CUDA else "cpu")


@pytest.fixture(params=["reference", "triton"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Runs a test once per backend by forcing QGFAST_BACKEND (Triton interpreted on CPU)."""
    monkeypatch.setenv("QGFAST_BACKEND", request.param)
    return request.param
