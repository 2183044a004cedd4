//! `build_info` and the boundary's self-test.
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::build_info as facts;
use crate::errors::{detached, Error};

/// `build_info(key=None)`: all build facts as a dict, or the one named by `key`.
#[pyfunction]
#[pyo3(signature = (key=None))]
pub fn build_info<'py>(py: Python<'py>, key: Option<&str>) -> PyResult<Bound<'py, PyAny>> {
    match key {
        Some(key) => Ok(facts::lookup(key)?.into_pyobject(py)?.into_any()),
        None => {
            let dict = PyDict::new(py);
            for (k, v) in facts::facts() {
                dict.set_item(k, v)?;
            }
            Ok(dict.into_any())
        }
    }
}

/// Test hook for the boundary: `kind="error"` returns an error, `kind="panic"` panics in
/// a detached native call; both must come back as ordinary Python exceptions.
#[pyfunction]
pub fn _selftest_fail(py: Python<'_>, kind: String) -> PyResult<()> {
    detached(py, move || match kind.as_str() {
        "error" => Err(Error::InvalidArgument(
            "_selftest_fail: deliberate error".into(),
        )),
        "panic" => panic!("_selftest_fail: deliberate panic"),
        other => Err(Error::InvalidArgument(format!(
            "_selftest_fail: kind must be 'error' or 'panic', got {other:?}"
        ))),
    })
}
