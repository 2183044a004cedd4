//! Where the voxels of a volume opened by its statistics files are (`block`): per channel
//! the open file, the byte offset of its voxels and the header that says how they are
//! stored, and the positioned reads of a crop's block.
use std::path::PathBuf;
use std::sync::Arc;

use crate::errors::{data, Error};
use crate::io::buffer::read_exact_at;
use crate::io::nifti;

/// An unread channel's file: voxels of channel k start at byte `offset` (4D files: one
/// `FileChannel` per channel, sharing the handle), in the byte order `header` gives.
pub struct FileChannel {
    pub file: Arc<std::fs::File>,
    pub path: PathBuf,
    pub offset: u64,
    pub header: Arc<nifti::Header>,
}

/// The files of a volume opened by its statistics (`open_by_stats`), per image channel
/// and for the label.
pub struct Files {
    pub channels: Vec<FileChannel>,
    pub label: Option<FileChannel>,
}

impl FileChannel {
    /// The bytes of a block of `b` voxels at `b0` of a volume of `shape`, one positioned read
    /// per z slice (its y rows from the block's first to its last, whole rows between), into
    /// `out` as a [X·(b[1] − 1) + b[0]] × b[2] grid; native byte order.
    pub fn read(
        &self,
        shape: [usize; 3],
        b0: [usize; 3],
        b: [usize; 3],
        out: &mut [u8],
    ) -> Result<(), Error> {
        let size = self.header.dtype.size();
        let span = ((b[1] - 1) * shape[0] + b[0]) * size;
        for z in 0..b[2] {
            let first = (((b0[2] + z) * shape[1] + b0[1]) * shape[0] + b0[0]) * size;
            read_exact_at(
                &self.file,
                &mut out[z * span..][..span],
                self.offset + first as u64,
            )
            .map_err(|e| data(&self.path, format!("cannot read a crop's voxels: {e}")))?;
        }
        nifti::to_native(&self.header, &mut out[..span * b[2]]);
        Ok(())
    }
}
