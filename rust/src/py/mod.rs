//! The Python bindings: one file per domain (`info`, `nifti`, `masks`, `stream`), each
//! converting arguments, running the work through `errors::detached` (GIL released, panics
//! caught) and converting results. No work of their own beyond that.
use std::borrow::Cow;

use numpy::ndarray::{ArrayD, IxDyn};
use numpy::{IntoPyArray, PyReadonlyArrayDyn};
use pyo3::prelude::*;

use crate::errors::Error;

pub mod info;
pub mod masks;
pub mod nifti;
pub mod stream;

/// A numpy array's values in C order (a copy: the GIL is released while they are read).
fn copied_values<T: numpy::Element + Copy>(a: &PyReadonlyArrayDyn<'_, T>) -> Vec<T> {
    match a.as_slice() {
        Ok(slice) => slice.to_vec(),
        Err(_) => a.as_array().iter().copied().collect(),
    }
}

/// A numpy array's values in C order, borrowed where it is contiguous (read them with the
/// GIL held: `errors::attached`), else copied.
fn borrowed<'a, T: numpy::Element + Copy>(a: &'a PyReadonlyArrayDyn<'_, T>) -> Cow<'a, [T]> {
    match a.as_slice() {
        Ok(slice) => Cow::Borrowed(slice),
        Err(_) => Cow::Owned(a.as_array().iter().copied().collect()),
    }
}

/// `values` as a new numpy array of `shape` (`what` names the caller in the error).
fn to_array<'py, T: numpy::Element>(
    py: Python<'py>,
    what: &str,
    shape: &[usize],
    values: Vec<T>,
) -> PyResult<Bound<'py, PyAny>> {
    let array = ArrayD::from_shape_vec(IxDyn(shape), values)
        .map_err(|e| Error::InvalidArgument(format!("{what}: {e}")))?;
    Ok(array.into_pyarray(py).into_any())
}
