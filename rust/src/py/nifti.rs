//! NIfTI reads for `qgfast.data.read_nifti` and the statistics files of `convert`.
use pyo3::prelude::*;
use pyo3::types::{PyAny, PyDict};

use super::to_array;
use crate::errors::{data, detached, Error};
use crate::io::nifti;
use crate::volume::{write_stats, Role};

fn header_dict<'py>(py: Python<'py>, h: &nifti::Header) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("version", h.version)?;
    d.set_item("big_endian", h.big_endian)?;
    d.set_item("shape", h.shape.clone())?;
    d.set_item("dtype", h.dtype.name())?;
    d.set_item("vox_offset", h.vox_offset)?;
    d.set_item("pixdim", h.pixdim.to_vec())?;
    d.set_item("scl_slope", h.scl_slope)?;
    d.set_item("scl_inter", h.scl_inter)?;
    d.set_item("qform_code", h.qform_code)?;
    d.set_item("sform_code", h.sform_code)?;
    d.set_item("quatern", h.quatern.to_vec())?;
    d.set_item("qoffset", h.qoffset.to_vec())?;
    d.set_item(
        "srow",
        h.srow.iter().map(|r| r.to_vec()).collect::<Vec<_>>(),
    )?;
    d.set_item("xyzt_units", h.xyzt_units)?;
    d.set_item("intent_code", h.intent_code)?;
    d.set_item("descrip", h.descrip.clone())?;
    Ok(d)
}

/// `nifti_header(path) -> dict`: the header fields, reading only the header.
#[pyfunction]
pub fn nifti_header<'py>(
    py: Python<'py>,
    path: std::path::PathBuf,
) -> PyResult<Bound<'py, PyDict>> {
    let header = detached(py, move || nifti::read_header(&path))?;
    header_dict(py, &header)
}

/// The voxels nibabel returns: float64 when the header scales (and not `raw`), else None
/// (the caller views the raw words as the on-disk type).
fn scale(vol: &nifti::Volume, raw: bool) -> Result<Option<Vec<f64>>, Error> {
    if raw {
        return Ok(None);
    }
    let scaling = vol.header.scaling().map_err(Error::InvalidArgument)?;
    Ok(scaling.map(|s| vol.scaled_values(s)))
}

/// `read_nifti(path, raw=False, max_bytes) -> (header dict, buffer, byte offset)`: the
/// voxels are `buffer.view(uint8)[offset : offset + nbytes]` viewed as the header's dtype
/// (no copy; `buffer` is uint64 words), in C order of the reversed NIfTI shape — or, when
/// the header scales and not `raw`, `buffer` is the float64 voxels and offset 0.
/// Bad files raise `NativeDataError(path, reason)`.
#[pyfunction]
#[pyo3(signature = (path, raw=false, max_bytes=usize::MAX))]
pub fn read_nifti<'py>(
    py: Python<'py>,
    path: std::path::PathBuf,
    raw: bool,
    max_bytes: usize,
) -> PyResult<(Bound<'py, PyDict>, Bound<'py, PyAny>, usize)> {
    let (vol, scaled) = detached(py, move || {
        let vol = nifti::read(&path, max_bytes)?;
        let scaled = scale(&vol, raw).map_err(|e| data(&path, e.to_string()))?;
        Ok((vol, scaled))
    })?;
    let header = header_dict(py, &vol.header)?;
    Ok(match scaled {
        Some(values) => {
            let n = values.len();
            (header, to_array(py, "read_nifti", &[n], values)?, 0)
        }
        None => {
            let n = vol.words.len();
            (
                header,
                to_array(py, "read_nifti", &[n], vol.words)?,
                vol.start,
            )
        }
    })
}

/// `write_volume_stats(path, role, max_bytes)`: the statistics file of the uncompressed
/// NIfTI `path` as an "image" or a "label" (`volume_stats`), written beside it; its path.
/// A stream then crops that file reading only each patch's bytes.
#[pyfunction]
#[pyo3(signature = (path, role, max_bytes=usize::MAX))]
pub fn write_volume_stats(
    py: Python<'_>,
    path: std::path::PathBuf,
    role: &str,
    max_bytes: usize,
) -> PyResult<std::path::PathBuf> {
    let role = match role {
        "image" => Role::Image,
        "label" => Role::Label,
        other => {
            let msg = format!("role must be \"image\" or \"label\", got {other:?}");
            return Err(Error::InvalidArgument(msg).into());
        }
    };
    detached(py, move || write_stats(&path, role, max_bytes))
}
