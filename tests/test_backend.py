import pytest
import torch

from qgfast import backend


@pytest.fixture
def no_forcing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(backend.ENV_VAR, raising=False)


@pytest.mark.usefixtures("no_forcing")
def test_cpu_tensors_use_the_reference() -> None:
    assert backend.select_backend(torch.zeros(3), torch.ones(2)) == "reference"
    assert backend.select_backend() == "reference"


def test_forced_reference_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(backend.ENV_VAR, "Reference")
    assert backend.select_backend(torch.zeros(1)) == "reference"


def test_forced_triton_on_cpu_under_the_interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(backend.ENV_VAR, "triton")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert backend.select_backend(torch.zeros(1)) == "triton"


def test_forced_triton_on_cpu_without_interpreter_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(backend.ENV_VAR, "triton")
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        backend.select_backend(torch.zeros(1))


def test_forced_triton_without_triton_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(backend.ENV_VAR, "triton")
    monkeypatch.setattr(backend, "triton_import_error", lambda: "ImportError: gone")
    with pytest.raises(RuntimeError, match="triton does not import: ImportError: gone"):
        backend.select_backend(torch.zeros(1))


def test_unknown_backend_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(backend.ENV_VAR, "cuda")
    with pytest.raises(ValueError, match=r"QGFAST_BACKEND='cuda' is not a backend"):
        backend.select_backend(torch.zeros(1))


@pytest.mark.usefixtures("no_forcing")
def test_mixed_devices_are_refused() -> None:
    meta = torch.empty(2, device="meta")
    with pytest.raises(ValueError, match="one device"):
        backend.select_backend(torch.zeros(2), meta)


@pytest.mark.usefixtures("no_forcing")
def test_report_lists_backends() -> None:
    report = backend.backend_report()
    assert report["reference"] is True
    assert report["triton"] == backend.triton_available()
    assert report["cpu_tensors"] == "reference"


@pytest.mark.gpu
@pytest.mark.usefixtures("no_forcing")
def test_cuda_tensors_use_triton() -> None:
    assert backend.triton_available(), backend.triton_import_error()
    assert backend.select_backend(torch.zeros(1, device="cuda")) == "triton"
