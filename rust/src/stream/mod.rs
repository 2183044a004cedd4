//! The volume stream: an epoch of SSL batches built by worker threads.
//!
//! Determinism: which case and which random draws a batch slot gets depend only on
//! (seed, epoch, stream, slot index) — a counter-based RNG, never on thread timing — and
//! batches are handed out in index order, so a seed reproduces an epoch exactly whatever
//! the thread count. Sharding: the epoch's case permutation is shared by every shard and
//! shard k keeps positions k, k + n, ...; no case appears on two shards in an epoch.
//! Prefetch is bounded: a worker waits while `prefetch` batches are ready and unconsumed.
//! Dropping the epoch stops and joins its threads.
//!
//! Files: `config` (what a stream does, checked once), `rng` (the counter-keyed draws),
//! `plan` (each slot's case and draws), `cache` (decoded volumes and recycled batch
//! buffers that outlive epochs), `render` (crop, orient, rotate, intensity- and
//! colour-augment one sample) and `epoch` (the worker threads and batch order).
mod cache;
mod config;
mod epoch;
mod plan;
mod render;
mod rng;

pub use cache::{Buffers, Cache};
pub use config::{Config, Settings};
pub use epoch::{Case, Part, Running};
pub use plan::SampleSpec;
