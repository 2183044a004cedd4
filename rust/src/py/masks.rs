//! The corruption engine's native fast paths (`crate::masks`) for `qgfast.corrupt`.
use numpy::ndarray::{Array2, ArrayD, IxDyn};
use numpy::{
    IntoPyArray, PyArray2, PyArrayDyn, PyReadonlyArray1, PyReadonlyArray2, PyReadonlyArrayDyn,
    PyUntypedArrayMethods,
};
use pyo3::prelude::*;

use super::{borrowed, copied_values, to_array};
use crate::errors::{attached, detached, Error};
use crate::masks::fill::{self, Batch, Quadric};
use crate::masks::{
    approx, blobs, components, counter_rng, counts, elastic, gaussian, morph, normals, remap,
};

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

/// `counter_below(seed, stream, samples, counters, p) -> uint8 [samples × counters]`: 1
/// where `qgfast.corrupt.rng.uniform` of the pair is below `p` (Bernoulli draws).
#[pyfunction]
pub fn counter_below<'py>(
    py: Python<'py>,
    seed: u32,
    stream: i64,
    samples: PyReadonlyArray1<'py, i64>,
    counters: PyReadonlyArray1<'py, i64>,
    p: f64,
) -> PyResult<Bound<'py, PyAny>> {
    let samples: Vec<i64> = samples.as_array().to_vec();
    let counters: Vec<i64> = counters.as_array().to_vec();
    let shape = [samples.len(), counters.len()];
    let values = detached(py, move || {
        Ok(counter_rng::below(seed, stream, &samples, &counters, p))
    })?;
    to_array(py, "counter_below", &shape, values)
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

/// `gaussian_filter_f32(values, taps) -> float32 [N, *S]`: `values` [N, *S] filtered along
/// every spatial axis with the odd symmetric `taps`, reflect-101 borders (the edge value
/// repeated on an axis no longer than half the kernel); `qgfast.corrupt.smooth`'s
/// reference to float32 rounding.
#[pyfunction]
pub fn gaussian_filter_f32<'py>(
    py: Python<'py>,
    values: PyReadonlyArrayDyn<'py, f32>,
    taps: PyReadonlyArray1<'py, f32>,
) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    let shape = values.shape().to_vec();
    let mut data = copied_values(&values);
    let taps: Vec<f32> = taps.as_array().to_vec();
    let out_shape = shape.clone();
    let data = detached(py, move || {
        gaussian::filter(&mut data, &shape, &taps)?;
        Ok(data)
    })?;
    let array = ArrayD::from_shape_vec(IxDyn(&out_shape), data)
        .map_err(|e| Error::InvalidArgument(format!("gaussian_filter_f32: {e}")))?;
    Ok(array.into_pyarray(py))
}

/// `axis_profiles_u8(masks) -> [int64 [B, S_a] per axis]`: per sample the foreground
/// (nonzero) count at every coordinate of every axis of the masks [B, *S].
#[pyfunction]
pub fn axis_profiles_u8<'py>(
    py: Python<'py>,
    masks: PyReadonlyArrayDyn<'py, u8>,
) -> PyResult<Vec<Bound<'py, PyAny>>> {
    let shape = masks.shape().to_vec();
    let data = borrowed(&masks);
    let profiles = attached(|| {
        let batch = Batch { shape: &shape };
        batch.check(data.len(), "axis_profiles_u8")?;
        Ok(fill::profiles(&data, batch))
    })?;
    profiles
        .into_iter()
        .zip(&shape[1..])
        .map(|(p, &size)| to_array(py, "axis_profiles_u8", &[shape[0], size], p))
        .collect()
}

/// `cross_moments_u8(masks) -> int64 [B, pairs]`: Σ x_i·x_j over each sample's foreground
/// for the axis pairs (0, 1), (0, 2), (1, 2) that exist.
#[pyfunction]
pub fn cross_moments_u8<'py>(
    py: Python<'py>,
    masks: PyReadonlyArrayDyn<'py, u8>,
) -> PyResult<Bound<'py, PyAny>> {
    let shape = masks.shape().to_vec();
    let data = borrowed(&masks);
    let sums = attached(|| {
        let batch = Batch { shape: &shape };
        batch.check(data.len(), "cross_moments_u8")?;
        Ok(fill::cross_moments(&data, batch))
    })?;
    let nd = shape.len() - 1;
    to_array(py, "cross_moments_u8", &[shape[0], nd * (nd - 1) / 2], sums)
}

