//! One epoch on worker threads: batches built in any order, handed out in index order,
//! with bounded prefetch; dropping the running epoch stops and joins its threads.
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use super::cache::{Buffers, Cache};
use super::config::Config;
use super::plan::{draw, plan, Plan, SampleSpec};
use super::render::{reads, render};
use super::rng::Rng;
use crate::errors::{catch_panic, Error};
use crate::io::image2d;
use crate::volume::{decode, Decoded};

/// One case: its image files (the channels) and its label file, if any.
#[derive(Debug, Clone)]
pub struct Case {
    pub images: Vec<PathBuf>,
    pub label: Option<PathBuf>,
}

/// One batch: its labelled and unlabelled parts, as the stream has them.
pub struct Batch {
    pub labeled: Option<Part>,
    pub unlabeled: Option<Part>,
}

/// One part of a batch: images [B, C, *patch], labels [B, *patch], and each sample's draws.
pub struct Part {
    pub image: Vec<f32>,
    pub label: Option<Vec<u8>>,
    pub channels: usize,
    pub specs: Vec<SampleSpec>,
}

/// Shared state of one epoch.
pub struct Epoch {
    pub cfg: Config,
    pub cases: Arc<Vec<Case>>,
    pub cache: Arc<Cache>,
    pub buffers: Arc<Buffers>,
    pub plan: Plan,
    pub epoch: u64,
    next: AtomicUsize,
    stop: AtomicBool,
    ready: Mutex<Ready>,
    changed: Condvar,
}

#[derive(Default)]
struct Ready {
    batches: BTreeMap<usize, Result<Batch, Error>>,
    consumed: usize,
}

impl Epoch {
    fn volume(&self, case: usize) -> Result<Arc<Decoded>, Error> {
        if let Some(v) = self.cache.get(case) {
            self.cache.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(v);
        }
        self.cache.misses.fetch_add(1, Ordering::Relaxed);
        let c = &self.cases[case];
        let first = c
            .images
            .first()
            .ok_or_else(|| Error::InvalidArgument(format!("case {case} has no image")))?;
        let vol = if image2d::is_2d(first) {
            let p = self.cfg.patch;
            let planes = image2d::decode(first, c.label.as_ref(), [p[0], p[1]], self.cfg.jpeg)?;
            Arc::new(Decoded::from_2d(planes))
        } else {
            Arc::new(decode(
                &c.images,
                c.label.as_ref(),
                self.cfg.norm,
                self.cfg.max_bytes,
                Some(&self.buffers.volumes),
            )?)
        };
        self.cache.put(case, vol.clone(), self.cfg.cache_bytes);
        Ok(vol)
    }

