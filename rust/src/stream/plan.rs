//! Which case every slot of an epoch's batches takes, and what each sample draws (crop
//! origin, flips, quarter turns, angle, intensity and colour factors) before a voxel is read.
use super::config::Config;
use super::rng::{permutation, Rng};
use crate::augment::colour::Jitter;
use crate::errors::Error;
use crate::volume::Decoded;

/// What one batch slot does, drawn before any voxel is touched (and returned to Python).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SampleSpec {
    pub case: usize,
    pub origin: [i64; 3],
    pub flip: [bool; 3],
    pub rot90: u8,
    pub scale: f32,
    pub shift: f32,
    pub gamma: f32,
    pub noise: f32,
    pub noise_seed: u64,
    pub brightness: f32,
    pub contrast: f32,
    pub gain: [f32; 3],
    /// in-plane rotation in degrees (0: none)
    pub angle: f32,
}

impl SampleSpec {
    /// The sample's colour jitter.
    pub fn jitter(&self) -> Jitter {
        Jitter {
            brightness: self.brightness,
            contrast: self.contrast,
            gain: self.gain,
        }
    }
}

/// The plan of one epoch on one shard: the case of every slot of every batch.
pub struct Plan {
    pub labeled: Vec<usize>,
    pub unlabeled: Vec<usize>,
    pub n_batches: usize,
}

pub fn plan(
    cfg: &Config,
    labeled: &[usize],
    unlabeled: &[usize],
    epoch: u64,
) -> Result<Plan, Error> {
    let items = |cases: &[usize], stream: u64| -> Vec<usize> {
        let perm = permutation(cases.len(), &mut Rng::keyed(&[cfg.seed, epoch, stream, 0]));
        perm.iter()
            .enumerate()
            .filter(|(pos, _)| pos % cfg.shards == cfg.shard)
            .flat_map(|(_, &i)| std::iter::repeat_n(cases[i], cfg.samples_per_volume))
            .collect()
    };
    let l = items(labeled, 1);
    let u = items(unlabeled, 2);
    let (primary, size, what) = if cfg.labeled_batch > 0 {
        (&l, cfg.labeled_batch, "labelled")
    } else {
        (&u, cfg.unlabeled_batch, "unlabelled")
    };
    let n_batches = primary.len() / size.max(1);
    if n_batches == 0 {
        return Err(Error::InvalidArgument(format!(
            "shard {} of {} has {} {what} samples this epoch, fewer than one batch of {size}",
            cfg.shard,
            cfg.shards,
            primary.len()
        )));
    }
    if cfg.unlabeled_batch > 0 && u.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "shard {} of {} has no unlabelled case",
            cfg.shard, cfg.shards
        )));
    }
    Ok(Plan {
        labeled: l,
        unlabeled: u,
        n_batches,
    })
}

pub fn draw(cfg: &Config, vol: &Decoded, case: usize, rng: &mut Rng) -> SampleSpec {
    let p = cfg.patch;
    let s = vol.shape;
    let use_fg = !vol.foreground.is_empty() && rng.uniform() < cfg.foreground_prob;
    let centre = if use_fg {
        let at = vol.foreground[rng.below(vol.foreground.len())] as usize;
        Some([at / (s[1] * s[2]), (at / s[2]) % s[1], at % s[2]])
    } else {
        None
    };
    let mut origin = [0i64; 3];
    for d in 0..3 {
        let lo = (s[d] as i64 - p[d] as i64).min(0);
        let hi = (s[d] as i64 - p[d] as i64).max(0);
        origin[d] = match centre {
            Some(c) => (c[d] as i64 - p[d] as i64 / 2).clamp(lo, hi),
            None => lo + rng.below((hi - lo + 1) as usize) as i64,
        };
    }
    let mut flip = [false; 3];
    for (f, &allowed) in flip.iter_mut().zip(&cfg.flip) {
        *f = allowed && rng.uniform() < 0.5;
    }
    let rot90 = match cfg.rot90 {
        Some((a, b)) if p[a] == p[b] => rng.below(4) as u8,
        _ => 0,
    };
    let scale = rng.maybe(cfg.scale, 1.0);
    let shift = rng.maybe(cfg.shift, 0.0);
    let gamma = rng.maybe(cfg.gamma, 1.0);
    let noise = match cfg.noise {
        Some((std, prob)) if rng.uniform() < prob as f64 => std,
        _ => 0.0,
    };
    let noise_seed = rng.next_u64();
    let brightness = rng.maybe(cfg.brightness, 1.0);
    let contrast = rng.maybe(cfg.contrast, 1.0);
    let gain = [
        rng.maybe(cfg.gain, 1.0),
        rng.maybe(cfg.gain, 1.0),
        rng.maybe(cfg.gain, 1.0),
    ];
    // drawn last, so streams without rotation keep their draws
    let angle = rng.maybe(cfg.rotation, 0.0);
    SampleSpec {
        case,
        origin,
        flip,
        rot90,
        scale,
        shift,
        gamma,
        noise,
        noise_seed,
        brightness,
        contrast,
        gain,
        angle,
    }
}
