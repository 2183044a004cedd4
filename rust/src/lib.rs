//! `qgfast._native`: the Rust core behind qgfast. Public Python names live in the pure
//! Python package (`qgfast.data`, `qgfast.info`), which re-exports what it needs from here.
//!
//! Boundary rules: every function that does work runs through [`errors::detached`] (GIL
//! released, panics caught), and every failure reaches Python as an exception.
use numpy::ndarray::{Array2, ArrayD, IxDyn};
use numpy::{
    IntoPyArray, PyArray2, PyArrayDyn, PyReadonlyArray1, PyReadonlyArrayDyn, PyUntypedArrayMethods,
};
use pyo3::prelude::*;
use pyo3::types::PyDict;

pub mod approx;
mod buffer;
mod build;
pub mod components;
pub mod counter_rng;
pub mod errors;
pub mod image2d;
pub mod jpeg;
pub mod nifti;
pub mod remap;
mod resize;
mod rotate;
pub mod stream;
pub mod volume;
mod volume_stats;

use errors::{detached, Error, NativeDataError, NativeError};

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
fn counter_uniforms<'py>(
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

/// A numpy array's values in C order (a copy: the GIL is released while they are read).
fn copied_values<T: numpy::Element + Copy>(a: &PyReadonlyArrayDyn<'_, T>) -> Vec<T> {
    match a.as_slice() {
        Ok(slice) => slice.to_vec(),
        Err(_) => a.as_array().iter().copied().collect(),
    }
}

/// `gather_nearest_u8(masks, axes) -> uint8 [B, *S]`: the nearest remap of
/// `qgfast.corrupt.geometry.gather_nearest` for uint8 masks [B, *S]; `axes[a]` lists the
/// float64/float32 terms (each broadcastable to [B, *S]) summed into axis a's source.
#[pyfunction]
fn gather_nearest_u8<'py>(
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
fn shape_fill_u8<'py>(
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
fn nifti_header<'py>(py: Python<'py>, path: std::path::PathBuf) -> PyResult<Bound<'py, PyDict>> {
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

fn to_array<'py, T: numpy::Element>(
    py: Python<'py>,
    shape: &[usize],
    values: Vec<T>,
) -> PyResult<Bound<'py, PyAny>> {
    let array = ArrayD::from_shape_vec(IxDyn(shape), values)
        .map_err(|e| Error::InvalidArgument(format!("read_nifti: {e}")))?;
    Ok(array.into_pyarray(py).into_any())
}

/// `read_nifti(path, raw=False, max_bytes) -> (header dict, buffer, byte offset)`: the
/// voxels are `buffer.view(uint8)[offset : offset + nbytes]` viewed as the header's dtype
/// (no copy; `buffer` is uint64 words), in C order of the reversed NIfTI shape — or, when
/// the header scales and not `raw`, `buffer` is the float64 voxels and offset 0.
/// Bad files raise `NativeDataError(path, reason)`.
#[pyfunction]
#[pyo3(signature = (path, raw=false, max_bytes=usize::MAX))]
fn read_nifti<'py>(
    py: Python<'py>,
    path: std::path::PathBuf,
    raw: bool,
    max_bytes: usize,
) -> PyResult<(Bound<'py, PyDict>, Bound<'py, PyAny>, usize)> {
    let (vol, scaled) = detached(py, move || {
        let vol = nifti::read(&path, max_bytes)?;
        let scaled = scale(&vol, raw).map_err(|e| nifti::data(&path, e.to_string()))?;
        Ok((vol, scaled))
    })?;
    let header = header_dict(py, &vol.header)?;
    Ok(match scaled {
        Some(values) => {
            let n = values.len();
            (header, to_array(py, &[n], values)?, 0)
        }
        None => {
            let n = vol.words.len();
            (header, to_array(py, &[n], vol.words)?, vol.start)
        }
    })
}

/// `write_volume_stats(path, role, max_bytes)`: the statistics file of the uncompressed
/// NIfTI `path` as an "image" or a "label" (`volume_stats`), written beside it; its path.
/// A stream then crops that file reading only each patch's bytes.
#[pyfunction]
#[pyo3(signature = (path, role, max_bytes=usize::MAX))]
fn write_volume_stats(
    py: Python<'_>,
    path: std::path::PathBuf,
    role: &str,
    max_bytes: usize,
) -> PyResult<std::path::PathBuf> {
    let role = match role {
        "image" => volume_stats::Role::Image,
        "label" => volume_stats::Role::Label,
        other => {
            let msg = format!("role must be \"image\" or \"label\", got {other:?}");
            return Err(Error::InvalidArgument(msg).into());
        }
    };
    detached(py, move || volume_stats::write(&path, role, max_bytes))
}

