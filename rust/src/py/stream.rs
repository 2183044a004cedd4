//! `VolumeStreamCore` (the Rust half of `qgfast.data.VolumeStream` and `ImageStream`), its
//! typed config `StreamConfig`, the epoch iterator, and the batch arrays handed to numpy
//! without a copy, whose buffers go back to the stream when freed.
use std::sync::{Arc, Mutex};

use numpy::ndarray::{ArrayD, IxDyn};
use numpy::PyArrayDyn;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use super::to_array;
use crate::errors::{detached, Error};
use crate::stream::{self, Settings};

/// A stream's options, checked once at construction (`stream::Settings::check`): keyword
/// arguments named as `VolumeStream`'s and `ImageStream`'s, every one given. Pickles as
/// those arguments (DataLoader workers started by spawn receive the stream by pickle).
#[pyclass(module = "qgfast._native", frozen)]
pub struct StreamConfig {
    cfg: stream::Config,
    fields: Py<PyDict>,
}

#[pymethods]
impl StreamConfig {
    #[new]
    #[pyo3(signature = (**fields))]
    fn new(py: Python<'_>, fields: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        let fields = match fields {
            Some(d) => d.copy()?,
            None => PyDict::new(py),
        };
        for key in fields.keys() {
            let key: String = key.extract()?;
            if !Settings::KEYS.contains(&key.as_str()) {
                return Err(Error::InvalidArgument(format!(
                    "StreamConfig: unknown option {key:?}"
                ))
                .into());
            }
        }
        let missing: Vec<&str> = Settings::KEYS
            .into_iter()
            .filter(|k| !fields.contains(k).unwrap_or(false))
            .collect();
        if !missing.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "StreamConfig: missing options {missing:?}"
            ))
            .into());
        }
        let settings: Settings = fields.extract()?;
        Ok(StreamConfig {
            cfg: settings.check()?,
            fields: fields.unbind(),
        })
    }

    /// The options it was built from (a copy).
    fn fields<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        self.fields.bind(py).copy()
    }

    /// `functools.partial(StreamConfig, **fields)()` rebuilds it, checked again.
    fn __reduce__<'py>(
        slf: &Bound<'py, Self>,
    ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyTuple>)> {
        let py = slf.py();
        let partial = py.import("functools")?.getattr("partial")?;
        let kwargs = slf.get().fields.bind(py);
        let rebuild = partial.call((slf.get_type(),), Some(kwargs))?;
        Ok((rebuild, PyTuple::empty(py)))
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!("StreamConfig(**{})", self.fields.bind(py).repr()?))
    }
}

/// The Rust half of `qgfast.data.VolumeStream`: cases, config and the decoded-volume cache
/// (which outlives epochs). `start(epoch)` runs one epoch on worker threads.
#[pyclass(module = "qgfast._native", frozen)]
pub struct VolumeStreamCore {
    cfg: stream::Config,
    cases: Arc<Vec<stream::Case>>,
    cache: Arc<stream::Cache>,
    buffers: Arc<stream::Buffers>,
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
        config: &StreamConfig,
        shard: usize,
        shards: usize,
    ) -> PyResult<Self> {
        if shard >= shards {
            let msg = format!("need shard < shards, got shard {shard} of {shards}");
            return Err(Error::InvalidArgument(msg).into());
        }
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
        let cfg = stream::Config {
            shard,
            shards,
            ..config.cfg.clone()
        };
        Ok(VolumeStreamCore {
            buffers: Arc::new(stream::Buffers::new(&cfg)),
            cfg,
            cases: Arc::new(cases),
            cache: Arc::new(stream::Cache::default()),
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
            running: Mutex::new(Some(running)),
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
pub struct EpochIterator {
    running: Mutex<Option<stream::Running>>,
    buffers: Arc<stream::Buffers>,
}

/// What a batch array's memory belongs to: the Python base object of the array, which
/// hands the buffer back to its stream's recycler when the array is gone.
enum Recycled {
    F32(ArrayD<f32>, Arc<stream::Buffers>),
    U8(ArrayD<u8>, Arc<stream::Buffers>),
}

#[pyclass(module = "qgfast._native", frozen)]
pub struct BatchBuffer {
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
    home: &Arc<stream::Buffers>,
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
        to_array(
            py,
            "batch",
            &[b],
            specs.iter().map(|s| s.case as i64).collect(),
        )?,
    )?;
    d.set_item(
        "origin",
        to_array(
            py,
            "batch",
            &[b, 3],
            specs.iter().flat_map(|s| s.origin).collect(),
        )?,
    )?;
    d.set_item(
        "flip",
        to_array(
            py,
            "batch",
            &[b, 3],
            specs.iter().flat_map(|s| s.flip).collect(),
        )?,
    )?;
    d.set_item(
        "rot90",
        to_array(py, "batch", &[b], specs.iter().map(|s| s.rot90).collect())?,
    )?;
    d.set_item("scale", to_array(py, "batch", &[b], col(&|s| s.scale))?)?;
    d.set_item("shift", to_array(py, "batch", &[b], col(&|s| s.shift))?)?;
    d.set_item("gamma", to_array(py, "batch", &[b], col(&|s| s.gamma))?)?;
    d.set_item("noise", to_array(py, "batch", &[b], col(&|s| s.noise))?)?;
    d.set_item(
        "brightness",
        to_array(py, "batch", &[b], col(&|s| s.brightness))?,
    )?;
    d.set_item(
        "contrast",
        to_array(py, "batch", &[b], col(&|s| s.contrast))?,
    )?;
    d.set_item(
        "gain",
        to_array(
            py,
            "batch",
            &[b, 3],
            specs.iter().flat_map(|s| s.gain).collect(),
        )?,
    )?;
    d.set_item("angle", to_array(py, "batch", &[b], col(&|s| s.angle))?)?;
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