/// `quadric_fill_u8(shape, mean, coef, limit, active) -> uint8 [B, *S]`: 1 where, with
/// d = x − mean[b], Σ_i (coef_ii·d_i)·d_i + Σ_{i<j} (coef_ij·d_i)·d_j ≤ limit[b] (summed in
/// that order) in the samples flagged active (`qgfast.corrupt.approx.fitted_ellipse`,
/// `.shapes.circular_blob`).
#[pyfunction]
pub fn quadric_fill_u8<'py>(
    py: Python<'py>,
    shape: Vec<usize>,
    mean: PyReadonlyArray2<'py, f64>,
    coef: PyReadonlyArrayDyn<'py, f64>,
    limit: PyReadonlyArray1<'py, f64>,
    active: PyReadonlyArray1<'py, bool>,
) -> PyResult<Bound<'py, PyAny>> {
    let mean: Vec<f64> = mean.as_array().iter().copied().collect();
    let coef = copied_values(&coef);
    let limit: Vec<f64> = limit.as_array().to_vec();
    let active: Vec<bool> = active.as_array().to_vec();
    let probe = shape.clone();
    let out = detached(py, move || {
        let batch = Batch { shape: &probe };
        batch.check(probe.iter().product(), "quadric_fill_u8")?;
        let form = Quadric {
            mean: &mean,
            coef: &coef,
            limit: &limit,
            active: &active,
        };
        fill::quadric_fill(batch, &form)
    })?;
    to_array(py, "quadric_fill_u8", &shape, out)
}

/// `smallest_spread_u8(shape, mean, spread, count) -> uint8 [B, *S]`: per sample the
/// count[b] voxels of smallest Σ_a ((x_a − mean_a) / spread_a)², ties at the cut to the
/// lower indices (`qgfast.corrupt.shapes.gaussian_blob`).
#[pyfunction]
pub fn smallest_spread_u8<'py>(
    py: Python<'py>,
    shape: Vec<usize>,
    mean: PyReadonlyArray2<'py, f64>,
    spread: PyReadonlyArray2<'py, f64>,
    count: PyReadonlyArray1<'py, i64>,
) -> PyResult<Bound<'py, PyAny>> {
    let mean: Vec<f64> = mean.as_array().iter().copied().collect();
    let spread: Vec<f64> = spread.as_array().iter().copied().collect();
    let count: Vec<i64> = count.as_array().to_vec();
    let probe = shape.clone();
    let out = detached(py, move || {
        let batch = Batch { shape: &probe };
        batch.check(probe.iter().product(), "smallest_spread_u8")?;
        fill::smallest_spread(batch, &mean, &spread, &count)
    })?;
    to_array(py, "smallest_spread_u8", &shape, out)
}

/// `kth_candidates_u8(masks, hole, u) -> (int64 [B, n], int64 [B])`: per sample and blob
/// the linear index of candidate min(⌊u·total⌋, total − 1) in C order (candidates: the
/// foreground when `hole`, else the background), and each sample's candidate total
/// (`qgfast.corrupt.blobs.blob_parameters`).
#[pyfunction]
pub fn kth_candidates_u8<'py>(
    py: Python<'py>,
    masks: PyReadonlyArrayDyn<'py, u8>,
    hole: bool,
    u: PyReadonlyArray2<'py, f64>,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    let shape = masks.shape().to_vec();
    let data = borrowed(&masks);
    let n = u.shape()[1];
    let u: Vec<f64> = u.as_array().iter().copied().collect();
    let (linear, totals) =
        attached(|| blobs::kth_candidates(&data, Batch { shape: &shape }, hole, &u))?;
    Ok((
        to_array(py, "kth_candidates_u8", &[shape[0], n], linear)?,
        to_array(py, "kth_candidates_u8", &[shape[0]], totals)?,
    ))
}

