//! What a stream does: patch, batch sizes, sampling, augmentation ranges, normalisation,
//! sharding, threads. `Settings` is what a stream is asked for, in the words of
//! `qgfast.data.VolumeStream` / `ImageStream` (their keyword names); `Settings::check`
//! turns it into the engine's `Config`, checking every value once, so no other layer
//! checks them again.
use pyo3::FromPyObject;

use crate::augment::colour::PostNorm;
use crate::augment::rotate;
use crate::errors::Error;
use crate::io::jpeg;
use crate::volume::Norm;

/// (low, high, probability) of one intensity augmentation.
pub type Range = (f32, f32, f32);

#[derive(Debug, Clone)]
pub struct Config {
    pub patch: [usize; 3],
    pub labeled_batch: usize,
    pub unlabeled_batch: usize,
    pub samples_per_volume: usize,
    pub foreground_prob: f64,
    pub cache_bytes: usize,
    pub flip: [bool; 3],
    pub rot90: Option<(usize, usize)>,
    /// rotation by an angle in degrees drawn from the range (with its probability), in
    /// `rotation_plane`, sampled from the volume (`rotate`)
    pub rotation: Option<Range>,
    pub rotation_plane: (usize, usize),
    pub scale: Option<Range>,
    pub shift: Option<Range>,
    pub gamma: Option<Range>,
    pub noise: Option<(f32, f32)>,
    /// 2D colour jitter in [0, 1] pixel space (torchvision order: brightness, contrast,
    /// per-channel gain), each clamped to [0, 1]
    pub brightness: Option<Range>,
    pub contrast: Option<Range>,
    pub gain: Option<Range>,
    pub norm: Norm,
    /// per-sample normalisation after augmentation (2D: ImageNet or per-image)
    pub post_norm: PostNorm,
    pub seed: u64,
    pub shard: usize,
    pub shards: usize,
    pub threads: usize,
    pub prefetch: usize,
    pub skip_errors: bool,
    pub max_bytes: usize,
    /// which decoder reads JPEG images (`jpeg`)
    pub jpeg: jpeg::Choice,
}

/// A stream's options as Python passes them (a dict keyed by these names; every key
/// present, `Settings::KEYS` and no other).
#[derive(Debug, Clone, FromPyObject)]
#[pyo3(from_item_all)]
pub struct Settings {
    pub patch_size: Vec<i64>,
    pub labeled_batch_size: i64,
    pub unlabeled_batch_size: i64,
    pub samples_per_volume: i64,
    pub foreground_prob: f64,
    pub cache_bytes: usize,
    pub flip_axes: Vec<i64>,
    pub rot90_plane: Option<(i64, i64)>,
    pub rotation: Option<(f64, f64)>,
    pub rotation_prob: f64,
    pub rotation_plane: (i64, i64),
    pub scale: Option<(f64, f64)>,
    pub shift: Option<(f64, f64)>,
    pub gamma: Option<(f64, f64)>,
    pub noise_std: f64,
    pub intensity_prob: f64,
    pub normalisation: String,
    pub clip: (f64, f64),
    pub window: (f64, f64),
    pub brightness: Option<(f64, f64)>,
    pub contrast: Option<(f64, f64)>,
    pub gain: Option<(f64, f64)>,
    pub jitter_prob: f64,
    pub post_norm: String,
    pub post_mean: Vec<f32>,
    pub post_std: Vec<f32>,
    pub seed: u64,
    pub rank: i64,
    pub world_size: i64,
    pub threads: usize,
    pub prefetch: usize,
    pub on_error: String,
    pub max_bytes: usize,
    pub jpeg_decoder: String,
}

/// The normalisations of whole volumes, by name.
pub const NORMALISATIONS: [&str; 5] = ["zscore", "zscore-nonzero", "percentile", "window", "none"];
/// The per-sample normalisations after augmentation, by name.
pub const POST_NORMS: [&str; 3] = ["none", "per-image", "mean-std"];

fn invalid(msg: String) -> Error {
    Error::InvalidArgument(msg)
}

