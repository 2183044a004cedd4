//! Resampling for ImageStream: PIL's anti-aliased bilinear filter for images (what torch's
//! `interpolate(..., antialias=True)` computes) and torch's "nearest-exact" for masks.
//!
//! The image resize is separable. On x86-64 with AVX2 + FMA it runs in blocks of eight
//! output rows: the vertical pass (contiguous along the row, eight elements a vector)
//! writes the block transposed, so the horizontal pass also reads whole vectors (eight
//! output rows of one column) instead of gathering taps pixel by pixel; the block stays in
//! L1/L2. Elsewhere (and for channel counts other than 1 and 3) a plain loop computes the
//! same sums (equal within float rounding: tests).

/// PIL's separable resampling weights for one axis (bilinear = triangle filter, support
/// scaled by the reduction factor when shrinking): per output pixel the first input index
/// and its taps, flattened with a fixed stride so the inner loops index one array.
struct Taps {
    /// (input, output) lengths these taps resample between
    sizes: (usize, usize),
    first: Vec<usize>,
    stride: usize,
    weights: Vec<f32>,
}

impl Taps {
    fn new(input: usize, output: usize) -> Taps {
        let scale = input as f64 / output as f64;
        let (support, inv) = if scale >= 1.0 {
            (scale, 1.0 / scale)
        } else {
            (1.0, 1.0)
        };
        let per: Vec<(usize, Vec<f64>)> = (0..output)
            .map(|i| {
                let centre = scale * (i as f64 + 0.5);
                let lo = ((centre - support + 0.5) as isize).max(0) as usize;
                let hi = ((centre + support + 0.5) as usize).min(input);
                let mut w: Vec<f64> = (lo..hi)
                    .map(|j| {
                        let x = (j as f64 - centre + 0.5) * inv;
                        (1.0 - x.abs()).max(0.0)
                    })
                    .collect();
                let total: f64 = w.iter().sum();
                if total > 0.0 {
                    w.iter_mut().for_each(|v| *v /= total);
                }
                (lo, w)
            })
            .collect();
        // every output gets the same number of taps (zero weights pad the short ones, the
        // window shifted left at the far edge), so the inner loops have one fixed length;
        // a zero-weight term adds exactly 0 and leaves the sums unchanged
        let stride = per.iter().map(|(_, w)| w.len()).max().unwrap_or(0);
        let mut weights = vec![0f32; stride * output];
        let mut first = Vec::with_capacity(output);
        for (i, (lo, w)) in per.iter().enumerate() {
            let start = (*lo).min(input - stride);
            for (k, &v) in w.iter().enumerate() {
                weights[i * stride + lo - start + k] = v as f32;
            }
            first.push(start);
        }
        Taps {
            sizes: (input, output),
            first,
            stride,
            weights,
        }
    }

    /// The same taps with every weight multiplied by `by` (folds a final scaling into them).
    fn scaled(mut self, by: f32) -> Taps {
        self.weights.iter_mut().for_each(|v| *v *= by);
        self
    }

    fn of(&self, i: usize) -> (usize, &[f32]) {
        (
            self.first[i],
            &self.weights[i * self.stride..][..self.stride],
        )
    }
}

/// Anti-aliased bilinear resizing (PIL's filter) of interleaved [H, W, C] uint8 into planar
/// [C, h, w] float in [0, 1], vertical pass first (it then touches only `h` rows). Keeps its
/// scratch and the last sizes' taps from call to call (a stream resizes image after image
/// of one size; building the taps costs ~10 % of a 512² → 224² resize).
#[derive(Default)]
pub struct LinearResizer {
    scratch: Vec<f32>,
    /// horizontal taps, weights divided by 255 (uint8 → [0, 1] folded in)
    x: Option<Taps>,
    y: Option<Taps>,
}