fn config_item<'py, T: FromPyObjectOwned<'py>>(d: &Bound<'py, PyDict>, key: &str) -> PyResult<T> {
    d.get_item(key)?
        .ok_or_else(|| Error::InvalidArgument(format!("stream config lacks {key:?}")))?
        .extract::<T>()
        .map_err(Into::into)
}

fn stream_config(d: &Bound<'_, PyDict>) -> PyResult<stream::Config> {
    let (kind, a, b): (String, f64, f64) = config_item(d, "norm")?;
    let norm = match kind.as_str() {
        "none" => volume::Norm::None,
        "zscore" => volume::Norm::ZScore { nonzero: false },
        "zscore-nonzero" => volume::Norm::ZScore { nonzero: true },
        "percentile" => volume::Norm::Percentile { lo: a, hi: b },
        "window" => volume::Norm::Window {
            lo: a as f32,
            hi: b as f32,
        },
        other => return Err(Error::InvalidArgument(format!("unknown norm {other:?}")).into()),
    };
    let (post, mean, std): (String, Vec<f32>, Vec<f32>) = config_item(d, "post_norm")?;
    let post_norm = match post.as_str() {
        "none" => stream::PostNorm::None,
        "mean-std" if !mean.is_empty() && mean.len() == std.len() => {
            stream::PostNorm::MeanStd(mean, std)
        }
        "per-image" => stream::PostNorm::PerImage,
        other => return Err(Error::InvalidArgument(format!("bad post_norm {other:?}")).into()),
    };
    let cfg = stream::Config {
        patch: config_item(d, "patch")?,
        labeled_batch: config_item(d, "labeled_batch")?,
        unlabeled_batch: config_item(d, "unlabeled_batch")?,
        samples_per_volume: config_item(d, "samples_per_volume")?,
        foreground_prob: config_item(d, "foreground_prob")?,
        cache_bytes: config_item(d, "cache_bytes")?,
        flip: config_item(d, "flip")?,
        rot90: config_item(d, "rot90")?,
        rotation: config_item(d, "rotation")?,
        rotation_plane: config_item(d, "rotation_plane")?,
        scale: config_item(d, "scale")?,
        shift: config_item(d, "shift")?,
        gamma: config_item(d, "gamma")?,
        noise: config_item(d, "noise")?,
        brightness: config_item(d, "brightness")?,
        contrast: config_item(d, "contrast")?,
        gain: config_item(d, "gain")?,
        norm,
        post_norm,
        seed: config_item(d, "seed")?,
        shard: config_item(d, "shard")?,
        shards: config_item(d, "shards")?,
        threads: config_item(d, "threads")?,
        prefetch: config_item(d, "prefetch")?,
        skip_errors: config_item(d, "skip_errors")?,
        max_bytes: config_item(d, "max_bytes")?,
        jpeg: jpeg::Choice::parse(&config_item::<String>(d, "jpeg_decoder")?)?,
    };
    let plane_ok = |(a, b): (usize, usize)| a < 3 && b < 3 && a != b;
    for (name, plane) in [
        ("rot90", cfg.rot90),
        ("rotation_plane", Some(cfg.rotation_plane)),
    ] {
        if let Some(plane) = plane.filter(|&p| !plane_ok(p)) {
            return Err(Error::InvalidArgument(format!(
                "{name} must be two distinct axes of 0..2, got {plane:?}"
            ))
            .into());
        }
    }
    if cfg.rotation.is_some()
        && rotate::Window::max_window(cfg.patch, cfg.rotation_plane) > u32::MAX as u128
    {
        return Err(Error::InvalidArgument(format!(
            "patch {:?} is too large to rotate (its rotation window would pass 2^32 voxels)",
            cfg.patch
        ))
        .into());
    }
    let ranges = [
        ("rotation", cfg.rotation),
        ("scale", cfg.scale),
        ("shift", cfg.shift),
        ("gamma", cfg.gamma),
        ("brightness", cfg.brightness),
        ("contrast", cfg.contrast),
        ("gain", cfg.gain),
    ];
    for (name, range) in ranges {
        if let Some((lo, hi, _)) = range.filter(|(lo, hi, _)| !(lo.is_finite() && hi.is_finite())) {
            return Err(Error::InvalidArgument(format!(
                "{name} range must be finite, got ({lo}, {hi})"
            ))
            .into());
        }
    }
    Ok(cfg)
}

/// The Rust half of `qgfast.data.VolumeStream`: cases, config and the decoded-volume cache
/// (which outlives epochs). `start(epoch)` runs one epoch on worker threads.
#[pyclass(module = "qgfast._native", frozen)]
struct VolumeStreamCore {
    cfg: stream::Config,
    cases: std::sync::Arc<Vec<stream::Case>>,
    cache: std::sync::Arc<stream::Cache>,
    buffers: std::sync::Arc<stream::Buffers>,
    labeled: Vec<usize>,
    unlabeled: Vec<usize>,
}