/// Two distinct axes of 0..2.
fn plane(name: &str, (a, b): (i64, i64)) -> Result<(usize, usize), Error> {
    if a == b || !(0..3).contains(&a) || !(0..3).contains(&b) {
        return Err(invalid(format!(
            "{name} must be two distinct axes of 0..2, got ({a}, {b})"
        )));
    }
    Ok((a as usize, b as usize))
}

fn probability(name: &str, p: f64) -> Result<f32, Error> {
    if !(0.0..=1.0).contains(&p) {
        return Err(invalid(format!("{name} must be in [0, 1], got {p}")));
    }
    Ok(p as f32)
}

/// A (low, high) range drawn with probability `prob`.
fn range(name: &str, value: Option<(f64, f64)>, prob: f32) -> Result<Option<Range>, Error> {
    let Some((lo, hi)) = value else {
        return Ok(None);
    };
    if !(lo.is_finite() && hi.is_finite()) || lo > hi {
        return Err(invalid(format!(
            "{name} range must be finite (low, high) with low <= high, got ({lo}, {hi})"
        )));
    }
    Ok(Some((lo as f32, hi as f32, prob)))
}

fn count(name: &str, v: i64, min: i64) -> Result<usize, Error> {
    if v < min {
        return Err(invalid(format!("{name} must be >= {min}, got {v}")));
    }
    Ok(v as usize)
}

impl Settings {
    /// The dict keys Python passes, exactly.
    pub const KEYS: [&'static str; 34] = [
        "patch_size",
        "labeled_batch_size",
        "unlabeled_batch_size",
        "samples_per_volume",
        "foreground_prob",
        "cache_bytes",
        "flip_axes",
        "rot90_plane",
        "rotation",
        "rotation_prob",
        "rotation_plane",
        "scale",
        "shift",
        "gamma",
        "noise_std",
        "intensity_prob",
        "normalisation",
        "clip",
        "window",
        "brightness",
        "contrast",
        "gain",
        "jitter_prob",
        "post_norm",
        "post_mean",
        "post_std",
        "seed",
        "rank",
        "world_size",
        "threads",
        "prefetch",
        "on_error",
        "max_bytes",
        "jpeg_decoder",
    ];

