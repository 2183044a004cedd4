//! A decoded case (or a block of one) and its crops: every channel's voxels cut at a
//! patch's origin, normalised, mirrored where flipped, zero outside the volume.
use std::sync::Arc;

use super::channel::{scaled, Channel};
use super::files::Files;
use crate::io::buffer::Spares;
use crate::io::image2d::Planes;
use crate::io::nifti::{with_voxel_type, DType};

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
    pub(super) files: Option<Arc<Files>>,
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
                crate::io::buffer::keep_spare(v);
            }
        }
    }
}
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

    /// A 2D case from its decoded planes (`image2d::Planes`). No foreground list: an
    /// ImageStream crop is the whole image, so there is no position to sample.
    pub fn from_2d(planes: Planes) -> Decoded {
        let Planes {
            size,
            channels: c,
            planes,
            label,
        } = planes;
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

    pub(super) fn assemble(
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

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use super::*;
    use crate::volume::channel::ValueMap;

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
        let bytes = crate::io::resize::tests::noise(2 * n + 8, 11);
        let words: Vec<u64> = bytes
            .chunks_exact(8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
            .collect();
        let words = Arc::new(words);
        let map = ValueMap::from_array([-3.0, 900.0, 17.25, 0.0123]);
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
}
