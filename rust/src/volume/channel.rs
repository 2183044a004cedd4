//! One channel of a decoded volume: its voxels as stored, nibabel's scaling, and the
//! normalisation computed from the whole channel (or from its statistics file).
use std::sync::{Arc, OnceLock};

use crate::io::nifti::{apply_scaling, with_voxel_type, DType, Voxel};

/// How image intensities are normalised, per channel, from statistics of the whole volume.
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

/// `(clamp(v, lo, hi) - sub) * mul`, in float64 like the reference.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ValueMap {
    lo: f64,
    hi: f64,
    sub: f64,
    mul: f64,
}

impl ValueMap {
    pub const IDENTITY: ValueMap = ValueMap {
        lo: f64::NEG_INFINITY,
        hi: f64::INFINITY,
        sub: 0.0,
        mul: 1.0,
    };

    /// [lo, hi, sub, mul], as a statistics file stores them
    pub(super) fn to_array(self) -> [f64; 4] {
        [self.lo, self.hi, self.sub, self.mul]
    }

    pub(super) fn from_array([lo, hi, sub, mul]: [f64; 4]) -> ValueMap {
        ValueMap { lo, hi, sub, mul }
    }

    #[inline]
    pub(super) fn apply(&self, v: f64) -> f32 {
        ((v.clamp(self.lo, self.hi) - self.sub) * self.mul) as f32
    }
}

/// One channel's voxels: `len` values of `dtype` from byte `start` of a shared buffer (the
/// channels of a 4D file share one), scaled as nibabel scales them, then `map`ped.
#[derive(Clone)]
pub struct Channel {
    pub(super) words: Arc<Vec<u64>>,
    pub(super) start: usize,
    pub(super) len: usize,
    pub(super) dtype: DType,
    pub(super) scaling: Option<(f64, f64)>,
    pub map: ValueMap,
    /// 8- and 16-bit channels: every possible value through scaling and `map` (and the map
    /// it was built for), made by the first crop large enough to repay it
    pub(super) lut: OnceLock<(ValueMap, Box<[f32]>)>,
}

/// Voxel value as nibabel gives it, rounded once to float32 as the float32 array the
/// reference normalises.
#[inline]
pub fn scaled<T: Voxel>(v: T, scaling: Option<(f64, f64)>) -> f64 {
    apply_scaling(v.to_f64(), scaling) as f32 as f64
}

impl Channel {
    /// `len` values of `dtype` from byte `start` of `words`, used as stored (2D images:
    /// float32 in their final range, uint8 labels).
    pub(super) fn stored(words: Arc<Vec<u64>>, start: usize, len: usize, dtype: DType) -> Channel {
        Channel {
            words,
            start,
            len,
            dtype,
            scaling: None,
            map: ValueMap::IDENTITY,
            lut: OnceLock::new(),
        }
    }

    /// Stored as `dtype` and used as stored: no header scaling, identity map.
    pub(super) fn is_plain(&self, dtype: DType) -> bool {
        self.dtype == dtype && self.scaling.is_none() && self.map == ValueMap::IDENTITY
    }

    pub(super) fn values<T: Voxel>(&self) -> &[T] {
        let bytes = bytemuck::cast_slice::<u64, u8>(&self.words);
        // `nifti::Volume::aligned` puts voxels at an offset their size divides
        bytemuck::cast_slice(&bytes[self.start..self.start + self.len * std::mem::size_of::<T>()])
    }

    /// Visit every voxel's scaled value (before `map`).
    pub(super) fn for_each(&self, mut f: impl FnMut(f64)) {
        let s = self.scaling;
        with_voxel_type!(self.dtype, T, {
            for &v in self.values::<T>() {
                f(scaled(v, s));
            }
        })
    }