    /// The engine's config, every value checked; an error names the option and the value.
    pub fn check(&self) -> Result<Config, Error> {
        let patch: [i64; 3] = self
            .patch_size
            .as_slice()
            .try_into()
            .ok()
            .filter(|p: &[i64; 3]| p.iter().all(|&v| v >= 1))
            .ok_or_else(|| {
                invalid(format!(
                    "patch_size must be 3 positive ints, got {:?}",
                    self.patch_size
                ))
            })?;
        let patch = patch.map(|v| v as usize);
        let labeled_batch = count("labeled_batch_size", self.labeled_batch_size, 0)?;
        let unlabeled_batch = count("unlabeled_batch_size", self.unlabeled_batch_size, 0)?;
        if labeled_batch + unlabeled_batch == 0 {
            return Err(invalid(
                "labeled_batch_size + unlabeled_batch_size must be > 0".into(),
            ));
        }
        let samples_per_volume = count("samples_per_volume", self.samples_per_volume, 1)?;
        let mut flip = [false; 3];
        for &axis in &self.flip_axes {
            let d = usize::try_from(axis)
                .ok()
                .filter(|&d| d < 3)
                .ok_or_else(|| invalid(format!("flip_axes must be axes of 0..2, got {axis}")))?;
            flip[d] = true;
        }
        let rot90 = self
            .rot90_plane
            .map(|p| plane("rot90_plane", p))
            .transpose()?;
        let rotation_plane = plane("rotation_plane", self.rotation_plane)?;
        let rotation_prob = probability("rotation_prob", self.rotation_prob)?;
        let intensity = probability("intensity_prob", self.intensity_prob)?;
        let jitter = probability("jitter_prob", self.jitter_prob)?;
        if !(self.noise_std.is_finite() && self.noise_std >= 0.0) {
            return Err(invalid(format!(
                "noise_std must be finite and >= 0, got {}",
                self.noise_std
            )));
        }
        let norm = match self.normalisation.as_str() {
            "none" => Norm::None,
            "zscore" => Norm::ZScore { nonzero: false },
            "zscore-nonzero" => Norm::ZScore { nonzero: true },
            "percentile" => {
                let (lo, hi) = self.clip;
                if !(0.0 <= lo && lo <= hi && hi <= 100.0) {
                    return Err(invalid(format!(
                        "clip must be percentiles 0 <= low <= high <= 100, got ({lo}, {hi})"
                    )));
                }
                Norm::Percentile { lo, hi }
            }
            "window" => {
                let (lo, hi) = self.window;
                if !(lo.is_finite() && hi.is_finite() && lo < hi) {
                    return Err(invalid(format!(
                        "window must be finite (low, high) with low < high, got ({lo}, {hi})"
                    )));
                }
                Norm::Window {
                    lo: lo as f32,
                    hi: hi as f32,
                }
            }
            other => {
                return Err(invalid(format!(
                    "normalisation must be one of {NORMALISATIONS:?}, got {other:?}"
                )))
            }
        };
        let (mean, std) = (&self.post_mean, &self.post_std);
        let post_norm = match self.post_norm.as_str() {
            "none" => PostNorm::None,
            "per-image" => PostNorm::PerImage,
            "mean-std"
                if !mean.is_empty()
                    && mean.len() == std.len()
                    && mean.iter().chain(std).all(|v| v.is_finite())
                    && std.iter().all(|&v| v > 0.0) =>
            {
                PostNorm::MeanStd(mean.clone(), std.clone())
            }
            "mean-std" => {
                return Err(invalid(format!(
                    "post_norm \"mean-std\" needs finite means and positive stds of one \
                     length, got {mean:?} and {std:?}"
                )))
            }
            other => {
                return Err(invalid(format!(
                    "post_norm must be one of {POST_NORMS:?}, got {other:?}"
                )))
            }
        };
        if !(0 <= self.rank && self.rank < self.world_size) {
            return Err(invalid(format!(
                "need 0 <= rank < world_size, got rank {} of {}",
                self.rank, self.world_size
            )));
        }
        let skip_errors = match self.on_error.as_str() {
            "raise" => false,
            "skip" => true,
            other => {
                return Err(invalid(format!(
                    "on_error must be 'raise' or 'skip', got {other:?}"
                )))
            }
        };
        let cfg = Config {
            patch,
            labeled_batch,
            unlabeled_batch,
            samples_per_volume,
            foreground_prob: f64::from(probability("foreground_prob", self.foreground_prob)?),
            cache_bytes: self.cache_bytes,
            flip,
            rot90,
            rotation: range("rotation", self.rotation, rotation_prob)?,
            rotation_plane,
            scale: range("scale", self.scale, intensity)?,
            shift: range("shift", self.shift, intensity)?,
            gamma: range("gamma", self.gamma, intensity)?,
            noise: (self.noise_std > 0.0).then_some((self.noise_std as f32, intensity)),
            brightness: range("brightness", self.brightness, jitter)?,
            contrast: range("contrast", self.contrast, jitter)?,
            gain: range("gain", self.gain, jitter)?,
            norm,
            post_norm,
            seed: self.seed,
            shard: self.rank as usize,
            shards: self.world_size as usize,
            threads: self.threads,
            prefetch: self.prefetch,
            skip_errors,
            max_bytes: self.max_bytes,
            jpeg: jpeg::Choice::parse(&self.jpeg_decoder)?,
        };
        if cfg.rotation.is_some()
            && rotate::Window::max_window(cfg.patch, cfg.rotation_plane) > u32::MAX as u128
        {
            return Err(invalid(format!(
                "patch {:?} is too large to rotate (its rotation window would pass 2^32 voxels)",
                cfg.patch
            )));
        }
        Ok(cfg)
    }
}
