//! `qgfast._native`: the Rust core behind qgfast. Public Python names live in the pure
//! Python package (`qgfast.data`, `qgfast.corrupt`, `qgfast.info`), which re-exports what
//! it needs from here. See docs/architecture.md for the layers:
//!
//! ```text
//! py        the bindings, one file per domain
//! stream    config, draws, plan, cache, render, epoch: the streaming engine
//! volume    decoded volumes: normalisation, crops, labels, block reads, statistics files
//! augment   rotation and colour: per-sample kernels
//! io        nifti, image2d (jpeg, resize), buffer: bytes in, voxels out
//! masks     the corruption engine's fast paths (stand alone)
//! errors    the error type and the boundary guard; build_info: how this was built
//! ```
//! Each layer uses only those below it (`tests/test_rust_layout.py` checks).
//!
//! Boundary rules: every function that does work runs through [`errors::detached`] (GIL
//! released, panics caught) or, for a single quick pass over a large read-only numpy
//! buffer it borrows, [`errors::attached`] (GIL held, panics caught); every failure reaches
//! Python as an exception.
use pyo3::prelude::*;

mod augment;
mod build_info;
mod errors;
mod io;
mod masks;
mod py;
mod stream;
mod volume;

use errors::{NativeDataError, NativeError};

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("NativeError", m.py().get_type::<NativeError>())?;
    m.add("NativeDataError", m.py().get_type::<NativeDataError>())?;
    m.add_function(wrap_pyfunction!(py::nifti::nifti_header, m)?)?;
    m.add_function(wrap_pyfunction!(py::nifti::read_nifti, m)?)?;
    m.add_function(wrap_pyfunction!(py::nifti::write_volume_stats, m)?)?;
    m.add_class::<py::stream::StreamConfig>()?;
    m.add_class::<py::stream::VolumeStreamCore>()?;
    m.add_class::<py::stream::EpochIterator>()?;
    m.add_class::<py::stream::BatchBuffer>()?;
    m.add_function(wrap_pyfunction!(py::info::build_info, m)?)?;
    m.add_function(wrap_pyfunction!(py::info::_selftest_fail, m)?)?;
    m.add_function(wrap_pyfunction!(py::masks::label_components, m)?)?;
    m.add_function(wrap_pyfunction!(py::masks::counter_uniforms, m)?)?;
    m.add_function(wrap_pyfunction!(py::masks::counter_below, m)?)?;
    m.add_function(wrap_pyfunction!(py::masks::gather_nearest_u8, m)?)?;
    m.add_function(wrap_pyfunction!(py::masks::gather_separable_u8, m)?)?;
    m.add_function(wrap_pyfunction!(py::masks::shape_fill_u8, m)?)?;
    m.add_function(wrap_pyfunction!(py::masks::gaussian_filter_f32, m)?)?;
    m.add_function(wrap_pyfunction!(py::masks::axis_profiles_u8, m)?)?;
    m.add_function(wrap_pyfunction!(py::masks::cross_moments_u8, m)?)?;
    m.add_function(wrap_pyfunction!(py::masks::quadric_fill_u8, m)?)?;
    m.add_function(wrap_pyfunction!(py::masks::smallest_spread_u8, m)?)?;
    m.add_function(wrap_pyfunction!(py::masks::kth_candidates_u8, m)?)?;
    m.add_function(wrap_pyfunction!(py::masks::paint_blobs_u8, m)?)?;
    m.add_function(wrap_pyfunction!(py::masks::select_components_u8, m)?)?;
    m.add_function(wrap_pyfunction!(py::masks::counter_normals, m)?)?;
    m.add_function(wrap_pyfunction!(py::masks::label_counts_u8, m)?)?;
    m.add_function(wrap_pyfunction!(py::masks::morph_cube_u8, m)?)?;
    m.add_function(wrap_pyfunction!(py::masks::elastic_u8, m)?)?;
    m.add_function(wrap_pyfunction!(py::masks::smooth_threshold_u8, m)?)?;
    Ok(())
}