#[pymethods]
impl VolumeStreamCore {
    #[new]
    fn new(
        images: Vec<Vec<std::path::PathBuf>>,
        labels: Vec<Option<std::path::PathBuf>>,
        labeled: Vec<usize>,
        unlabeled: Vec<usize>,
        config: &Bound<'_, PyDict>,
    ) -> PyResult<Self> {
        if images.len() != labels.len() {
            return Err(Error::InvalidArgument("images and labels differ in length".into()).into());
        }
        if let Some(&bad) = labeled
            .iter()
            .chain(&unlabeled)
            .find(|&&i| i >= images.len())
        {
            return Err(Error::InvalidArgument(format!("case index {bad} out of range")).into());
        }
        let cases = images
            .into_iter()
            .zip(labels)
            .map(|(images, label)| stream::Case { images, label })
            .collect();
        let cfg = stream_config(config)?;
        Ok(VolumeStreamCore {
            buffers: std::sync::Arc::new(stream::Buffers::new(&cfg)),
            cfg,
            cases: std::sync::Arc::new(cases),
            cache: std::sync::Arc::new(stream::Cache::default()),
            labeled,
            unlabeled,
        })
    }

    fn start(&self, epoch: u64) -> PyResult<EpochIterator> {
        let running = stream::Running::start(
            self.cfg.clone(),
            self.cases.clone(),
            self.cache.clone(),
            self.buffers.clone(),
            &self.labeled,
            &self.unlabeled,
            epoch,
        )?;
        Ok(EpochIterator {
            running: std::sync::Mutex::new(Some(running)),
            buffers: self.buffers.clone(),
        })
    }

    /// {"cache_hits", "cache_misses", "block_reads", "cache_bytes", "skipped": [(case, reason), ...],
    /// "reused_volume_buffers"}
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        use std::sync::atomic::Ordering::Relaxed;
        let d = PyDict::new(py);
        d.set_item("cache_hits", self.cache.hits.load(Relaxed))?;
        d.set_item("cache_misses", self.cache.misses.load(Relaxed))?;
        d.set_item("block_reads", self.cache.block_reads.load(Relaxed))?;
        d.set_item("cache_bytes", self.cache.bytes())?;
        let bad = self.cache.bad.lock().map(|b| b.clone()).unwrap_or_default();
        d.set_item("skipped", bad)?;
        let reused = self.buffers.volumes.reused.load(Relaxed);
        d.set_item("reused_volume_buffers", reused)?;
        Ok(d)
    }
}

#[pyclass(module = "qgfast._native")]
struct EpochIterator {
    running: std::sync::Mutex<Option<stream::Running>>,
    buffers: std::sync::Arc<stream::Buffers>,
}

/// What a batch array's memory belongs to: the Python base object of the array, which
/// hands the buffer back to its stream's recycler when the array is gone.
enum Recycled {
    F32(ArrayD<f32>, std::sync::Arc<stream::Buffers>),
    U8(ArrayD<u8>, std::sync::Arc<stream::Buffers>),
}

#[pyclass(module = "qgfast._native", frozen)]
struct BatchBuffer {
    owned: Option<Recycled>,
}

impl Drop for BatchBuffer {
    fn drop(&mut self) {
        match self.owned.take() {
            Some(Recycled::F32(a, home)) => home.images.give(a.into_raw_vec_and_offset().0),
            Some(Recycled::U8(a, home)) => home.labels.give(a.into_raw_vec_and_offset().0),
            None => {}
        }
    }
}

/// `values` as an array of `shape`.
fn shaped<T>(shape: &[usize], values: Vec<T>) -> PyResult<ArrayD<T>> {
    Ok(ArrayD::from_shape_vec(IxDyn(shape), values)
        .map_err(|e| Error::InvalidArgument(format!("batch: {e}")))?)
}