impl LinearResizer {
    /// `src` [H, W, C] → `out` [C, h, w]; the result differs from horizontal-first (PIL,
    /// torch) by float rounding only (tests: within 2e-6 of torch).
    pub fn resize(
        &mut self,
        src: &[u8],
        [c, h, w]: [usize; 3],
        [out_h, out_w]: [usize; 2],
        out: &mut [f32],
    ) {
        assert_eq!(src.len(), c * h * w, "resize source size");
        assert_eq!(out.len(), c * out_h * out_w, "resize output size");
        if self.x.as_ref().map(|t| t.sizes) != Some((w, out_w)) {
            self.x = Some(Taps::new(w, out_w).scaled(1.0 / 255.0));
        }
        if self.y.as_ref().map(|t| t.sizes) != Some((h, out_h)) {
            self.y = Some(Taps::new(h, out_h));
        }
        let (Some(tx), Some(ty)) = (&self.x, &self.y) else {
            unreachable!("taps set above")
        };
        let dims = [c, h, w, out_h, out_w];
        #[cfg(target_arch = "x86_64")]
        if matches!(c, 1 | 3)
            && std::is_x86_feature_detected!("avx2")
            && std::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU was just checked for AVX2 and FMA.
            return unsafe { blocked::resize(src, dims, tx, ty, &mut self.scratch, out) };
        }
        plain(src, dims, tx, ty, &mut self.scratch, out)
    }

    /// Scratch capacity in bytes (callers drop a resizer an outsized image grew).
    pub fn scratch_bytes(&self) -> usize {
        self.scratch.capacity() * 4
    }
}