/// `paint_blobs_u8(masks, centres, axes, fill) -> uint8 [B, *S]`: a copy of the masks
/// [B, *S] with the blobs (centres and integer semi-axes [B, n, nd], first axis < 0: none)
/// set to `fill` (`qgfast.reference.blobs.paint_blobs`).
#[pyfunction]
pub fn paint_blobs_u8<'py>(
    py: Python<'py>,
    masks: PyReadonlyArrayDyn<'py, u8>,
    centres: PyReadonlyArrayDyn<'py, i64>,
    axes: PyReadonlyArrayDyn<'py, i64>,
    fill: u8,
) -> PyResult<Bound<'py, PyAny>> {
    let shape = masks.shape().to_vec();
    let mut data = copied_values(&masks);
    let (centres, axes) = (copied_values(&centres), copied_values(&axes));
    let probe = shape.clone();
    let out = detached(py, move || {
        blobs::paint(&mut data, Batch { shape: &probe }, &centres, &axes, fill)?;
        Ok(data)
    })?;
    to_array(py, "paint_blobs_u8", &shape, out)
}

/// `select_components_u8(masks, u=None) -> uint8 [B, *S]`: per sample of the masks
/// [B, *S] the largest face-connected component (`u` None; ties: the largest label), or all
/// but the ⌊u[b]·count⌋-th component in ascending label order when there are two or more
/// (`qgfast.corrupt.components`).
#[pyfunction]
#[pyo3(signature = (masks, u=None))]
pub fn select_components_u8<'py>(
    py: Python<'py>,
    masks: PyReadonlyArrayDyn<'py, u8>,
    u: Option<PyReadonlyArray1<'py, f64>>,
) -> PyResult<Bound<'py, PyAny>> {
    let shape = masks.shape().to_vec();
    let data = borrowed(&masks);
    let selection = match u {
        None => components::Selection::Largest,
        Some(u) => components::Selection::DropOne(u.as_array().to_vec()),
    };
    let out = attached(|| components::select(&data, &shape, &selection))?;
    to_array(py, "select_components_u8", &shape, out)
}

/// `counter_normals(seed, stream, samples, count) -> float32 [samples × count]`: the
/// standard normals of `qgfast.corrupt.warp._normal` (Box–Muller over the counter-based
/// uniforms, cosines then sines), to float32 rounding.
#[pyfunction]
pub fn counter_normals<'py>(
    py: Python<'py>,
    seed: u32,
    stream: i64,
    samples: PyReadonlyArray1<'py, i64>,
    count: usize,
) -> PyResult<Bound<'py, PyAny>> {
    let samples: Vec<i64> = samples.as_array().to_vec();
    let rows = samples.len();
    let values = detached(py, move || {
        Ok(normals::normals(seed, stream, &samples, count))
    })?;
    to_array(py, "counter_normals", &[rows, count], values)
}

/// `label_counts_u8(pred, target, repeats, classes) -> int64 [3, B, C]`: I = |p = c ∧ t = c|,
/// P = |p = c| and G = |t = c| per prediction and class of the uint8 label maps pred [B, N]
/// and target [B / repeats, N] (`qgfast.losses._stats._count_labels`).
#[pyfunction]
pub fn label_counts_u8<'py>(
    py: Python<'py>,
    pred: PyReadonlyArrayDyn<'py, u8>,
    target: PyReadonlyArrayDyn<'py, u8>,
    repeats: usize,
    classes: Vec<u8>,
) -> PyResult<Bound<'py, PyAny>> {
    let (ps, ts) = (pred.shape().to_vec(), target.shape().to_vec());
    if ps.len() != 2 || ts.len() != 2 || ps[1] != ts[1] {
        return Err(Error::InvalidArgument(format!(
            "label_counts_u8: pred {ps:?} and target {ts:?} must be [B, N] and [B / repeats, N]"
        ))
        .into());
    }
    let voxels = ps[1];
    let b = pred.shape()[0];
    let (pred, target) = (borrowed(&pred), borrowed(&target));
    let c = classes.len();
    let out = attached(|| counts::label_counts(&pred, &target, voxels, repeats, &classes))?;
    to_array(py, "label_counts_u8", &[3, b, c], out)
}

