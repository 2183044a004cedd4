//! Whole reads: a case's NIfTI files decoded into channels sharing each file's buffer.
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use super::channel::{Channel, Norm, ValueMap};
use super::decoded::Decoded;
use super::label::{check_label, sample_foreground};
use crate::errors::{data, Error};
use crate::io::buffer::Spares;
use crate::io::nifti;

/// (shape [X, Y, Z], channels) of a NIfTI shape: 3D, or 4D with channels last (MSD).
fn spatial(shape: &[usize]) -> Result<([usize; 3], usize), String> {
    match shape {
        [x, y, z] => Ok(([*x, *y, *z], 1)),
        [x, y, z, c] => Ok(([*x, *y, *z], *c)),
        other => Err(format!("expected a 3D or 4D volume, got shape {other:?}")),
    }
}

/// The channels of one NIfTI file (one per 4D volume), sharing its buffer.
fn file_channels(
    path: &Path,
    max_bytes: usize,
    spares: Option<&Spares>,
) -> Result<([usize; 3], Vec<Channel>), Error> {
    let vol = nifti::read_using(path, max_bytes, spares)?;
    header_channels(path, &vol.header, Arc::new(vol.words), vol.start)
}

/// The spatial shape and channels `header` describes, channel k's voxels from byte
/// `start` + k · (its byte size) of `words` (empty for a volume not read: `open_by_stats`
/// reads a channel's bytes at that offset in the file instead).
pub fn header_channels(
    path: &Path,
    header: &nifti::Header,
    words: Arc<Vec<u64>>,
    start: usize,
) -> Result<([usize; 3], Vec<Channel>), Error> {
    let (s, c) = spatial(&header.shape).map_err(|r| data(path, r))?;
    let scaling = header.scaling().map_err(|r| data(path, r))?;
    let dtype = header.dtype;
    let n = s[0] * s[1] * s[2];
    let channels = (0..c)
        .map(|k| Channel {
            words: words.clone(),
            start: start + k * n * dtype.size(),
            len: n,
            dtype,
            scaling,
            map: ValueMap::IDENTITY,
            lut: OnceLock::new(),
        })
        .collect();
    Ok((s, channels))
}

/// Element strides of x, y, z in a NIfTI volume of `shape`: x fastest.
pub fn nifti_strides(shape: [usize; 3]) -> [usize; 3] {
    [1, shape[0], shape[0] * shape[1]]
}

/// The channels of an uncompressed file, whole (statistics files describe only those).
pub fn plain_file_channels(
    path: &Path,
    max_bytes: usize,
) -> Result<([usize; 3], Vec<Channel>), Error> {
    if nifti::is_gzip(path)? {
        return Err(data(
            path,
            "statistics files describe uncompressed .nii files only",
        ));
    }
    file_channels(path, max_bytes, None)
}
/// Read and check one case whole (images as channels, optional label) and compute each
/// channel's normalisation; the voxels stay as stored, in buffers from `spares` where
/// one fits.
pub fn whole(
    images: &[PathBuf],
    label: Option<&PathBuf>,
    norm: Norm,
    max_bytes: usize,
    spares: Option<&Spares>,
) -> Result<Decoded, Error> {
    let mut shape: Option<[usize; 3]> = None;
    let mut channels = Vec::new();
    for path in images {
        let (s, chans) = file_channels(path, max_bytes, spares)?;
        if let Some(first) = shape {
            if first != s {
                return Err(data(
                    path,
                    format!("shape {s:?} differs from the case's first image {first:?}"),
                ));
            }
        }
        shape = Some(s);
        for mut ch in chans {
            ch.map = ch.normalisation(norm);
            channels.push(ch);
        }
    }
    let shape = shape.ok_or_else(|| Error::InvalidArgument("a case needs an image".into()))?;
    if shape.iter().product::<usize>() > u32::MAX as usize {
        return Err(Error::InvalidArgument(
            "volumes over 2^32 voxels are not supported".into(),
        ));
    }
    let strides = nifti_strides(shape);
    let (label, foreground) = match label {
        None => (None, Vec::new()),
        Some(path) => {
            let (s, mut chans) = file_channels(path, max_bytes, spares)?;
            if s != shape || chans.len() != 1 {
                return Err(data(
                    path,
                    format!(
                        "label shape {s:?}×{} does not match the image's {shape:?}",
                        chans.len()
                    ),
                ));
            }
            let ch = chans.remove(0);
            check_label(path, &ch)?;
            let fg = sample_foreground(&ch, shape, strides);
            (Some(ch), fg)
        }
    };
    Ok(Decoded::assemble(
        shape, strides, channels, label, foreground,
    ))
}
