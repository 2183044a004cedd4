//! Decoded, normalised volumes as the stream caches them: float32 image channels and a
//! uint8 label in C order [C, X, Y, Z] (z fastest: a crop copies contiguous z-runs), plus
//! a sample of foreground voxel positions for foreground-oversampled crops.
use std::path::{Path, PathBuf};

use crate::errors::Error;
use crate::nifti;

/// How image intensities are normalised, per channel, once per decoded volume.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Norm {
    None,
    /// z-score over all voxels, or over the nonzero ones (MR brain style).
    ZScore {
        nonzero: bool,
    },
    /// clip to the [lo, hi] percentiles of the channel, then z-score (nnU-Net CT style).
    Percentile {
        lo: f64,
        hi: f64,
    },
    /// clip to a fixed [lo, hi] window, then map it to [0, 1].
    Window {
        lo: f32,
        hi: f32,
    },
}

pub struct Decoded {
    pub shape: [usize; 3],
    pub channels: usize,
    pub image: Vec<f32>,
    pub label: Option<Vec<u8>>,
    /// linear indices (C order over [X, Y, Z]) of up to `MAX_FG` foreground voxels
    pub foreground: Vec<u32>,
}

const MAX_FG: usize = 100_000;

impl Decoded {
    pub fn bytes(&self) -> usize {
        self.image.len() * 4 + self.label.as_ref().map_or(0, Vec::len) + self.foreground.len() * 4
    }
}

/// Values of a volume as f32 in NIfTI order (x fastest), scaled as nibabel scales them
/// (in float64, then rounded once to float32).
fn values(vol: &nifti::Volume) -> Result<Vec<f32>, String> {
    Ok(vol.map_values(vol.header.scaling()?, |x| x as f32))
}

/// (shape [X, Y, Z], channels) of a NIfTI shape: 3D, or 4D with channels last (MSD).
fn spatial(shape: &[usize]) -> Result<([usize; 3], usize), String> {
    match shape {
        [x, y, z] => Ok(([*x, *y, *z], 1)),
        [x, y, z, c] => Ok(([*x, *y, *z], *c)),
        other => Err(format!("expected a 3D or 4D volume, got shape {other:?}")),
    }
}

/// x-fastest (NIfTI) block of one channel → z-fastest C order: a 3D axis reversal done
/// in 32×32 (x, z) tiles per y so both the reads (x runs) and the writes (z runs) stay in
/// cache; a plain loop strides by a whole x–y slab per voxel and is ~10× slower on LA sizes.
fn to_c_order(src: &[f32], s: [usize; 3], dst: &mut [f32]) {
    const TILE: usize = 32;
    let (nx, ny, nz) = (s[0], s[1], s[2]);
    for y in 0..ny {
        for z0 in (0..nz).step_by(TILE) {
            for x0 in (0..nx).step_by(TILE) {
                for z in z0..(z0 + TILE).min(nz) {
                    let row = &src[nx * (y + ny * z)..];
                    for x in x0..(x0 + TILE).min(nx) {
                        dst[(x * ny + y) * nz + z] = row[x];
                    }
                }
            }
        }
    }
}

/// Mean and population standard deviation (numpy's ``std``, ddof 0) of the voxels that
/// pass `keep`, in two passes for accuracy; the std is floored at 1e-6.
fn mean_std(channel: &[f32], keep: impl Fn(f32) -> bool) -> (f64, f64) {
    let (mut n, mut sum) = (0usize, 0f64);
    for &v in channel.iter().filter(|v| keep(**v)) {
        n += 1;
        sum += v as f64;
    }
    if n == 0 {
        return (0.0, 1.0);
    }
    let mean = sum / n as f64;
    let sq: f64 = channel
        .iter()
        .filter(|v| keep(**v))
        .map(|&v| (v as f64 - mean).powi(2))
        .sum();
    (mean, (sq / n as f64).sqrt().max(1e-6))
}