    /// The volume for a slot; with skip_errors, a failing case is recorded once and the
    /// slot moves on deterministically to the next case of its stream's list.
    fn volume_for(&self, items: &[usize], slot: usize) -> Result<(usize, Arc<Decoded>), Error> {
        let mut tries = 0;
        loop {
            let case = items[(slot + tries * self.cfg.samples_per_volume) % items.len()];
            match self.volume(case) {
                Ok(v) => return Ok((case, v)),
                Err(e) if self.cfg.skip_errors && tries < items.len() => {
                    if let Ok(mut bad) = self.cache.bad.lock() {
                        if !bad.iter().any(|(c, _)| *c == case) {
                            bad.push((case, e.to_string()));
                        }
                    }
                    tries += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// A volume this thread holds the last reference to (not cached) gives its buffers
    /// to the stream's spares.
    fn recycle(&self, vol: Arc<Decoded>) {
        if let Ok(vol) = Arc::try_unwrap(vol) {
            vol.recycle(&self.buffers.volumes);
        }
    }

    fn part(
        &self,
        items: &[usize],
        size: usize,
        batch: usize,
        stream: u64,
        labels: bool,
    ) -> Result<Part, Error> {
        let n = self.cfg.patch.iter().product::<usize>();
        let mut specs: Vec<SampleSpec> = Vec::with_capacity(size);
        // One decoded volume alive at a time: each sample is rendered as soon as its volume
        // is decoded (holding a whole batch of decodes cost a batch of page faults per batch,
        // and for 3D a batch of volumes of memory).
        let mut current: Option<(usize, Arc<Decoded>)> = None;
        let mut image: Vec<f32> = Vec::new();
        let mut label: Option<Vec<u8>> = None;
        let mut channels = 0;
        for j in 0..size {
            let slot = batch * size + j;
            // consecutive slots of one case (samples_per_volume) share a decode even when
            // the cache is off or too small to hold the volume
            let first_choice = items[slot % items.len()];
            let (case, vol) = match current.take() {
                Some((case, v)) if case == first_choice => (case, v),
                previous => {
                    // done with the previous volume before the next is decoded: its
                    // buffers can take the new voxels, and two are never held at once
                    if let Some((_, v)) = previous {
                        self.recycle(v);
                    }
                    self.volume_for(items, slot)?
                }
            };
            if j == 0 {
                channels = vol.channels.len();
                // every element is written below, so recycled contents never show
                image = self.buffers.images.take(size * channels * n);
                label = labels.then(|| self.buffers.labels.take(size * n));
            } else if vol.channels.len() != channels {
                return Err(Error::InvalidArgument(format!(
                    "cases in one batch have {channels} and {} image channels",
                    vol.channels.len()
                )));
            }
            if labels && vol.label.is_none() {
                return Err(Error::InvalidArgument(format!("case {case} has no label")));
            }
            let mut rng = Rng::keyed(&[self.cfg.seed, self.epoch, stream, 1 + slot as u64]);
            let spec = draw(&self.cfg, &vol, case, &mut rng);
            let lab = label.as_mut().map(|l| &mut l[j * n..(j + 1) * n]);
            let out = &mut image[j * channels * n..(j + 1) * channels * n];
            // a volume opened by its statistics: read just the block the sample covers,
            // and render from it with the origin moved into it
            match vol.read_block(|| reads(&self.cfg, &spec), &self.buffers.volumes)? {
                Some((block, at)) => {
                    self.cache.block_reads.fetch_add(1, Ordering::Relaxed);
                    let mut local = spec.clone();
                    for (o, a) in local.origin.iter_mut().zip(at) {
                        *o -= a;
                    }
                    render(&self.cfg, &block, &local, out, lab);
                    block.recycle(&self.buffers.volumes);
                }
                None => render(&self.cfg, &vol, &spec, out, lab),
            }
            specs.push(spec);
            current = Some((case, vol));
        }
        if let Some((_, v)) = current {
            self.recycle(v);
        }
        Ok(Part {
            image,
            label,
            channels,
            specs,
        })
    }

    fn build(&self, b: usize) -> Result<Batch, Error> {
        let cfg = &self.cfg;
        let labeled = (cfg.labeled_batch > 0)
            .then(|| self.part(&self.plan.labeled, cfg.labeled_batch, b, 1, true))
            .transpose()?;
        let unlabeled = (cfg.unlabeled_batch > 0)
            .then(|| self.part(&self.plan.unlabeled, cfg.unlabeled_batch, b, 2, false))
            .transpose()?;
        Ok(Batch { labeled, unlabeled })
    }

    fn work(&self) {
        loop {
            let b = self.next.fetch_add(1, Ordering::SeqCst);
            if b >= self.plan.n_batches {
                return;
            }
            {
                let Ok(mut ready) = self.ready.lock() else {
                    return;
                };
                while b >= ready.consumed + self.cfg.prefetch.max(1)
                    && !self.stop.load(Ordering::SeqCst)
                {
                    ready = match self.changed.wait(ready) {
                        Ok(r) => r,
                        Err(_) => return,
                    };
                }
            }
            if self.stop.load(Ordering::SeqCst) {
                return;
            }
            let result = catch_panic(|| self.build(b));
            let failed = result.is_err();
            if let Ok(mut ready) = self.ready.lock() {
                ready.batches.insert(b, result);
            }
            self.changed.notify_all();
            if failed {
                return;
            }
        }
    }

    /// The next batch in order; None at the end of the epoch.
    pub fn next_batch(&self) -> Result<Option<Batch>, Error> {
        let mut ready = self
            .ready
            .lock()
            .map_err(|_| Error::Panic("stream state poisoned".into()))?;
        if ready.consumed >= self.plan.n_batches {
            return Ok(None);
        }
        loop {
            let want = ready.consumed;
            if let Some(result) = ready.batches.remove(&want) {
                ready.consumed += 1;
                if result.is_err() {
                    // an error ends the epoch: later batches may never be built
                    ready.consumed = self.plan.n_batches;
                    self.stop.store(true, Ordering::SeqCst);
                }
                drop(ready);
                self.changed.notify_all();
                return result.map(Some);
            }
            ready = self
                .changed
                .wait(ready)
                .map_err(|_| Error::Panic("stream state poisoned".into()))?;
        }
    }
}

/// An epoch with its worker threads; dropping it stops and joins them.
pub struct Running {
    pub epoch: Arc<Epoch>,
    threads: Vec<JoinHandle<()>>,
}

impl Running {
    pub fn start(
        cfg: Config,
        cases: Arc<Vec<Case>>,
        cache: Arc<Cache>,
        buffers: Arc<Buffers>,
        labeled: &[usize],
        unlabeled: &[usize],
        epoch: u64,
    ) -> Result<Running, Error> {
        let plan = plan(&cfg, labeled, unlabeled, epoch)?;
        let threads = cfg.threads.max(1);
        let state = Arc::new(Epoch {
            cfg,
            cases,
            cache,
            buffers,
            plan,
            epoch,
            next: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            ready: Mutex::new(Ready::default()),
            changed: Condvar::new(),
        });
        let mut handles = Vec::with_capacity(threads);
        for i in 0..threads {
            let s = state.clone();
            let handle = std::thread::Builder::new()
                .name(format!("qgfast-stream-{i}"))
                .spawn(move || s.work())
                .map_err(|e| {
                    Error::InvalidArgument(format!("cannot start a stream thread: {e}"))
                })?;
            handles.push(handle);
        }
        Ok(Running {
            epoch: state,
            threads: handles,
        })
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.epoch.stop.store(true, Ordering::SeqCst);
        self.epoch.changed.notify_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
