//! The corruption engine's native fast paths (`crate::masks`) for `qgfast.corrupt`.
use numpy::ndarray::{Array2, ArrayD, IxDyn};
use numpy::{
    IntoPyArray, PyArray2, PyArrayDyn, PyReadonlyArray1, PyReadonlyArrayDyn, PyUntypedArrayMethods,
};
use pyo3::prelude::*;

use super::copied_values;
use crate::errors::{detached, Error};
use crate::masks::{approx, components, counter_rng, remap};

/// `label_components(mask) -> (labels, count)`: face-connected components of a uint8 array
/// of any rank (nonzero = foreground); int64 labels, a component's being its largest C-order
/// voxel index + 1 (`masks::components`).
#[pyfunction]
pub fn label_components<'py>(
    py: Python<'py>,
    mask: PyReadonlyArrayDyn<'py, u8>,
) -> PyResult<(Bound<'py, PyArrayDyn<i64>>, usize)> {
    let shape = mask.shape().to_vec();
    let data = copied_values(&mask);
    let (labels, count, shape) = detached(py, move || {
        let (labels, count) = components::label(&data, &shape)?;
        Ok((labels, count, shape))
    })?;
    let array = ArrayD::from_shape_vec(IxDyn(&shape), labels)
        .map_err(|e| Error::InvalidArgument(format!("label_components: {e}")))?;
    Ok((array.into_pyarray(py), count))
}

/// `counter_uniforms(seed, stream, samples, counters) -> float64 [samples × counters]`: the
/// uniforms of `qgfast.corrupt.rng.uniform` (seed's low 32 bits; int64 ids and counters).
#[pyfunction]
pub fn counter_uniforms<'py>(
    py: Python<'py>,
    seed: u32,
    stream: i64,
    samples: PyReadonlyArray1<'py, i64>,
    counters: PyReadonlyArray1<'py, i64>,
) -> PyResult<Bound<'py, PyArray2<f64>>> {
    // 1-D views iterate at memory speed (a dynamic-rank iterator costs ~10 ns an element)
    let samples: Vec<i64> = samples.as_array().to_vec();
    let counters: Vec<i64> = counters.as_array().to_vec();
    let shape = (samples.len(), counters.len());
    let values = detached(py, move || {
        Ok(counter_rng::uniforms(seed, stream, &samples, &counters))
    })?;
    let array = Array2::from_shape_vec(shape, values)
        .map_err(|e| Error::InvalidArgument(format!("counter_uniforms: {e}")))?;
    Ok(array.into_pyarray(py))
}

/// `gather_nearest_u8(masks, axes) -> uint8 [B, *S]`: the nearest remap of
/// `qgfast.corrupt.geometry.gather_nearest` for uint8 masks [B, *S]; `axes[a]` lists the
/// float64/float32 terms (each broadcastable to [B, *S]) summed into axis a's source.
#[pyfunction]
pub fn gather_nearest_u8<'py>(
    py: Python<'py>,
    masks: PyReadonlyArrayDyn<'py, u8>,
    axes: Vec<Vec<Bound<'py, PyAny>>>,
) -> PyResult<Bound<'py, PyArrayDyn<u8>>> {
    let shape = masks.shape().to_vec();
    let data = copied_values(&masks);
    let mut terms = Vec::with_capacity(axes.len());
    for axis in &axes {
        let mut list = Vec::with_capacity(axis.len());
        for term in axis {
            let (values, shape) = if let Ok(a) = term.extract::<PyReadonlyArrayDyn<'py, f64>>() {
                (remap::Values::F64(copied_values(&a)), a.shape().to_vec())
            } else if let Ok(a) = term.extract::<PyReadonlyArrayDyn<'py, f32>>() {
                (remap::Values::F32(copied_values(&a)), a.shape().to_vec())
            } else {
                return Err(Error::InvalidArgument(
                    "gather_nearest_u8: every term must be a float64 or float32 array".into(),
                )
                .into());
            };
            list.push(remap::Term { values, shape });
        }
        terms.push(list);
    }
    let out_shape = shape.clone();
    let out = detached(py, move || remap::gather_nearest(&data, &shape, &terms))?;
    let array = ArrayD::from_shape_vec(IxDyn(&out_shape), out)
        .map_err(|e| Error::InvalidArgument(format!("gather_nearest_u8: {e}")))?;
    Ok(array.into_pyarray(py))
}

/// `shape_fill_u8(masks, rays=None, cos_half=0.0) -> uint8 [B, H, W]`: each non-empty
/// sample of the 2D masks [B, H, W] (non-zero = foreground) replaced by its filled convex
/// hull (`rays` None) or star polygon (`rays` = the (cos, sin) of each ray, `cos_half` the
/// cosine of half a sector); `qgfast.corrupt.approx`'s reference, bit for bit.
#[pyfunction]
#[pyo3(signature = (masks, rays=None, cos_half=0.0))]
pub fn shape_fill_u8<'py>(
    py: Python<'py>,
    masks: PyReadonlyArrayDyn<'py, u8>,
    rays: Option<Vec<[f64; 2]>>,
    cos_half: f64,
) -> PyResult<Bound<'py, PyArrayDyn<u8>>> {
    let shape = masks.shape().to_vec();
    let [b, h, w] = shape[..] else {
        return Err(Error::InvalidArgument(format!(
            "shape_fill_u8: masks must be [B, H, W], got shape {shape:?}"
        ))
        .into());
    };
    if rays.as_ref().is_some_and(|r| r.is_empty()) {
        return Err(Error::InvalidArgument("shape_fill_u8: rays is empty".into()).into());
    }
    let data = copied_values(&masks);
    let out = detached(py, move || {
        let kind = match &rays {
            None => approx::Shape::Hull,
            Some(rays) => approx::Shape::Star { rays, cos_half },
        };
        Ok(approx::batch(&data, [b, h, w], &kind))
    })?;
    let array = ArrayD::from_shape_vec(IxDyn(&shape), out)
        .map_err(|e| Error::InvalidArgument(format!("shape_fill_u8: {e}")))?;
    Ok(array.into_pyarray(py))
}
