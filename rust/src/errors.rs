//! Every failure of the native core is an [`Error`]; the boundary turns it into a Python
//! exception. Panics are caught at the boundary too ([`catch_panic`]), so no Rust panic
//! ever unwinds into the interpreter, whatever a bug in a decoder or sampler does.
use std::any::Any;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;

pyo3::create_exception!(
    _native,
    NativeDataError,
    PyValueError,
    "Bad input data; args are (path, reason). qgfast.data re-raises it as DataError."
);

pyo3::create_exception!(
    _native,
    NativeError,
    PyRuntimeError,
    "An internal failure (a caught panic) inside qgfast's native extension."
);

/// A failure of the native core, named by what the caller can do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The caller passed something the function cannot accept (raised as `ValueError`).
    InvalidArgument(String),
    /// A file that cannot be used as data: which file, and why (raised as `NativeDataError`).
    Data { path: String, reason: String },
    /// A panic inside native code: a bug, reported as `NativeError` rather than a crash.
    Panic(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidArgument(msg) => write!(f, "{msg}"),
            Error::Data { path, reason } => write!(f, "{path}: {reason}"),
            Error::Panic(msg) => write!(
                f,
                "internal error in qgfast native code (please report it): {msg}"
            ),
        }
    }
}

impl std::error::Error for Error {}

impl From<Error> for PyErr {
    fn from(err: Error) -> PyErr {
        let msg = err.to_string();
        match err {
            Error::InvalidArgument(_) => PyValueError::new_err(msg),
            Error::Data { path, reason } => NativeDataError::new_err((path, reason)),
            Error::Panic(_) => NativeError::new_err(msg),
        }
    }
}

/// The error for a file that cannot be used as data: which file, and why.
pub fn data(path: &Path, reason: impl Into<String>) -> Error {
    Error::Data {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

/// Runs `f`, turning a panic into [`Error::Panic`] with the panic's message.
pub fn catch_panic<T>(f: impl FnOnce() -> Result<T, Error>) -> Result<T, Error> {
    catch_unwind(AssertUnwindSafe(f))
        .unwrap_or_else(|payload| Err(Error::Panic(panic_message(&*payload))))
}

/// Runs native work with the GIL released (other Python threads keep running) and with
/// panics caught. Every `#[pyfunction]` that does real work goes through here.
pub fn detached<T, F>(py: Python<'_>, f: F) -> PyResult<T>
where
    T: Send,
    F: FnOnce() -> Result<T, Error> + Send,
{
    py.detach(|| catch_panic(f)).map_err(PyErr::from)
}

/// Runs native work over borrowed numpy buffers with the GIL held (no Python thread can
/// write them meanwhile) and panics caught: for single passes over large read-only inputs,
/// where copying them out first (what [`detached`] needs) would cost more than the work.
pub fn attached<T>(f: impl FnOnce() -> Result<T, Error>) -> PyResult<T> {
    catch_panic(f).map_err(PyErr::from)
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ok_and_err_pass_through() {
        assert_eq!(catch_panic(|| Ok::<_, Error>(3)), Ok(3));
        let err = Error::InvalidArgument("bad".into());
        assert_eq!(catch_panic(|| Err::<(), _>(err.clone())), Err(err));
    }

    #[test]
    fn str_and_string_panics_become_errors() {
        let r: Result<(), Error> = catch_panic(|| panic!("static message"));
        assert_eq!(r, Err(Error::Panic("static message".into())));
        let n = 7;
        let r: Result<(), Error> = catch_panic(|| panic!("formatted {n}"));
        assert_eq!(r, Err(Error::Panic("formatted 7".into())));
    }

    #[test]
    fn non_string_payload_is_described() {
        let r: Result<(), Error> = catch_panic(|| std::panic::panic_any(42_u32));
        assert_eq!(
            r,
            Err(Error::Panic("panic with a non-string payload".into()))
        );
    }

    #[test]
    fn panic_display_asks_for_a_report() {
        let text = Error::Panic("x".into()).to_string();
        assert!(text.contains("please report"), "{text}");
    }
}
