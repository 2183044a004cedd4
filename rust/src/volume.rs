//! Decoded volumes as the stream caches them: the voxels exactly as the file stores them
//! (NIfTI order, x fastest, on-disk type) plus, per channel, the normalisation as a clamp
//! and an affine map applied only to the voxels a crop reads.
//!
//! Why not a normalised float32 copy in C order: that copy cost a second pass over every
//! voxel, a transposition and twice the memory of an int16 volume, for every decode; a
//! crop reads ~1 % of an LA volume. Statistics (mean, std, percentiles) still come from one
//! pass over all voxels, so a crop is normalised exactly as the whole volume would be.
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use crate::buffer::Spares;
use crate::errors::Error;
use crate::nifti::{self, apply_scaling, with_voxel_type, DType, Voxel};

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
    pub(crate) fn to_array(self) -> [f64; 4] {
        [self.lo, self.hi, self.sub, self.mul]
    }

    pub(crate) fn from_array([lo, hi, sub, mul]: [f64; 4]) -> ValueMap {
        ValueMap { lo, hi, sub, mul }
    }

    #[inline]
    fn apply(&self, v: f64) -> f32 {
        ((v.clamp(self.lo, self.hi) - self.sub) * self.mul) as f32
    }
}

/// One channel's voxels: `len` values of `dtype` from byte `start` of a shared buffer (the
/// channels of a 4D file share one), scaled as nibabel scales them, then `map`ped.
#[derive(Clone)]
pub struct Channel {
    words: Arc<Vec<u64>>,
    start: usize,
    len: usize,
    dtype: DType,
    scaling: Option<(f64, f64)>,
    pub map: ValueMap,
    /// 8- and 16-bit channels: every possible value through scaling and `map` (and the map
    /// it was built for), made by the first crop large enough to repay it
    lut: OnceLock<(ValueMap, Box<[f32]>)>,
}

/// Voxel value as nibabel gives it, rounded once to float32 as the float32 array the
/// reference normalises.
#[inline]
fn scaled<T: Voxel>(v: T, scaling: Option<(f64, f64)>) -> f64 {
    apply_scaling(v.to_f64(), scaling) as f32 as f64
}