/// `gather_separable_u8(masks, sources) -> uint8 [B, *S]`: output[b, x] = masks[b, i_0, …]
/// with `sources[a]` the int64 [B, S_a] source index along axis a (< 0: outside, the voxel
/// 0); the separable case of `qgfast.corrupt.geometry.gather_nearest`.
#[pyfunction]
pub fn gather_separable_u8<'py>(
    py: Python<'py>,
    masks: PyReadonlyArrayDyn<'py, u8>,
    sources: Vec<PyReadonlyArray2<'py, i64>>,
) -> PyResult<Bound<'py, PyAny>> {
    let shape = masks.shape().to_vec();
    let data = borrowed(&masks);
    let sources: Vec<Vec<i64>> = sources
        .iter()
        .map(|s| s.as_array().iter().copied().collect())
        .collect();
    let out = attached(|| remap::gather_separable(&data, &shape, &sources))?;
    to_array(py, "gather_separable_u8", &shape, out)
}

/// `morph_cube_u8(masks, radius, erode) -> uint8 [B, *S]`: the erosion (a voxel keeps its
/// label where its whole cube of side 2·radius + 1 holds it, outside = 0) or dilation (a
/// background voxel takes the largest label in its cube) of the label maps [B, *S]
/// (`qgfast.corrupt.morphology`, cube footprints).
#[pyfunction]
pub fn morph_cube_u8<'py>(
    py: Python<'py>,
    masks: PyReadonlyArrayDyn<'py, u8>,
    radius: usize,
    erode: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let shape = masks.shape().to_vec();
    let data = borrowed(&masks);
    let out = attached(|| morph::cube(&data, Batch { shape: &shape }, radius, erode))?;
    to_array(py, "morph_cube_u8", &shape, out)
}

/// `elastic_u8(masks, alpha, taps, seed, stream, samples) -> uint8 [B, *S]`: the masks
/// [B, *S] remapped through x + d(x), d = the float32 α·N(0, 1) noise of
/// `qgfast.corrupt.warp._normal` (per sample key) smoothed with `taps` along every axis
/// (`qgfast.corrupt.warp.elastic`'s CPU fast path, in one call).
#[pyfunction]
pub fn elastic_u8<'py>(
    py: Python<'py>,
    masks: PyReadonlyArrayDyn<'py, u8>,
    alpha: f32,
    taps: PyReadonlyArray1<'py, f32>,
    seed: u32,
    stream: i64,
    samples: PyReadonlyArray1<'py, i64>,
) -> PyResult<Bound<'py, PyAny>> {
    let shape = masks.shape().to_vec();
    let data = copied_values(&masks);
    let taps: Vec<f32> = taps.as_array().to_vec();
    let samples: Vec<i64> = samples.as_array().to_vec();
    let probe = shape.clone();
    let out = detached(py, move || {
        elastic::elastic(&data, &probe, alpha, &taps, seed, stream, &samples)
    })?;
    to_array(py, "elastic_u8", &shape, out)
}

/// `smooth_threshold_u8(masks, taps) -> uint8 [B, *S]`: each sample's foreground (nonzero)
/// as 0/1 float32, filtered with the odd symmetric `taps` (as `gaussian_filter_f32`), kept
/// where above 0.5 (`qgfast.corrupt.smooth.gaussian_smooth`'s CPU fast path).
#[pyfunction]
pub fn smooth_threshold_u8<'py>(
    py: Python<'py>,
    masks: PyReadonlyArrayDyn<'py, u8>,
    taps: PyReadonlyArray1<'py, f32>,
) -> PyResult<Bound<'py, PyAny>> {
    let shape = masks.shape().to_vec();
    let data = copied_values(&masks);
    let taps: Vec<f32> = taps.as_array().to_vec();
    let probe = shape.clone();
    let out = detached(py, move || gaussian::smooth_threshold(&data, &probe, &taps))?;
    to_array(py, "smooth_threshold_u8", &shape, out)
}