/// A numpy array over the owned array (no copy) whose buffer returns home when freed.
fn recycled_array(py: Python<'_>, owned: Recycled) -> PyResult<Bound<'_, PyAny>> {
    let base = Bound::new(py, BatchBuffer { owned: Some(owned) })?;
    // SAFETY: the array's memory belongs to `base`, which the new numpy array holds as its
    // base object; `base` is frozen and never reallocates it, and gives it back only when
    // dropped, i.e. after the numpy array is gone.
    Ok(match base.get().owned.as_ref() {
        Some(Recycled::F32(a, _)) => unsafe {
            PyArrayDyn::borrow_from_array(a, base.clone().into_any()).into_any()
        },
        Some(Recycled::U8(a, _)) => unsafe {
            PyArrayDyn::borrow_from_array(a, base.clone().into_any()).into_any()
        },
        None => unreachable!("set just above"),
    })
}

fn part_dict<'py>(
    py: Python<'py>,
    part: stream::Part,
    patch: [usize; 3],
    home: &std::sync::Arc<stream::Buffers>,
) -> PyResult<Bound<'py, PyDict>> {
    let b = part.specs.len();
    let d = PyDict::new(py);
    let shape = [b, part.channels, patch[0], patch[1], patch[2]];
    let image = Recycled::F32(shaped(&shape, part.image)?, home.clone());
    d.set_item("image", recycled_array(py, image)?)?;
    if let Some(label) = part.label {
        let shape = [b, 1, patch[0], patch[1], patch[2]];
        let label = Recycled::U8(shaped(&shape, label)?, home.clone());
        d.set_item("label", recycled_array(py, label)?)?;
    }
    let specs = &part.specs;
    let col = |f: &dyn Fn(&stream::SampleSpec) -> f32| specs.iter().map(f).collect::<Vec<f32>>();
    d.set_item(
        "case",
        to_array(py, &[b], specs.iter().map(|s| s.case as i64).collect())?,
    )?;
    d.set_item(
        "origin",
        to_array(py, &[b, 3], specs.iter().flat_map(|s| s.origin).collect())?,
    )?;
    d.set_item(
        "flip",
        to_array(py, &[b, 3], specs.iter().flat_map(|s| s.flip).collect())?,
    )?;
    d.set_item(
        "rot90",
        to_array(py, &[b], specs.iter().map(|s| s.rot90).collect())?,
    )?;
    d.set_item("scale", to_array(py, &[b], col(&|s| s.scale))?)?;
    d.set_item("shift", to_array(py, &[b], col(&|s| s.shift))?)?;
    d.set_item("gamma", to_array(py, &[b], col(&|s| s.gamma))?)?;
    d.set_item("noise", to_array(py, &[b], col(&|s| s.noise))?)?;
    d.set_item("brightness", to_array(py, &[b], col(&|s| s.brightness))?)?;
    d.set_item("contrast", to_array(py, &[b], col(&|s| s.contrast))?)?;
    d.set_item(
        "gain",
        to_array(py, &[b, 3], specs.iter().flat_map(|s| s.gain).collect())?,
    )?;
    d.set_item("angle", to_array(py, &[b], col(&|s| s.angle))?)?;
    Ok(d)
}

#[pymethods]
impl EpochIterator {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    /// The next batch as {"labeled": {...}, "unlabeled": {...}} (present parts only).
    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let epoch = match self.running.lock() {
            Ok(guard) => match guard.as_ref() {
                Some(r) => r.epoch.clone(),
                None => return Ok(None),
            },
            Err(_) => return Err(Error::Panic("stream iterator poisoned".into()).into()),
        };
        let patch = epoch.cfg.patch;
        let batch = detached(py, move || epoch.next_batch())?;
        let Some(batch) = batch else {
            self.close();
            return Ok(None);
        };
        let d = PyDict::new(py);
        if let Some(part) = batch.labeled {
            d.set_item("labeled", part_dict(py, part, patch, &self.buffers)?)?;
        }
        if let Some(part) = batch.unlabeled {
            d.set_item("unlabeled", part_dict(py, part, patch, &self.buffers)?)?;
        }
        Ok(Some(d))
    }

    #[getter]
    fn n_batches(&self) -> usize {
        self.running
            .lock()
            .ok()
            .and_then(|g| g.as_ref().map(|r| r.epoch.plan.n_batches))
            .unwrap_or(0)
    }

    /// Stop the worker threads now (also done when the iterator is dropped).
    fn close(&self) {
        let running = self.running.lock().ok().and_then(|mut g| g.take());
        drop(running);
    }
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("NativeError", m.py().get_type::<NativeError>())?;
    m.add("NativeDataError", m.py().get_type::<NativeDataError>())?;
    m.add_function(wrap_pyfunction!(nifti_header, m)?)?;
    m.add_function(wrap_pyfunction!(read_nifti, m)?)?;
    m.add_class::<VolumeStreamCore>()?;
    m.add_class::<EpochIterator>()?;
    m.add_class::<BatchBuffer>()?;
    m.add_function(wrap_pyfunction!(build_info, m)?)?;
    m.add_function(wrap_pyfunction!(_selftest_fail, m)?)?;
    m.add_function(wrap_pyfunction!(label_components, m)?)?;
    m.add_function(wrap_pyfunction!(counter_uniforms, m)?)?;
    m.add_function(wrap_pyfunction!(gather_nearest_u8, m)?)?;
    m.add_function(wrap_pyfunction!(shape_fill_u8, m)?)?;
    m.add_function(wrap_pyfunction!(write_volume_stats, m)?)?;
    Ok(())
}