impl Channel {
    /// `len` values of `dtype` from byte `start` of `words`, used as stored (2D images:
    /// float32 in their final range, uint8 labels).
    fn stored(words: Arc<Vec<u64>>, start: usize, len: usize, dtype: DType) -> Channel {
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
    fn is_plain(&self, dtype: DType) -> bool {
        self.dtype == dtype && self.scaling.is_none() && self.map == ValueMap::IDENTITY
    }

    fn values<T: Voxel>(&self) -> &[T] {
        let bytes = bytemuck::cast_slice::<u64, u8>(&self.words);
        // `nifti::Volume::aligned` puts voxels at an offset their size divides
        bytemuck::cast_slice(&bytes[self.start..self.start + self.len * std::mem::size_of::<T>()])
    }

    /// Visit every voxel's scaled value (before `map`).
    fn for_each(&self, mut f: impl FnMut(f64)) {
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
    pub(crate) fn value_counts(&self) -> Option<Vec<(f64, u64)>> {
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
    fn table(&self, size: usize) -> Box<[f32]> {
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
    fn normalisation(&self, norm: Norm) -> ValueMap {
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
pub(crate) fn normalise(
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

pub struct Decoded {
    /// spatial shape [X, Y, Z]
    pub shape: [usize; 3],
    /// element strides of x, y, z in every channel and the label
    pub strides: [usize; 3],
    pub channels: Vec<Channel>,
    /// label values, checked to be whole numbers in 0..=255 at decode
    pub label: Option<Channel>,
    /// linear indices (C order over [X, Y, Z]) of up to `MAX_FG` foreground voxels
    pub foreground: Vec<u32>,
    /// where the voxels are when they were not read (`open_by_stats`): `read_block` reads
    /// a crop's block from there; the channels hold no voxels then
    files: Option<Arc<Files>>,
    bytes: usize,
    /// buffers go back to the thread's spares when dropped (2D images)
    spare: bool,
}

/// A 2D image's buffers go back to the thread's spares when the last user lets go.
impl Drop for Decoded {
    fn drop(&mut self) {
        if !self.spare {
            return;
        }
        for ch in self.channels.iter_mut().chain(self.label.as_mut()) {
            let words = std::mem::replace(&mut ch.words, Arc::new(Vec::new()));
            if let Ok(v) = Arc::try_unwrap(words) {
                crate::buffer::keep_spare(v);
            }
        }
    }
}

const MAX_FG: usize = 100_000;

impl Decoded {
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Give a decoded volume's buffers to `spares` (those no other volume shares); a 2D
    /// image's go back to its thread's spares when dropped instead.
    pub fn recycle(mut self, spares: &Spares) {
        if self.spare {
            return;
        }
        for ch in self.channels.drain(..).chain(self.label.take()) {
            if let Ok(words) = Arc::try_unwrap(ch.words) {
                spares.give(words);
            }
        }
    }

    /// A 2D case of `size` = [H, W]: `c` float32 planes [C][H·W] (row-major) in one buffer,
    /// and an optional uint8 label [H·W]. No foreground list: an ImageStream crop is the
    /// whole image, so there is no position to sample.
    pub fn from_2d(
        size: [usize; 2],
        c: usize,
        planes: Vec<u64>,
        label: Option<Vec<u64>>,
    ) -> Decoded {
        let n = size[0] * size[1];
        assert!(planes.len() * 2 >= c * n, "2D planes buffer too short");
        let planes = Arc::new(planes);
        let channels: Vec<Channel> = (0..c)
            .map(|i| Channel::stored(planes.clone(), i * n * 4, n, DType::F32))
            .collect();
        let label = label.map(|l| {
            assert!(l.len() * 8 >= n, "2D label buffer too short");
            Channel::stored(Arc::new(l), 0, n, DType::U8)
        });
        let shape = [size[0], size[1], 1];
        let mut vol = Decoded::assemble(shape, [size[1], 1, 1], channels, label, Vec::new());
        vol.spare = true;
        vol
    }

    fn assemble(
        shape: [usize; 3],
        strides: [usize; 3],
        channels: Vec<Channel>,
        label: Option<Channel>,
        foreground: Vec<u32>,
    ) -> Decoded {
        let mut buffers: Vec<&Arc<Vec<u64>>> = Vec::new();
        for ch in channels.iter().chain(&label) {
            if !buffers.iter().any(|b| Arc::ptr_eq(b, &ch.words)) {
                buffers.push(&ch.words);
            }
        }
        let bytes = buffers.iter().map(|b| b.len() * 8).sum::<usize>() + foreground.len() * 4;
        Decoded {
            shape,
            strides,
            channels,
            label,
            foreground,
            files: None,
            bytes,
            spare: false,
        }
    }

    /// Channel `c`'s stored float32 values when the crop at `origin` of `patch` is the
    /// whole buffer as stored (2D images), so a crop would only copy them.
    pub fn whole_image(&self, c: usize, origin: [i64; 3], patch: [usize; 3]) -> Option<&[f32]> {
        let ch = &self.channels[c];
        (self.is_whole(origin, patch) && ch.is_plain(DType::F32)).then(|| ch.values::<f32>())
    }

    /// The label's stored uint8 values under the same condition as `whole_image`.
    pub fn whole_label(&self, origin: [i64; 3], patch: [usize; 3]) -> Option<&[u8]> {
        let ch = self.label.as_ref()?;
        (self.is_whole(origin, patch) && ch.is_plain(DType::U8)).then(|| ch.values::<u8>())
    }

    fn is_whole(&self, origin: [i64; 3], patch: [usize; 3]) -> bool {
        origin == [0; 3]
            && self.shape == patch
            && self.strides == [patch[1] * patch[2], patch[2], 1]
    }

    /// Crop channel `c` at `origin` (zero outside the volume) into `out`, C order over the
    /// patch, normalised.
    pub fn crop_image(&self, c: usize, region: Region, out: &mut [f32]) {
        let ch = &self.channels[c];
        if ch.is_plain(DType::F32) {
            // (2D images) the identity map through float64 changes no value
            return self.copy(ch.values(), region, out);
        }
        if self.crop_by_table(ch, region, out) {
            return;
        }
        let map = ch.map;
        self.crop(ch, region, out, |v| map.apply(v));
    }

    /// `crop_image` of an 8- or 16-bit channel through its value table (`Channel::lut`, the
    /// same function tabulated: equal bit for bit): a load per voxel instead of the float64
    /// scaling and map. False (nothing written) for other types, or, while no table is
    /// built, a crop smaller than the table or a volume under 16 times its size.
    fn crop_by_table(&self, ch: &Channel, region: Region, out: &mut [f32]) -> bool {
        let size = match ch.dtype {
            DType::U8 | DType::I8 => 1 << 8,
            DType::U16 | DType::I16 => 1 << 16,
            _ => return false,
        };
        // a table at most 1/16 of the channel's own bytes (the cache budget counts voxels,
        // not tables), built by a crop that reads at least as many voxels as it has entries
        let small_volume = 16 * size * 4 > ch.len * ch.dtype.size();
        let small_crop = region.patch.iter().product::<usize>() < size;
        if ch.lut.get().is_none() && (small_volume || small_crop) {
            return false;
        }
        let (built_for, lut) = ch.lut.get_or_init(|| (ch.map, ch.table(size)));
        if *built_for != ch.map {
            return false;
        }
        match ch.dtype {
            DType::U8 => self.lookup::<_, 256>(ch.values::<u8>(), lut, region, out, |v| v as usize),
            DType::I8 => {
                self.lookup::<_, 256>(ch.values::<i8>(), lut, region, out, |v| v as u8 as usize)
            }
            DType::U16 => {
                self.lookup::<_, 65536>(ch.values::<u16>(), lut, region, out, |v| v as usize)
            }
            DType::I16 => {
                self.lookup::<_, 65536>(ch.values::<i16>(), lut, region, out, |v| v as u16 as usize)
            }
            _ => unreachable!("8- and 16-bit types only (above)"),
        }
        true
    }

    /// `gather` of `values` through a table of N entries, `index` a value's entry (a table of
    /// fixed size: an index from a u8 or u16 needs no bounds check).
    fn lookup<T: Copy, const N: usize>(
        &self,
        values: &[T],
        lut: &[f32],
        region: Region,
        out: &mut [f32],
        index: impl Fn(T) -> usize,
    ) {
        let table: &[f32; N] = lut.try_into().expect("a table of the type's size");
        gather(values, self.shape, self.strides, region, out, |v| {
            table[index(v)]
        })
    }

    /// Crop the label like `crop_image` (values were checked to fit uint8 at decode).
    pub fn crop_label(&self, region: Region, out: &mut [u8]) {
        if let Some(label) = &self.label {
            if label.is_plain(DType::U8) {
                return self.copy(label.values(), region, out);
            }
            self.crop(label, region, out, |v| v as u8);
        }
    }

    /// `gather` of a plain channel's values as stored (rows copied whole).
    fn copy<T: Copy + Default>(&self, values: &[T], region: Region, out: &mut [T]) {
        gather(values, self.shape, self.strides, region, out, |v| v)
    }

    /// `gather` of one channel's scaled values through `conv`.
    fn crop<O: Copy + Default>(
        &self,
        ch: &Channel,
        region: Region,
        out: &mut [O],
        conv: impl Fn(f64) -> O,
    ) {
        let s = ch.scaling;
        let (shape, strides) = (self.shape, self.strides);
        with_voxel_type!(ch.dtype, T, {
            gather(ch.values::<T>(), shape, strides, region, out, |v: T| {
                conv(scaled(v, s))
            })
        })
    }
}

/// Where a crop reads: `patch` voxels from `origin`, mirrored along each axis `flip` marks
/// (output index i reads origin + patch − 1 − i there): flips folded into the crop instead of
/// a rearranging pass over it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Region {
    pub origin: [i64; 3],
    pub patch: [usize; 3],
    pub flip: [bool; 3],
}

impl Region {
    /// The unmirrored crop of `patch` at `origin`.
    pub fn at(origin: [i64; 3], patch: [usize; 3]) -> Region {
        Region {
            origin,
            patch,
            flip: [false; 3],
        }
    }
}

/// out[(x·py + y)·pz + z] = conv(src[(origin + m(x, y, z)) · strides]), m mirroring the
/// flipped axes (`Region`), zero outside `shape`, for any strides. Tuned for the two layouts
/// volumes have: 2D images ([H, W, 1], W contiguous) copy whole rows; NIfTI volumes (x
/// contiguous) go in 16-wide z tiles so each source row is read in order and each output
/// cache line is written whole.
fn gather<T: Copy, O: Copy + Default>(
    src: &[T],
    shape: [usize; 3],
    strides: [usize; 3],
    region: Region,
    out: &mut [O],
    conv: impl Fn(T) -> O,
) {
    let Region {
        origin,
        patch,
        flip,
    } = region;
    let [_, py, pz] = patch;
    let mut lo = [0usize; 3]; // first patch index inside the volume, per axis
    let mut hi = [0usize; 3]; // one past the last
    for d in 0..3 {
        lo[d] = (-origin[d]).clamp(0, patch[d] as i64) as usize;
        hi[d] = (shape[d] as i64 - origin[d]).clamp(lo[d] as i64, patch[d] as i64) as usize;
        if flip[d] {
            // output index i reads crop index patch − 1 − i
            (lo[d], hi[d]) = (patch[d] - hi[d], patch[d] - lo[d]);
        }
    }
    if lo != [0; 3] || hi != patch {
        out.fill(O::default());
    }
    if (0..3).any(|d| lo[d] >= hi[d]) {
        return;
    }
    let at = |d: usize, i: usize| {
        let i = if flip[d] { patch[d] - 1 - i } else { i };
        (origin[d] + i as i64) as usize * strides[d]
    };
    if strides[1] == 1 && patch[2] == 1 {
        // 2D images: [H, W, 1] with W contiguous, copy whole y-runs (backwards when mirrored)
        let run = hi[1] - lo[1];
        for x in lo[0]..hi[0] {
            let dst = &mut out[x * py..][lo[1]..hi[1]];
            let first = at(0, x) + at(1, lo[1]) + at(2, 0);
            if flip[1] {
                let src_row = &src[first + 1 - run..=first];
                for (o, &v) in dst.iter_mut().zip(src_row.iter().rev()) {
                    *o = conv(v);
                }
            } else {
                for (o, &v) in dst.iter_mut().zip(&src[first..][..run]) {
                    *o = conv(v);
                }
            }
        }
        return;
    }
    const TILE: usize = 16;
    for y in lo[1]..hi[1] {
        for z0 in (lo[2]..hi[2]).step_by(TILE) {
            let z1 = (z0 + TILE).min(hi[2]);
            for x in lo[0]..hi[0] {
                let base = at(0, x) + at(1, y);
                let dst = &mut out[(x * py + y) * pz..];
                for z in z0..z1 {
                    dst[z] = conv(src[base + at(2, z)]);
                }
            }
        }
    }
}

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
fn header_channels(
    path: &Path,
    header: &nifti::Header,
    words: Arc<Vec<u64>>,
    start: usize,
) -> Result<([usize; 3], Vec<Channel>), Error> {
    let (s, c) = spatial(&header.shape).map_err(|r| nifti::data(path, r))?;
    let scaling = header.scaling().map_err(|r| nifti::data(path, r))?;
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

/// Linear C-order indices of up to `MAX_FG` nonzero label voxels, evenly strided.
pub(crate) fn sample_foreground(
    label: &Channel,
    shape: [usize; 3],
    strides: [usize; 3],
) -> Vec<u32> {
    // element i of the buffer → C-order index: itself for 2D images (C order already),
    // else from NIfTI's x-fastest (x, y, z)
    let c_order = strides == [shape[1] * shape[2], shape[2], 1];
    let position = |i: usize| {
        if c_order {
            return i as u32;
        }
        let (x, y, z) = (
            i % shape[0],
            (i / shape[0]) % shape[1],
            i / (shape[0] * shape[1]),
        );
        ((x * shape[1] + y) * shape[2] + z) as u32
    };
    fn strided<T: Voxel>(values: &[T], position: impl Fn(usize) -> u32) -> Vec<u32> {
        strided_nonzero(values, MAX_FG)
            .into_iter()
            .map(position)
            .collect()
    }
    if label.scaling.is_some() {
        // a scaled label's zero need not be a raw zero: decide on the scaled values
        let mut nonzero = Vec::with_capacity(label.len);
        label.for_each(|v| nonzero.push(u8::from(v != 0.0)));
        return strided(&nonzero, position);
    }
    with_voxel_type!(label.dtype, T, strided(label.values::<T>(), position))
}

/// Buffer indices of the nonzero values ranked 0, step, 2·step, … in buffer order, where
/// step = ⌈count / max⌉ (`filter(nonzero).step_by(step)`). Two passes over 64-value
/// blocks: one counts each block's nonzeros (a vectorised compare and byte add), the other
/// walks the counts and looks inside a block only where a picked rank falls. A 29 MB
/// label takes a few ms instead of ~28 ms voxel by voxel.
fn strided_nonzero<T: Voxel>(values: &[T], max: usize) -> Vec<usize> {
    const BLOCK: usize = 64; // ≤ 255: a block's count fits the byte it is added in
    let zero = T::zeroed();
    let blocks: Vec<u8> = values
        .chunks(BLOCK)
        .map(|b| b.iter().fold(0u8, |n, &v| n + u8::from(v != zero)))
        .collect();
    let count: usize = blocks.iter().map(|&c| usize::from(c)).sum();
    let step = count.div_ceil(max.max(1)).max(1);
    let mut picked = Vec::with_capacity(count.div_ceil(step));
    let (mut seen, mut next) = (0usize, 0usize); // nonzeros before this block; next rank
    for (b, &c) in blocks.iter().enumerate() {
        let c = usize::from(c);
        if next < seen + c {
            let start = b * BLOCK;
            let mut rank = seen;
            for (i, &v) in values[start..(start + BLOCK).min(values.len())]
                .iter()
                .enumerate()
            {
                if v != zero {
                    if rank == next {
                        picked.push(start + i);
                        next += step;
                    }
                    rank += 1;
                }
            }
        }
        seen += c;
    }
    picked
}

/// An unread channel's file: voxels of channel k start at byte `offset` (4D files: one
/// `FileChannel` per channel, sharing the handle), in the byte order `header` gives.
struct FileChannel {
    file: Arc<std::fs::File>,
    path: PathBuf,
    offset: u64,
    header: Arc<nifti::Header>,
}

/// The files of a volume opened by its statistics (`open_by_stats`), per image channel
/// and for the label.
struct Files {
    channels: Vec<FileChannel>,
    label: Option<FileChannel>,
}

/// Positioned read of exactly `buf.len()` bytes at `offset` (a short read: truncated).
fn read_exact_at(file: &std::fs::File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
    }
    #[cfg(windows)]
    {
        let mut done = 0;
        while done < buf.len() {
            let n = std::os::windows::fs::FileExt::seek_read(
                file,
                &mut buf[done..],
                offset + done as u64,
            )?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            done += n;
        }
        Ok(())
    }
}

impl FileChannel {
    /// The bytes of a block of `b` voxels at `b0` of a volume of `shape`, one positioned read
    /// per z slice (its y rows from the block's first to its last, whole rows between), into
    /// `out` as a [X·(b[1] − 1) + b[0]] × b[2] grid; native byte order.
    fn read(
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
            .map_err(|e| nifti::data(&self.path, format!("cannot read a crop's voxels: {e}")))?;
        }
        nifti::to_native(&self.header, &mut out[..span * b[2]]);
        Ok(())
    }
}

/// Open a case by its statistics files (`volume_stats`) instead of reading it: headers
/// checked against the file sizes, maps and foreground from the statistics, no voxel read.
/// None where any file lacks fresh statistics, is compressed, or `norm` needs what its
/// statistics do not hold: the caller reads the case whole.
fn open_by_stats(
    images: &[PathBuf],
    label: Option<&PathBuf>,
    norm: Norm,
    max_bytes: usize,
) -> Result<Option<Decoded>, Error> {
    use crate::volume_stats::{read_fresh, Role};
    // statistics first: a case without them costs a few failed opens, no header reads
    let mut stats = Vec::with_capacity(images.len());
    for path in images {
        match read_fresh(path, Role::Image) {
            Some(s) => stats.push(s),
            None => return Ok(None),
        }
    }
    let label_stats = match label {
        Some(path) => match read_fresh(path, Role::Label) {
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
            let Some(map) = st.map(norm) else {
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

/// Label values must be whole numbers in 0..=255 (they are cropped as uint8).
pub(crate) fn check_label(path: &Path, ch: &Channel) -> Result<(), Error> {
    if ch.dtype == DType::U8 && ch.scaling.is_none() {
        return Ok(());
    }
    let mut bad = None;
    ch.for_each(|v| {
        if bad.is_none() && (!(0.0..=255.0).contains(&v) || v.fract() != 0.0) {
            bad = Some(v);
        }
    });
    match bad {
        Some(v) => Err(nifti::data(
            path,
            format!("label value {v} is not a whole number in 0..255"),
        )),
        None => Ok(()),
    }
}

/// Element strides of x, y, z in a NIfTI volume of `shape`: x fastest.
pub(crate) fn nifti_strides(shape: [usize; 3]) -> [usize; 3] {
    [1, shape[0], shape[0] * shape[1]]
}

/// The channels of an uncompressed file, whole (statistics files describe only those).
pub(crate) fn plain_file_channels(
    path: &Path,
    max_bytes: usize,
) -> Result<([usize; 3], Vec<Channel>), Error> {
    if nifti::is_gzip(path)? {
        return Err(nifti::data(
            path,
            "statistics files describe uncompressed .nii files only",
        ));
    }
    file_channels(path, max_bytes, None)
}

/// Decode and check one case (images as channels, optional label) and compute each
/// channel's normalisation; the voxels stay as stored, in buffers from `spares` where
/// one fits.
pub fn decode(
    images: &[PathBuf],
    label: Option<&PathBuf>,
    norm: Norm,
    max_bytes: usize,
    spares: Option<&Spares>,
) -> Result<Decoded, Error> {
    if let Some(vol) = open_by_stats(images, label, norm, max_bytes)? {
        return Ok(vol);
    }
    let mut shape: Option<[usize; 3]> = None;
    let mut channels = Vec::new();
    for path in images {
        let (s, chans) = file_channels(path, max_bytes, spares)?;
        if let Some(first) = shape {
            if first != s {
                return Err(nifti::data(
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
                return Err(nifti::data(
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The obvious per-voxel crop.
    fn naive(src: &[u16], s: [usize; 3], st: [usize; 3], o: [i64; 3], p: [usize; 3]) -> Vec<u16> {
        let mut out = vec![0u16; p.iter().product()];
        for x in 0..p[0] {
            for y in 0..p[1] {
                for z in 0..p[2] {
                    let q = [o[0] + x as i64, o[1] + y as i64, o[2] + z as i64];
                    if (0..3).all(|d| q[d] >= 0 && (q[d] as usize) < s[d]) {
                        let i: usize = (0..3).map(|d| q[d] as usize * st[d]).sum();
                        out[(x * p[1] + y) * p[2] + z] = src[i];
                    }
                }
            }
        }
        out
    }

    #[test]
    fn table_crop_equals_the_float64_map_bit_for_bit() {
        // x-fastest like NIfTI; the volume (2.1 M voxels) and the patch (70,520) are large
        // enough for a 16-bit table
        let shape = [128usize, 128, 130];
        let patch = [40usize, 41, 43];
        let n: usize = shape.iter().product();
        let bytes = crate::resize::tests::noise(2 * n + 8, 11);
        let words: Vec<u64> = bytes
            .chunks_exact(8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
            .collect();
        let words = Arc::new(words);
        let map = ValueMap {
            lo: -3.0,
            hi: 900.0,
            sub: 17.25,
            mul: 0.0123,
        };
        for dtype in [DType::U8, DType::I8, DType::U16, DType::I16] {
            for scaling in [None, Some((0.37, -12.5))] {
                let ch = Channel {
                    words: words.clone(),
                    start: 0,
                    len: n,
                    dtype,
                    scaling,
                    map,
                    lut: OnceLock::new(),
                };
                let strides = [1, shape[0], shape[0] * shape[1]];
                let vol = Decoded::assemble(shape, strides, vec![ch], None, Vec::new());
                let region = Region {
                    origin: [-2, 3, 100],
                    patch,
                    flip: [true, false, true],
                };
                let m: usize = patch.iter().product();
                let mut got = vec![f32::NAN; m];
                vol.crop_image(0, region, &mut got);
                assert!(
                    vol.channels[0].lut.get().is_some(),
                    "{dtype:?}: table built"
                );
                let mut want = vec![f32::NAN; m];
                vol.crop(&vol.channels[0], region, &mut want, |v| map.apply(v));
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&got), bits(&want), "{dtype:?} {scaling:?}");
                // a small crop before any table exists takes the direct path
                let small = Region::at([0; 3], [4, 4, 4]);
                let fresh = vol.channels[0].clone();
                let vol = Decoded::assemble(
                    shape,
                    strides,
                    vec![Channel {
                        lut: OnceLock::new(),
                        ..fresh
                    }],
                    None,
                    Vec::new(),
                );
                let mut out = vec![0f32; 64];
                vol.crop_image(0, small, &mut out);
                assert!(vol.channels[0].lut.get().is_none());
            }
        }
        // a 16-bit volume under 16 times its table's bytes gets none
        let ch = Channel {
            words,
            start: 0,
            len: 1 << 20,
            dtype: DType::I16,
            scaling: None,
            map,
            lut: OnceLock::new(),
        };
        let vol = Decoded::assemble(
            [128, 128, 64],
            [1, 128, 128 * 128],
            vec![ch],
            None,
            Vec::new(),
        );
        let mut out = vec![0f32; 128 * 128 * 8];
        vol.crop_image(0, Region::at([0; 3], [128, 128, 8]), &mut out);
        assert!(vol.channels[0].lut.get().is_none());
    }

    /// A C-order [p0, p1, p2] crop mirrored along the flipped axes.
    fn mirrored(crop: &[u16], p: [usize; 3], flip: [bool; 3]) -> Vec<u16> {
        let mut out = vec![0u16; crop.len()];
        for x in 0..p[0] {
            for y in 0..p[1] {
                for z in 0..p[2] {
                    let m = |i: usize, d: usize| if flip[d] { p[d] - 1 - i } else { i };
                    let src = (m(x, 0) * p[1] + m(y, 1)) * p[2] + m(z, 2);
                    out[(x * p[1] + y) * p[2] + z] = crop[src];
                }
            }
        }
        out
    }

    #[test]
    fn gather_equals_the_naive_crop_in_both_layouts_with_padding() {
        let s = [7usize, 5, 19];
        let src: Vec<u16> = (0..(s[0] * s[1] * s[2]) as u16).collect();
        let layouts = [[1, s[0], s[0] * s[1]], [s[1] * s[2], s[2], 1]];
        // every crop, unmirrored and mirrored along some axes, equals the naive crop mirrored
        let check = |shape: [usize; 3], st: [usize; 3], o: [i64; 3], p: [usize; 3]| {
            for flip in [
                [false; 3],
                [true, false, true],
                [false, true, false],
                [true; 3],
            ] {
                let mut out = vec![99u16; p.iter().product()];
                let region = Region {
                    origin: o,
                    patch: p,
                    flip,
                };
                gather(&src, shape, st, region, &mut out, |v| v);
                let want = mirrored(&naive(&src, shape, st, o, p), p, flip);
                assert_eq!(out, want, "{st:?} {o:?} {p:?} {flip:?}");
            }
        };
        // 2D: [H, W, 1] with W contiguous
        let flat = [s[1] * s[2], 1, s[1] * s[2]];
        for o in [[0i64, 0, 0], [-2, 3, 0], [5, -1, 0]] {
            for p in [[3usize, 4, 1], [9, 30, 1]] {
                check([s[0], s[1] * s[2], 1], flat, o, p);
            }
        }
        let origins = [
            [0i64, 0, 0],
            [-2, 1, 3],
            [4, -3, 10],
            [-9, 0, 0],
            [1, 1, -30],
        ];
        for st in layouts {
            for o in origins {
                for p in [[3usize, 4, 17], [9, 8, 21], [1, 1, 1]] {
                    check(s, st, o, p);
                }
            }
        }
    }

    #[test]
    fn strided_nonzero_equals_every_step_th_nonzero() {
        fn naive<T: Voxel>(values: &[T], max: usize) -> Vec<usize> {
            let zero = T::zeroed();
            let count = values.iter().filter(|&&v| v != zero).count();
            let picked = values.iter().enumerate().filter(|(_, &v)| v != zero);
            let step = count.div_ceil(max).max(1);
            picked.step_by(step).map(|(i, _)| i).collect()
        }
        let mut state = 12345u64;
        let mut next = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as u32
        };
        for len in [0usize, 1, 63, 64, 65, 127, 128, 1000, 4099] {
            for density in [0u32, 1, 10, 50, 100] {
                let values: Vec<u8> = (0..len)
                    .map(|_| u8::from(next() % 100 < density) * (1 + (next() % 3) as u8))
                    .collect();
                for max in [1usize, 2, 3, 7, 64, 100_000] {
                    assert_eq!(
                        strided_nonzero(&values, max),
                        naive(&values, max),
                        "len {len} density {density} max {max}"
                    );
                }
                let wide: Vec<f32> = values.iter().map(|&v| f32::from(v)).collect();
                assert_eq!(strided_nonzero(&wide, 5), naive(&wide, 5));
            }
        }
        // -0.0 is zero, NaN is not (as `!=` says)
        let odd = [0.0f32, -0.0, f32::NAN, 1.0];
        assert_eq!(strided_nonzero(&odd, 10), vec![2, 3]);
    }

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
