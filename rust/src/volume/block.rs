//! Cases opened by their statistics files (`stats_file`): no voxel read at open, and each
//! sample reads only the block of the files its crop covers.
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use super::channel::{normalise, Channel, Norm, ValueMap};
use super::decoded::Decoded;
use super::files::{FileChannel, Files};
use super::label::{check_label, sample_foreground};
use super::read::{header_channels, nifti_strides, plain_file_channels};
use super::stats_file::{self, ChannelStats, Role, Stats};
use crate::errors::{data, Error};
use crate::io::buffer::Spares;
use crate::io::nifti;

/// Open a case by its statistics files (`volume_stats`) instead of reading it: headers
/// checked against the file sizes, maps and foreground from the statistics, no voxel read.
/// None where any file lacks fresh statistics, is compressed, or `norm` needs what its
/// statistics do not hold: the caller reads the case whole.
pub fn open_by_stats(
    images: &[PathBuf],
    label: Option<&PathBuf>,
    norm: Norm,
    max_bytes: usize,
) -> Result<Option<Decoded>, Error> {
    // statistics first: a case without them costs a few failed opens, no header reads
    let mut stats = Vec::with_capacity(images.len());
    for path in images {
        match stats_file::read_fresh(path, Role::Image) {
            Some(s) => stats.push(s),
            None => return Ok(None),
        }
    }
    let label_stats = match label {
        Some(path) => match stats_file::read_fresh(path, Role::Label) {
            Some(s) => Some(s),
            None => return Ok(None),
        },
        None => None,
    };
    let open = |path: &PathBuf| -> Result<_, Error> {
        let (file, header, start, _) = nifti::open_plain(path, max_bytes)?;
        // no voxels: each channel's `start` is its offset among the file's voxels
        let (shape, metas) = header_channels(path, &header, Arc::new(Vec::new()), 0)?;
        let (file, header) = (Arc::new(file), Arc::new(header));
        let channels: Vec<(FileChannel, Channel)> = metas
            .into_iter()
            .map(|meta| {
                let at = FileChannel {
                    file: file.clone(),
                    path: path.clone(),
                    offset: start + meta.start as u64,
                    header: header.clone(),
                };
                (at, meta)
            })
            .collect();
        Ok((shape, channels))
    };
    let mut shape = None;
    let (mut files, mut channels) = (Vec::new(), Vec::new());
    for (path, stats) in images.iter().zip(&stats) {
        let (s, chans) = open(path)?;
        if shape.is_some_and(|first| first != s) || chans.len() != stats.channels.len() {
            return Ok(None); // the whole read words the error
        }
        shape = Some(s);
        for ((at, mut meta), st) in chans.into_iter().zip(&stats.channels) {
            let Some(map) = stats_map(st, norm) else {
                return Ok(None);
            };
            meta.map = map;
            files.push(at);
            channels.push(meta);
        }
    }
    let Some(shape) = shape.filter(|s| s.iter().product::<usize>() <= u32::MAX as usize) else {
        return Ok(None); // the whole read words the error
    };
    let (label_file, label_meta, foreground) = match (label, label_stats) {
        (Some(path), Some(stats)) => {
            let (s, mut chans) = open(path)?;
            if s != shape || chans.len() != 1 {
                return Ok(None);
            }
            let (at, meta) = chans.remove(0);
            (Some(at), Some(meta), stats.foreground)
        }
        _ => (None, None, Vec::new()),
    };
    let mut vol = Decoded::assemble(
        shape,
        nifti_strides(shape),
        channels,
        label_meta,
        foreground,
    );
    vol.files = Some(Arc::new(Files {
        channels: files,
        label: label_file,
    }));
    Ok(Some(vol))
}

