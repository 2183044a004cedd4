"""The Rust extension imports, reports its build, and never lets a failure escape as a
crash: Rust errors and panics both arrive as ordinary Python exceptions."""

import threading

import pytest

import qgfast

native = pytest.importorskip("qgfast._native")


def test_version_matches_package() -> None:
    assert native.__version__ == qgfast.__version__
    assert native.build_info("version") == native.__version__


def test_build_info_reports_profile_and_target() -> None:
    facts = native.build_info()
    assert facts["profile"] in ("release", "debug")
    assert facts["abi3"] == "cp310"
    assert facts["target"].startswith(("x86_64", "aarch64"))


def test_unknown_build_info_key_raises_value_error() -> None:
    with pytest.raises(ValueError, match=r'unknown key "colour"; known keys: version'):
        native.build_info("colour")


def test_rust_error_becomes_value_error() -> None:
    with pytest.raises(ValueError, match="deliberate error"):
        native._selftest_fail("error")


def test_rust_panic_becomes_native_error_not_a_crash() -> None:
    with pytest.raises(native.NativeError, match="deliberate panic") as caught:
        native._selftest_fail("panic")
    assert isinstance(caught.value, RuntimeError)
    assert "please report" in str(caught.value)
    # The interpreter is intact after the panic: the same call works again.
    with pytest.raises(native.NativeError):
        native._selftest_fail("panic")


def test_panics_in_concurrent_threads_are_all_caught() -> None:
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            native._selftest_fail("panic")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(errors) == 4
    assert all(isinstance(e, native.NativeError) for e in errors)


def test_wrong_argument_type_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        native._selftest_fail(3)
