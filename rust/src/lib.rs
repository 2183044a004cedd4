//! `qgfast._native`: the Rust core behind qgfast. Public Python names live in the pure
//! Python package (`qgfast.data`, `qgfast.info`), which re-exports what it needs from here.
//!
//! Boundary rules: every function that does work runs through [`errors::detached`] (GIL
//! released, panics caught), and every failure reaches Python as an exception.
use numpy::ndarray::{ArrayD, IxDyn};
use numpy::{IntoPyArray, PyArrayDyn, PyReadonlyArrayDyn};
use pyo3::prelude::*;
use pyo3::types::PyDict;

mod build;
pub mod components;
pub mod errors;

use errors::{detached, Error, NativeError};

/// `build_info(key=None)`: all build facts as a dict, or the one named by `key`.
#[pyfunction]
#[pyo3(signature = (key=None))]
fn build_info<'py>(py: Python<'py>, key: Option<&str>) -> PyResult<Bound<'py, PyAny>> {
    match key {
        Some(key) => Ok(build::lookup(key)?.into_pyobject(py)?.into_any()),
        None => {
            let dict = PyDict::new(py);
            for (k, v) in build::facts() {
                dict.set_item(k, v)?;
            }
            Ok(dict.into_any())
        }
    }
}

/// Test hook for the boundary: `kind="error"` returns an error, `kind="panic"` panics in
/// a detached native call; both must come back as ordinary Python exceptions.
#[pyfunction]
fn _selftest_fail(py: Python<'_>, kind: String) -> PyResult<()> {
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

/// `label_components(mask) -> (labels, count)`: face-connected components of a uint8 array
/// of any rank (nonzero = foreground); labels int64, consecutive from 1.
#[pyfunction]
fn label_components<'py>(
    py: Python<'py>,
    mask: PyReadonlyArrayDyn<'py, u8>,
) -> PyResult<(Bound<'py, PyArrayDyn<i64>>, usize)> {
    let view = mask.as_array();
    let shape = view.shape().to_vec();
    let data: Vec<u8> = view.iter().copied().collect(); // logical C order, any strides
    let (labels, count, shape) = detached(py, move || {
        let (labels, count) = components::label(&data, &shape)?;
        Ok((labels, count, shape))
    })?;
    let array = ArrayD::from_shape_vec(IxDyn(&shape), labels)
        .map_err(|e| Error::InvalidArgument(format!("label_components: {e}")))?;
    Ok((array.into_pyarray(py), count))
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("NativeError", m.py().get_type::<NativeError>())?;
    m.add_function(wrap_pyfunction!(build_info, m)?)?;
    m.add_function(wrap_pyfunction!(_selftest_fail, m)?)?;
    m.add_function(wrap_pyfunction!(label_components, m)?)?;
    Ok(())
}