impl Decoded {
    /// For a volume opened by its statistics: the block of it that a crop of `shape` at
    /// `origin` reads, (origin, shape) = `region()` (clipped to the volume; zero elsewhere,
    /// as a crop pads), read from the files into buffers from `spares`, with the block's
    /// origin in the volume. A crop of the block at origin − that equals the crop of the
    /// volume. None for a volume in memory (`region` is not called: no work per sample).
    pub fn read_block(
        &self,
        region: impl FnOnce() -> ([i64; 3], [usize; 3]),
        spares: &Spares,
    ) -> Result<Option<(Decoded, [i64; 3])>, Error> {
        let Some(files) = &self.files else {
            return Ok(None);
        };
        let (origin, shape) = region();
        let s = self.shape;
        let mut b0 = [0usize; 3];
        let mut b = [0usize; 3];
        for d in 0..3 {
            let lo = origin[d].clamp(0, s[d] as i64);
            let hi = (origin[d] + shape[d] as i64).clamp(lo, s[d] as i64);
            (b0[d], b[d]) = (lo as usize, (hi - lo) as usize);
        }
        let span = if b.contains(&0) {
            0
        } else {
            (b[1] - 1) * s[0] + b[0]
        };
        let len = span * b[2];
        let read = |at: &FileChannel, meta: &Channel| -> Result<Channel, Error> {
            let bytes = len * meta.dtype.size();
            let mut words = Vec::new(); // an empty block (never drawn) takes no spare
            if len > 0 {
                words = spares.take(bytes.div_ceil(8));
                at.read(
                    s,
                    b0,
                    b,
                    &mut bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..bytes],
                )?;
            }
            Ok(Channel {
                words: Arc::new(words),
                start: 0,
                len,
                lut: OnceLock::new(),
                ..meta.clone()
            })
        };
        let channels = files
            .channels
            .iter()
            .zip(&self.channels)
            .map(|(at, meta)| read(at, meta))
            .collect::<Result<Vec<_>, _>>()?;
        let label = match (&files.label, &self.label) {
            (Some(at), Some(meta)) => Some(read(at, meta)?),
            _ => None,
        };
        let strides = [1, s[0], span];
        let block = Decoded::assemble(b, strides, channels, label, Vec::new());
        Ok(Some((block, b0.map(|v| v as i64))))
    }
}

/// A channel's normalisation under `norm` from its statistics, as a whole read would
/// compute it; None where these statistics cannot give it (percentiles of wide types).
fn stats_map(stats: &ChannelStats, norm: Norm) -> Option<ValueMap> {
    match (norm, &stats.counts) {
        (_, Some(counts)) => normalise(norm, Some(counts), None),
        (Norm::ZScore { nonzero }, None) => Some(stats.zscore[usize::from(nonzero)]),
        (norm, None) => normalise(norm, None, None), // none, window
    }
}

/// Compute the statistics of the uncompressed NIfTI `path` in `role`, by the code a whole
/// read runs, and write them beside it (`stats_file::store`); the statistics file's path. A
/// label whose values are not whole numbers in 0..=255, or a file that changes while it is
/// read, is an error.
pub fn write_stats(path: &Path, role: Role, max_bytes: usize) -> Result<PathBuf, Error> {
    let before = stats_file::stamp(path).map_err(|e| data(path, format!("cannot stat: {e}")))?;
    let (shape, channels) = plain_file_channels(path, max_bytes)?;
    let stats = match role {
        Role::Image => Stats {
            role,
            channels: channels
                .iter()
                .map(|ch| {
                    let counts = ch.value_counts();
                    let map = |nonzero| {
                        let norm = Norm::ZScore { nonzero };
                        normalise(norm, counts.as_deref(), Some(ch))
                            .expect("voxels give every statistic")
                    };
                    ChannelStats {
                        zscore: [map(false), map(true)],
                        counts,
                    }
                })
                .collect(),
            foreground: Vec::new(),
        },
        Role::Label => {
            let [ch] = &channels[..] else {
                return Err(data(
                    path,
                    format!("a label has one channel, not {}", channels.len()),
                ));
            };
            check_label(path, ch)?;
            Stats {
                role,
                channels: Vec::new(),
                foreground: sample_foreground(ch, shape, nifti_strides(shape)),
            }
        }
    };
    stats_file::store(path, &stats, before)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::stats_file::tests::sample;

    #[test]
    fn maps_follow_from_the_counts_or_the_stored_z_scores() {
        let ch = &sample().channels[1];
        let map = ValueMap::from_array([-1.0, 900.0, 12.5, 0.25]);
        assert_eq!(stats_map(ch, Norm::ZScore { nonzero: true }), Some(map));
        assert_eq!(
            stats_map(ch, Norm::ZScore { nonzero: false }),
            Some(ValueMap::IDENTITY)
        );
        assert_eq!(stats_map(ch, Norm::Percentile { lo: 1.0, hi: 99.0 }), None);
        assert_eq!(stats_map(ch, Norm::None), Some(ValueMap::IDENTITY));
        let counted = &sample().channels[0];
        let pct = Norm::Percentile { lo: 0.0, hi: 100.0 };
        let want = normalise(pct, counted.counts.as_deref(), None);
        assert_eq!(stats_map(counted, pct), want);
    }
}