/// The portable pass (and any channel count other than 1 and 3): whole interleaved rows
/// vertically into `rows`, then each output pixel horizontally (`tx` carries the 1/255).
fn plain(
    src: &[u8],
    [c, _, w, out_h, out_w]: [usize; 5],
    tx: &Taps,
    ty: &Taps,
    rows: &mut Vec<f32>,
    out: &mut [f32],
) {
    let row_len = w * c;
    let rows = super::buffer::grown(rows, out_h * row_len);
    for (y, acc) in rows.chunks_exact_mut(row_len).enumerate() {
        let (lo, ws) = ty.of(y);
        // the first tap assigns (0 + x is x exactly), so the scratch needs no zeroing
        let first = &src[lo * row_len..][..row_len];
        for (a, &v) in acc.iter_mut().zip(first) {
            *a = ws[0] * v as f32;
        }
        for (k, &wk) in ws.iter().enumerate().skip(1) {
            let row = &src[(lo + k) * row_len..][..row_len];
            for (a, &v) in acc.iter_mut().zip(row) {
                *a += wk * v as f32;
            }
        }
    }
    let plane = out_h * out_w;
    for (y, row) in rows.chunks_exact(row_len).enumerate() {
        for x in 0..out_w {
            let (lo, ws) = tx.of(x);
            let px = &row[lo * c..(lo + ws.len()) * c];
            for ch in 0..c {
                let acc: f32 = px
                    .iter()
                    .skip(ch)
                    .step_by(c)
                    .zip(ws)
                    .map(|(&v, &wk)| wk * v)
                    .sum();
                out[ch * plane + y * out_w + x] = acc;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod blocked {
    use super::Taps;
    use std::arch::x86_64::*;

    /// Rows per block = floats per AVX vector.
    const L: usize = 8;

    /// 8×8 transpose: `r[i][j]` becomes `r[j][i]`.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn transpose(r: &mut [__m256; L]) {
        let t0 = _mm256_unpacklo_ps(r[0], r[1]);
        let t1 = _mm256_unpackhi_ps(r[0], r[1]);
        let t2 = _mm256_unpacklo_ps(r[2], r[3]);
        let t3 = _mm256_unpackhi_ps(r[2], r[3]);
        let t4 = _mm256_unpacklo_ps(r[4], r[5]);
        let t5 = _mm256_unpackhi_ps(r[4], r[5]);
        let t6 = _mm256_unpacklo_ps(r[6], r[7]);
        let t7 = _mm256_unpackhi_ps(r[6], r[7]);
        let s0 = _mm256_shuffle_ps::<0x44>(t0, t2);
        let s1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
        let s2 = _mm256_shuffle_ps::<0x44>(t1, t3);
        let s3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
        let s4 = _mm256_shuffle_ps::<0x44>(t4, t6);
        let s5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
        let s6 = _mm256_shuffle_ps::<0x44>(t5, t7);
        let s7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
        r[0] = _mm256_permute2f128_ps::<0x20>(s0, s4);
        r[1] = _mm256_permute2f128_ps::<0x20>(s1, s5);
        r[2] = _mm256_permute2f128_ps::<0x20>(s2, s6);
        r[3] = _mm256_permute2f128_ps::<0x20>(s3, s7);
        r[4] = _mm256_permute2f128_ps::<0x31>(s0, s4);
        r[5] = _mm256_permute2f128_ps::<0x31>(s1, s5);
        r[6] = _mm256_permute2f128_ps::<0x31>(s2, s6);
        r[7] = _mm256_permute2f128_ps::<0x31>(s3, s7);
    }

    /// Eight bytes at `p` as floats.
    ///
    /// # Safety
    /// `p..p + 8` must be readable.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn bytes(p: *const u8) -> __m256 {
        // SAFETY: the caller guarantees 8 readable bytes; the load is unaligned.
        let v = unsafe { _mm_loadl_epi64(p.cast()) };
        _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v))
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn load(v: &[f32], at: usize) -> __m256 {
        let a: &[f32; L] = v[at..at + L].try_into().expect("8 floats");
        // SAFETY: `a` is 8 readable floats; the load is unaligned.
        unsafe { _mm256_loadu_ps(a.as_ptr()) }
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn store(v: &mut [f32], at: usize, x: __m256) {
        let a: &mut [f32; L] = (&mut v[at..at + L]).try_into().expect("8 floats");
        // SAFETY: `a` is 8 writable floats; the store is unaligned.
        unsafe { _mm256_storeu_ps(a.as_mut_ptr(), x) }
    }

    /// See [`super::LinearResizer`] (1 or 3 channels); `scratch` holds one block ([row
    /// element][8 rows]) and one column pass ([channel][column][8 rows]).
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn resize(
        src: &[u8],
        [c, _, w, out_h, out_w]: [usize; 5],
        tx: &Taps,
        ty: &Taps,
        scratch: &mut Vec<f32>,
        out: &mut [f32],
    ) {
        let row_len = w * c;
        // vectors aligned to a cache line's half: an unaligned 32-byte access straddles two
        // lines every other time, and the block pass is all such accesses
        let scratch = crate::io::buffer::grown(scratch, (row_len + c * out_w) * L + L);
        let skip = scratch.as_ptr().align_offset(32).min(L);
        let (block, columns) = scratch[skip..].split_at_mut(row_len * L);
        let plane = out_h * out_w;
        for y0 in (0..out_h).step_by(L) {
            // a short last block repeats its last row (computed, never stored)
            let ys: [usize; L] = std::array::from_fn(|i| (y0 + i).min(out_h - 1));
            vertical(src, row_len, ty, ys, block);
            match c {
                1 => horizontal::<1>(block, tx, columns),
                3 => horizontal::<3>(block, tx, columns),
                _ => unreachable!("the blocked pass takes 1 or 3 channels"),
            }
            let rows = (out_h - y0).min(L);
            for ch in 0..c {
                let cols = &columns[ch * out_w * L..(ch + 1) * out_w * L];
                scatter(
                    cols,
                    out_w,
                    y0,
                    rows,
                    &mut out[ch * plane..(ch + 1) * plane],
                );
            }
        }
    }

    /// Output rows `ys` of the vertical pass into `block`, transposed: the eight rows' values
    /// of row element e at `block[8e..8e + 8]`.
    #[target_feature(enable = "avx2,fma")]
    fn vertical(src: &[u8], row_len: usize, ty: &Taps, ys: [usize; L], block: &mut [f32]) {
        let taps: [(usize, &[f32]); L] = ys.map(|y| ty.of(y));
        // every tap row lies inside `src` (Taps keeps lo + stride <= height), so the loads
        // below stay in bounds for e + 8 <= row_len
        for &(lo, ws) in &taps {
            assert!((lo + ws.len()) * row_len <= src.len());
        }
        assert!(block.len() >= row_len * L);
        let whole = row_len / L * L;
        let base = src.as_ptr();
        for e in (0..whole).step_by(L) {
            let mut acc = [_mm256_setzero_ps(); L];
            for (a, &(lo, ws)) in acc.iter_mut().zip(&taps) {
                // SAFETY: rows lo..lo + ws.len() and bytes e..e + 8 are inside `src` (above).
                unsafe {
                    let mut p = base.add(lo * row_len + e);
                    // the first tap assigns, so nothing needs zeroing
                    let mut sum = _mm256_mul_ps(_mm256_set1_ps(ws[0]), bytes(p));
                    for &wk in &ws[1..] {
                        p = p.add(row_len);
                        sum = _mm256_fmadd_ps(_mm256_set1_ps(wk), bytes(p), sum);
                    }
                    *a = sum;
                }
            }
            transpose(&mut acc);
            // SAFETY: (e + 8) * 8 <= row_len * 8 <= block.len() (above).
            unsafe {
                let out = block.as_mut_ptr().add(e * L);
                for (i, &v) in acc.iter().enumerate() {
                    _mm256_storeu_ps(out.add(i * L), v);
                }
            }
        }
        for e in whole..row_len {
            for (r, &(lo, ws)) in taps.iter().enumerate() {
                let mut sum = ws[0] * src[lo * row_len + e] as f32;
                for (k, &wk) in ws.iter().enumerate().skip(1) {
                    sum = wk.mul_add(src[(lo + k) * row_len + e] as f32, sum);
                }
                block[e * L + r] = sum;
            }
        }
    }

    /// The block horizontally, all C channels of a pixel at once (its taps' vectors are
    /// adjacent in the block, and C independent sums overlap): eight output rows of channel
    /// ch, column x at `columns[(ch · out_w + x) · 8..][..8]`.
    #[target_feature(enable = "avx2,fma")]
    fn horizontal<const C: usize>(block: &[f32], tx: &Taps, columns: &mut [f32]) {
        let (s, out_w) = (tx.stride, tx.first.len());
        // taps lie inside the row (lo + stride <= width): every load below is in `block`
        assert!(tx.first.iter().all(|&lo| (lo + s) * C * L <= block.len()));
        assert!(tx.weights.len() >= out_w * s && columns.len() >= C * out_w * L);
        for x in 0..out_w {
            // SAFETY: bounds asserted above.
            unsafe {
                let ws = tx.weights.as_ptr().add(x * s);
                let p = block.as_ptr().add(tx.first[x] * C * L);
                let w0 = _mm256_set1_ps(*ws);
                let mut sum: [__m256; C] =
                    std::array::from_fn(|ch| _mm256_mul_ps(w0, _mm256_loadu_ps(p.add(ch * L))));
                for k in 1..s {
                    let wk = _mm256_set1_ps(*ws.add(k));
                    let q = p.add(k * C * L);
                    for (ch, acc) in sum.iter_mut().enumerate() {
                        *acc = _mm256_fmadd_ps(wk, _mm256_loadu_ps(q.add(ch * L)), *acc);
                    }
                }
                for (ch, &acc) in sum.iter().enumerate() {
                    _mm256_storeu_ps(columns.as_mut_ptr().add((ch * out_w + x) * L), acc);
                }
            }
        }
    }

    /// The column pass's first `rows` rows into `out` rows y0.., transposed back in 8×8 tiles.
    #[target_feature(enable = "avx2,fma")]
    fn scatter(columns: &[f32], out_w: usize, y0: usize, rows: usize, out: &mut [f32]) {
        let whole = out_w / L * L;
        for x in (0..whole).step_by(L) {
            let mut tile: [__m256; L] = std::array::from_fn(|i| load(columns, (x + i) * L));
            transpose(&mut tile);
            for (i, &v) in tile.iter().enumerate().take(rows) {
                store(out, (y0 + i) * out_w + x, v);
            }
        }
        for x in whole..out_w {
            for i in 0..rows {
                out[(y0 + i) * out_w + x] = columns[x * L + i];
            }
        }
    }
}

/// torch's "nearest-exact" into `out` [out_h, out_w]: source index floor((dst + 0.5) · in / out),
/// in exact arithmetic (at an exact tie torch's float32 scale can round one pixel lower).
pub fn resize_nearest(src: &[u8], [h, w]: [usize; 2], [out_h, out_w]: [usize; 2], out: &mut [u8]) {
    let pick = |i: usize, inp: usize, out: usize| {
        (((i as f64 + 0.5) * inp as f64 / out as f64) as usize).min(inp - 1)
    };
    let columns: Vec<usize> = (0..out_w).map(|x| pick(x, w, out_w)).collect();
    for (y, dst) in out.chunks_exact_mut(out_w).take(out_h).enumerate() {
        let row = &src[pick(y, h, out_h) * w..][..w];
        for (o, &x) in dst.iter_mut().zip(&columns) {
            *o = row[x];
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn noise(n: usize, seed: u32) -> Vec<u8> {
        let mut x = seed.wrapping_mul(2_654_435_761).max(1);
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x >> 24) as u8
            })
            .collect()
    }

    #[test]
    fn rgb_resize_equals_each_channel_resized_alone() {
        let (h, w) = (23, 31);
        let rgb = noise(h * w * 3, 3);
        for size in [[11, 13], [23, 31], [40, 17]] {
            let n = size[0] * size[1];
            let mut resizer = LinearResizer::default();
            let mut out = vec![0f32; 3 * n];
            resizer.resize(&rgb, [3, h, w], size, &mut out);
            for ch in 0..3 {
                let grey: Vec<u8> = rgb.iter().skip(ch).step_by(3).copied().collect();
                let mut alone = vec![0f32; n];
                resizer.resize(&grey, [1, h, w], size, &mut alone);
                assert_eq!(
                    &out[ch * n..(ch + 1) * n],
                    &alone[..],
                    "{size:?} channel {ch}"
                );
            }
        }
    }

    #[test]
    fn grey_resize_matches_the_separable_filter_in_f64() {
        let (h, w) = (19, 26);
        let grey = noise(h * w, 5);
        for size in [[7, 9], [19, 26], [33, 41]] {
            let (tx, ty) = (Taps::new(w, size[1]), Taps::new(h, size[0]));
            let mut out = vec![0f32; size[0] * size[1]];
            LinearResizer::default().resize(&grey, [1, h, w], size, &mut out);
            for y in 0..size[0] {
                for x in 0..size[1] {
                    let ((ly, wy), (lx, wx)) = (ty.of(y), tx.of(x));
                    let mut want = 0f64;
                    for (i, &a) in wy.iter().enumerate() {
                        for (j, &b) in wx.iter().enumerate() {
                            want += a as f64 * b as f64 * grey[(ly + i) * w + lx + j] as f64;
                        }
                    }
                    let got = out[y * size[1] + x] as f64;
                    assert!((got - want / 255.0).abs() < 1e-5, "{size:?} ({y}, {x})");
                }
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn blocked_pass_equals_the_plain_one() {
        if !(std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")) {
            return; // nothing to compare on this CPU
        }
        // rows, columns and row lengths on and off multiples of 8, fewer output rows than a
        // block, shrinking (many taps) and enlarging (two)
        for (c, h, w, size) in [
            (3, 37, 53, [11, 13]),
            (3, 64, 64, [16, 24]),
            (1, 29, 21, [5, 7]),
            (1, 19, 26, [33, 41]),
            (3, 8, 8, [8, 8]),
            (3, 97, 61, [40, 27]),
        ] {
            let src = noise(c * h * w, (h * w) as u32);
            let n = c * size[0] * size[1];
            let tx = Taps::new(w, size[1]).scaled(1.0 / 255.0);
            let ty = Taps::new(h, size[0]);
            let (mut a, mut b) = (vec![f32::NAN; n], vec![f32::NAN; n]);
            let dims = [c, h, w, size[0], size[1]];
            plain(&src, dims, &tx, &ty, &mut Vec::new(), &mut a);
            let scratch = &mut vec![f32::NAN; 5];
            // SAFETY: AVX2 and FMA checked above.
            unsafe { blocked::resize(&src, dims, &tx, &ty, scratch, &mut b) };
            for (i, (x, y)) in a.iter().zip(&b).enumerate() {
                assert!(
                    (x - y).abs() <= 1e-6,
                    "{c}x{h}x{w} -> {size:?} at {i}: {x} vs {y}"
                );
            }
        }
    }

    /// `cargo test --release resize_speed -- --ignored --nocapture`: 512² RGB → 224².
    #[test]
    #[ignore]
    fn resize_speed() {
        let (c, h, w, size) = (3, 512, 512, [224, 224]);
        let src = noise(c * h * w, 1);
        let mut out = vec![0f32; c * size[0] * size[1]];
        let (mut scratch, mut resizer) = (Vec::new(), LinearResizer::default());
        let tx = Taps::new(w, size[1]).scaled(1.0 / 255.0);
        let ty = Taps::new(h, size[0]);
        let dims = [c, h, w, size[0], size[1]];
        for name in ["plain", "dispatch"] {
            // best of 10 rounds: the machine's other load only ever adds time
            let mut best = f64::MAX;
            for _ in 0..10 {
                let t = std::time::Instant::now();
                for _ in 0..50 {
                    match name {
                        "plain" => plain(&src, dims, &tx, &ty, &mut scratch, &mut out),
                        _ => resizer.resize(&src, [c, h, w], size, &mut out),
                    }
                }
                best = best.min(t.elapsed().as_secs_f64() * 1e3 / 50.0);
            }
            println!("{name}: {best:.3} ms");
        }
    }
}
