//! What a stream keeps across epochs: decoded volumes under a byte budget, and the
//! recycled batch and volume buffers.
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use super::config::Config;
use crate::io::buffer::{Recycler, Spares};
use crate::volume::Decoded;

/// Decoded volumes under a byte budget, least recently used evicted first.
#[derive(Default)]
pub struct Cache {
    inner: Mutex<CacheInner>,
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    /// samples cropped from a block read for them (volumes opened by their statistics)
    pub block_reads: AtomicU64,
    pub bad: Mutex<Vec<(usize, String)>>,
}

#[derive(Default)]
struct CacheInner {
    map: HashMap<usize, Arc<Decoded>>,
    order: VecDeque<usize>,
    bytes: usize,
}

impl Cache {
    pub fn bytes(&self) -> usize {
        self.inner.lock().map(|c| c.bytes).unwrap_or(0)
    }

    pub fn get(&self, case: usize) -> Option<Arc<Decoded>> {
        let mut c = self.inner.lock().ok()?;
        let hit = c.map.get(&case).cloned()?;
        c.order.retain(|&k| k != case);
        c.order.push_back(case);
        Some(hit)
    }

    pub fn put(&self, case: usize, vol: Arc<Decoded>, budget: usize) {
        let size = vol.bytes();
        if size > budget {
            return; // larger than the whole budget: used once, never cached
        }
        let Ok(mut c) = self.inner.lock() else { return };
        if c.map.contains_key(&case) {
            return;
        }
        while c.bytes + size > budget {
            let Some(old) = c.order.pop_front() else {
                break;
            };
            if let Some(v) = c.map.remove(&old) {
                c.bytes -= v.bytes();
            }
        }
        c.bytes += size;
        c.map.insert(case, vol);
        c.order.push_back(case);
    }
}

/// A stream's recycled batch buffers, shared with the arrays handed to Python (which give
/// theirs back when dropped); they outlive epochs.
pub struct Buffers {
    pub images: Recycler<f32>,
    pub labels: Recycler<u8>,
    /// finished 3D volumes' voxel and compressed-file buffers, for the next decodes
    pub volumes: Spares,
}

impl Buffers {
    pub fn new(cfg: &Config) -> Buffers {
        // a labelled and an unlabelled part per batch; batches ready, being built, and the
        // one the caller holds
        let keep = 2 * (cfg.prefetch.max(1) + cfg.threads.max(1) + 1);
        Buffers {
            images: Recycler::new(keep),
            labels: Recycler::new(keep),
            // a case's files (several modalities, a label) and the compressed bytes being
            // inflated, per thread
            volumes: Spares::new(8 * cfg.threads.max(1)),
        }
    }
}