    /// (scaled value, count) of every value present, ascending, for 8- and 16-bit voxels:
    /// one histogram pass replaces the passes over every voxel that the statistics need,
    /// and gives exact percentiles without sorting. None for wider types.
    pub(super) fn value_counts(&self) -> Option<Vec<(f64, u64)>> {
        fn histogram<T: Voxel>(values: &[T], bins: usize, bin: impl Fn(T) -> usize) -> Vec<u64> {
            let mut counts = vec![0u64; bins];
            for &v in values {
                counts[bin(v)] += 1;
            }
            counts
        }
        let (counts, first): (Vec<u64>, i64) = match self.dtype {
            DType::U8 => (histogram(self.values::<u8>(), 256, |v| v as usize), 0),
            DType::I8 => (
                histogram(self.values::<i8>(), 256, |v| (v as i16 + 128) as usize),
                -128,
            ),
            DType::U16 => (histogram(self.values::<u16>(), 1 << 16, |v| v as usize), 0),
            DType::I16 => (
                histogram(self.values::<i16>(), 1 << 16, |v| {
                    (v as i32 + 32768) as usize
                }),
                -32768,
            ),
            _ => return None,
        };
        let mut pairs: Vec<(f64, u64)> = counts
            .iter()
            .enumerate()
            .filter(|(_, &c)| c > 0)
            .map(|(b, &c)| (scaled((first + b as i64) as f64, self.scaling), c))
            .collect();
        pairs.sort_by(|a, b| a.0.total_cmp(&b.0)); // a negative slope reverses the bins
        Some(pairs)
    }

    /// `map(scaled(v))` for every value v of this 8- or 16-bit channel's type, indexed by
    /// v's bits (`size` entries).
    pub(super) fn table(&self, size: usize) -> Box<[f32]> {
        let (s, map) = (self.scaling, self.map);
        let f = |v: f64| map.apply(apply_scaling(v, s) as f32 as f64);
        (0..size)
            .map(|i| match self.dtype {
                DType::I8 => f(i as u8 as i8 as f64),
                DType::I16 => f(i as u16 as i16 as f64),
                _ => f(i as f64),
            })
            .collect()
    }

    /// The normalisation of `norm` from this channel's own statistics.
    pub(super) fn normalisation(&self, norm: Norm) -> ValueMap {
        if matches!(norm, Norm::None | Norm::Window { .. }) {
            return fixed_map(norm); // no statistics: no histogram pass
        }
        let counts = self.value_counts();
        normalise(norm, counts.as_deref(), Some(self)).expect("the voxels give every statistic")
    }
}

/// `f(value, weight)` over a channel: its value counts when given, else every voxel.
fn visit(counts: Option<&[(f64, u64)]>, voxels: Option<&Channel>, mut f: impl FnMut(f64, u64)) {
    match (counts, voxels) {
        (Some(pairs), _) => pairs.iter().for_each(|&(v, c)| f(v, c)),
        (None, Some(ch)) => ch.for_each(|v| f(v, 1)),
        (None, None) => unreachable!("callers pass counts or voxels"),
    }
}

/// The normalisation of `norm` from a channel's value counts (8- and 16-bit voxels) or,
/// without them, its voxels; None when neither is given and `norm` needs statistics. The
/// same arithmetic whichever is given, so a map from stored counts (`volume_stats`) equals
/// the one from the voxels bit for bit.
pub fn normalise(
    norm: Norm,
    counts: Option<&[(f64, u64)]>,
    voxels: Option<&Channel>,
) -> Option<ValueMap> {
    if matches!(norm, Norm::None | Norm::Window { .. }) {
        return Some(fixed_map(norm));
    }
    if counts.is_none() && voxels.is_none() {
        return None;
    }
    let (lo, hi) = match norm {
        Norm::Percentile { lo, hi } => match (counts, voxels) {
            (Some(pairs), _) => count_percentiles(pairs, lo, hi),
            (None, Some(ch)) => {
                let mut values = Vec::with_capacity(ch.len);
                ch.for_each(|v| values.push(v as f32));
                let (a, b) = percentiles(&mut values, lo, hi);
                (a as f64, b as f64)
            }
            (None, None) => unreachable!("checked above"),
        },
        _ => (f64::NEG_INFINITY, f64::INFINITY),
    };
    let mut any_nonzero = false;
    if norm == (Norm::ZScore { nonzero: true }) {
        visit(counts, voxels, |v, _| any_nonzero |= v != 0.0);
    }
    // mean and population std (numpy's, ddof 0) of the clamped values that count, in
    // two passes for accuracy; std floored at 1e-6
    let keep = |v: f64| !any_nonzero || v != 0.0;
    let (mut n, mut sum) = (0u64, 0f64);
    visit(counts, voxels, |v, c| {
        if keep(v) {
            n += c;
            sum += v.clamp(lo, hi) * c as f64;
        }
    });
    let mean = if n == 0 { 0.0 } else { sum / n as f64 };
    let mut sq = 0f64;
    visit(counts, voxels, |v, c| {
        if keep(v) {
            sq += (v.clamp(lo, hi) - mean).powi(2) * c as f64;
        }
    });
    let std = if n == 0 {
        1.0
    } else {
        (sq / n as f64).sqrt().max(1e-6)
    };
    Some(ValueMap {
        lo,
        hi,
        sub: mean,
        mul: 1.0 / std,
    })
}

