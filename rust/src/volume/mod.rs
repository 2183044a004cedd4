//! Decoded volumes as the stream caches them: the voxels exactly as the file stores them
//! (NIfTI order, x fastest, on-disk type) plus, per channel, the normalisation as a clamp
//! and an affine map applied only to the voxels a crop reads.
//!
//! Why not a normalised float32 copy in C order: that copy cost a second pass over every
//! voxel, a transposition and twice the memory of an int16 volume, for every decode; a
//! crop reads ~1 % of an LA volume. Statistics (mean, std, percentiles) still come from one
//! pass over all voxels, so a crop is normalised exactly as the whole volume would be.
//!
//! Files: `channel` (one channel's voxels and normalisation), `decoded` (a case and its
//! crops), `read` (whole reads), `label` (label checks, foreground positions), `stats_file`
//! (the statistics-file format), `block` (cases opened by those files, read a block per
//! sample; and computing the files) and `files` (where such a case's voxels are).
use std::path::PathBuf;

use crate::errors::Error;
use crate::io::buffer::Spares;

mod block;
mod channel;
mod decoded;
mod files;
mod label;
mod read;
mod stats_file;

pub use block::write_stats;
pub use channel::Norm;
pub use decoded::{Decoded, Region};
pub use stats_file::Role;

/// Decode one case (images as channels, optional label): opened by its statistics files
/// where they are fresh and describe what `norm` needs, else read whole. Either way each
/// channel's normalisation is the whole volume's.
pub fn decode(
    images: &[PathBuf],
    label: Option<&PathBuf>,
    norm: Norm,
    max_bytes: usize,
    spares: Option<&Spares>,
) -> Result<Decoded, Error> {
    if let Some(vol) = block::open_by_stats(images, label, norm, max_bytes)? {
        return Ok(vol);
    }
    read::whole(images, label, norm, max_bytes, spares)
}