fn normalise(channel: &mut [f32], norm: Norm) {
    let zscore = |channel: &mut [f32], (mean, std): (f64, f64)| {
        for v in channel.iter_mut() {
            *v = ((*v as f64 - mean) / std) as f32;
        }
    };
    match norm {
        Norm::None => {}
        Norm::ZScore { nonzero } => {
            let use_nonzero = nonzero && channel.iter().any(|v| *v != 0.0);
            let stats = mean_std(channel, |v| !use_nonzero || v != 0.0);
            zscore(channel, stats);
        }
        Norm::Percentile { lo, hi } => {
            let mut sorted: Vec<f32> = channel.to_vec();
            sorted.sort_by(f32::total_cmp);
            let at = |q: f64| sorted[((q / 100.0) * (sorted.len() - 1) as f64).round() as usize];
            let (a, b) = (at(lo), at(hi));
            for v in channel.iter_mut() {
                *v = v.clamp(a, b);
            }
            let stats = mean_std(channel, |_| true);
            zscore(channel, stats);
        }
        Norm::Window { lo, hi } => {
            let span = (hi - lo).max(1e-6);
            for v in channel.iter_mut() {
                *v = (v.clamp(lo, hi) - lo) / span;
            }
        }
    }
}

fn read(path: &Path, max_bytes: usize) -> Result<(Vec<f32>, Vec<usize>), Error> {
    let vol = nifti::read(path, max_bytes)?;
    let vals = values(&vol).map_err(|r| nifti::data(path, r))?;
    Ok((vals, vol.header.shape.clone()))
}

/// Decode, check and normalise one case (images as channels, optional label).
pub fn decode(
    images: &[PathBuf],
    label: Option<&PathBuf>,
    norm: Norm,
    max_bytes: usize,
) -> Result<Decoded, Error> {
    let mut shape: Option<[usize; 3]> = None;
    let mut image = Vec::new();
    let mut channels = 0;
    for path in images {
        let (vals, dims) = read(path, max_bytes)?;
        let (s, c) = spatial(&dims).map_err(|r| nifti::data(path, r))?;
        if let Some(first) = shape {
            if first != s {
                return Err(nifti::data(
                    path,
                    format!("shape {s:?} differs from the case's first image {first:?}"),
                ));
            }
        }
        shape = Some(s);
        let n = s[0] * s[1] * s[2];
        for ch in 0..c {
            let start = image.len();
            image.resize(start + n, 0.0);
            to_c_order(&vals[ch * n..(ch + 1) * n], s, &mut image[start..]);
            normalise(&mut image[start..], norm);
        }
        channels += c;
    }
    let shape = shape.ok_or_else(|| Error::InvalidArgument("a case needs an image".into()))?;
    let n = shape[0] * shape[1] * shape[2];
    if n > u32::MAX as usize {
        return Err(Error::InvalidArgument(
            "volumes over 2^32 voxels are not supported".into(),
        ));
    }
    let (label, foreground) = match label {
        None => (None, Vec::new()),
        Some(path) => {
            let (vals, dims) = read(path, max_bytes)?;
            let (s, c) = spatial(&dims).map_err(|r| nifti::data(path, r))?;
            if s != shape || c != 1 {
                return Err(nifti::data(
                    path,
                    format!("label shape {dims:?} does not match the image's {shape:?}"),
                ));
            }
            let mut c_order = vec![0f32; n];
            to_c_order(&vals, s, &mut c_order);
            let mut out = vec![0u8; n];
            for (o, &v) in out.iter_mut().zip(&c_order) {
                if !(0.0..=255.0).contains(&v) || v.fract() != 0.0 {
                    return Err(nifti::data(
                        path,
                        format!("label value {v} is not a whole number in 0..255"),
                    ));
                }
                *o = v as u8;
            }
            let count = out.iter().filter(|&&v| v != 0).count();
            let step = count.div_ceil(MAX_FG).max(1);
            let fg = out
                .iter()
                .enumerate()
                .filter(|(_, &v)| v != 0)
                .step_by(step)
                .map(|(i, _)| i as u32)
                .collect();
            (Some(out), fg)
        }
    };
    Ok(Decoded {
        shape,
        channels,
        image,
        label,
        foreground,
    })
}