/// The map of a normalisation that needs no statistics (none, window).
fn fixed_map(norm: Norm) -> ValueMap {
    match norm {
        Norm::Window { lo, hi } => ValueMap {
            lo: lo as f64,
            hi: hi as f64,
            sub: lo as f64,
            mul: 1.0 / (hi - lo).max(1e-6) as f64,
        },
        _ => ValueMap::IDENTITY,
    }
}

/// Index of the `q`-th percentile among `n` sorted values, nearest rank: round(q · (n − 1)).
fn nearest_rank(q: f64, n: usize) -> usize {
    ((q / 100.0) * (n - 1) as f64).round() as usize
}

/// Nearest-rank percentiles from ascending value counts.
fn count_percentiles(pairs: &[(f64, u64)], lo: f64, hi: f64) -> (f64, f64) {
    let n: u64 = pairs.iter().map(|p| p.1).sum();
    if n == 0 {
        return (0.0, 0.0); // an empty channel: nothing to clip
    }
    let at = |q: f64| {
        let rank = nearest_rank(q, n as usize) as u64;
        let mut seen = 0;
        for &(v, c) in pairs {
            seen += c;
            if rank < seen {
                return v;
            }
        }
        pairs[pairs.len() - 1].0
    };
    (at(lo), at(hi))
}

/// The values at the [lo, hi] percentiles, nearest rank.
fn percentiles(values: &mut [f32], lo: f64, hi: f64) -> (f32, f32) {
    if values.is_empty() {
        return (0.0, 0.0);
    }
    let (i, j) = (
        nearest_rank(lo, values.len()),
        nearest_rank(hi, values.len()),
    );
    let j = j.max(i);
    let (_, &mut a, rest) = values.select_nth_unstable_by(i, f32::total_cmp);
    let b = if j == i {
        a
    } else {
        *rest.select_nth_unstable_by(j - i - 1, f32::total_cmp).1
    };
    (a, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut v: Vec<f32> = (0..101).rev().map(|i| i as f32).collect();
        assert_eq!(percentiles(&mut v, 1.0, 99.0), (1.0, 99.0));
        assert_eq!(percentiles(&mut v, 0.5, 99.5), (1.0, 100.0)); // ranks round half up
        let mut v = vec![3.0f32];
        assert_eq!(percentiles(&mut v, 0.0, 100.0), (3.0, 3.0));
        assert_eq!(percentiles(&mut [], 1.0, 99.0), (0.0, 0.0));
        assert_eq!(count_percentiles(&[], 1.0, 99.0), (0.0, 0.0));
        let pairs = [(-2.0, 1), (0.5, 98), (7.0, 2)]; // 101 values
        assert_eq!(count_percentiles(&pairs, 0.0, 100.0), (-2.0, 7.0));
        assert_eq!(count_percentiles(&pairs, 1.0, 99.0), (0.5, 7.0));
        let mut v: Vec<f32> = vec![5.0, 1.0, 4.0, 2.0, 3.0];
        assert_eq!(percentiles(&mut v, 50.0, 50.0), (3.0, 3.0));
    }
}
