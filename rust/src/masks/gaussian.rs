//! The separable Gaussian filter of `qgfast.corrupt.smooth.gaussian_filter` on the CPU, as
//! a banded convolution: the reference multiplies every row by the dense filter matrix of
//! its axis (a BLAS product, ~L multiply-adds an output value for an axis of length L),
//! here each output value costs its k taps, halved by the kernel's symmetry.
//!
//! Borders are the reference's: reflect-101 (`dcb|abcd|cba`) where the axis is longer than
//! half the kernel, else the edge value repeated. The sums run in another order than the
//! matrix product's, so results agree to float32 rounding, not bit for bit (the elastic and
//! smoothing ops that use it are tested for that).
use crate::errors::Error;

/// Filters the C-order float32 `values` of shape [N, *S] in place along every spatial axis
/// (all but the first) with the odd, symmetric `taps`.
pub fn filter(values: &mut [f32], shape: &[usize], taps: &[f32]) -> Result<(), Error> {
    check(values.len(), shape, taps)?;
    let mut scratch = Vec::new();
    for axis in 1..shape.len() {
        let length = shape[axis];
        let outer: usize = shape[..axis].iter().product();
        let inner: usize = shape[axis + 1..].iter().product();
        let sources = Sources::new(length, taps.len() / 2);
        for block in values.chunks_exact_mut(length * inner).take(outer) {
            if inner == 1 {
                filter_row(block, &sources, taps, &mut scratch);
            } else {
                filter_rows(block, inner, &sources, taps, &mut scratch);
            }
        }
    }
    Ok(())
}

fn check(len: usize, shape: &[usize], taps: &[f32]) -> Result<(), Error> {
    if shape.len() < 2 || shape.iter().product::<usize>() != len {
        return Err(Error::InvalidArgument(format!(
            "gaussian_filter: {len} values do not make an array [N, *S] of shape {shape:?}"
        )));
    }
    let symmetric = taps.iter().zip(taps.iter().rev()).all(|(a, b)| a == b);
    if taps.len().is_multiple_of(2) || !symmetric || taps.iter().any(|t| !t.is_finite()) {
        return Err(Error::InvalidArgument(format!(
            "gaussian_filter: taps must be an odd-length, symmetric, finite kernel, got {} taps",
            taps.len()
        )));
    }
    Ok(())
}

/// Where output position i reads its k sources along an axis, borders included.
struct Sources {
    /// `index[i + t]` = the source of tap t for output i (the padded axis).
    index: Vec<usize>,
}

impl Sources {
    fn new(length: usize, half: usize) -> Self {
        let reflect = length > half; // reflect-101 needs the axis longer than the pad
        let last = length as isize - 1;
        let index = (-(half as isize)..length as isize + half as isize)
            .map(|j| {
                let j = if !reflect {
                    j.clamp(0, last)
                } else if j < 0 {
                    -j
                } else if j > last {
                    2 * last - j
                } else {
                    j
                };
                j as usize
            })
            .collect();
        Self { index }
    }
}

/// One contiguous row: padded into `scratch`, then each tap pair added across the row.
fn filter_row(row: &mut [f32], sources: &Sources, taps: &[f32], scratch: &mut Vec<f32>) {
    scratch.clear();
    scratch.extend(sources.index.iter().map(|&j| row[j]));
    #[inline(always)]
    fn body(row: &mut [f32], padded: &[f32], taps: &[f32]) {
        let (n, h) = (row.len(), taps.len() / 2);
        for (out, &v) in row.iter_mut().zip(&padded[h..h + n]) {
            *out = taps[h] * v;
        }
        for (t, &w) in taps[..h].iter().enumerate() {
            let (left, right) = (&padded[t..t + n], &padded[2 * h - t..2 * h - t + n]);
            for ((out, &a), &b) in row.iter_mut().zip(left).zip(right) {
                *out += w * (a + b);
            }
        }
    }
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        #[target_feature(enable = "avx2")]
        fn avx2(row: &mut [f32], padded: &[f32], taps: &[f32]) {
            body(row, padded, taps)
        }
        // SAFETY: the CPU was just checked for AVX2.
        return unsafe { avx2(row, scratch, taps) };
    }
    body(row, scratch, taps)
}

/// An axis with `inner` contiguous values per position ([L, inner] in C order): each output
/// line is a weighted sum of whole source lines.
fn filter_rows(
    block: &mut [f32],
    inner: usize,
    sources: &Sources,
    taps: &[f32],
    scratch: &mut Vec<f32>,
) {
    scratch.clear();
    scratch.resize(block.len(), 0.0);
    #[inline(always)]
    fn body(block: &[f32], out: &mut [f32], inner: usize, index: &[usize], taps: &[f32]) {
        let h = taps.len() / 2;
        let line = |j: usize| &block[j * inner..(j + 1) * inner];
        for (i, out) in out.chunks_exact_mut(inner).enumerate() {
            for (o, &v) in out.iter_mut().zip(line(i)) {
                *o = taps[h] * v;
            }
            for (t, &w) in taps[..h].iter().enumerate() {
                let (a, b) = (line(index[i + t]), line(index[i + 2 * h - t]));
                for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
                    *o += w * (x + y);
                }
            }
        }
    }
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        #[target_feature(enable = "avx2")]
        fn avx2(block: &[f32], out: &mut [f32], inner: usize, index: &[usize], taps: &[f32]) {
            body(block, out, inner, index, taps)
        }
        // SAFETY: the CPU was just checked for AVX2.
        unsafe { avx2(block, scratch, inner, &sources.index, taps) };
        block.copy_from_slice(scratch);
        return;
    }
    body(block, scratch, inner, &sources.index, taps);
    block.copy_from_slice(scratch);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference's arithmetic, directly: each output sums its taps over padded sources.
    fn direct(values: &[f32], shape: &[usize], taps: &[f32]) -> Vec<f32> {
        let mut x: Vec<f64> = values.iter().map(|&v| f64::from(v)).collect();
        for axis in 1..shape.len() {
            let length = shape[axis];
            let inner: usize = shape[axis + 1..].iter().product();
            let sources = Sources::new(length, taps.len() / 2);
            let mut out = x.clone();
            for (o, value) in out.iter_mut().enumerate() {
                let (pos, base) = ((o / inner) % length, o - ((o / inner) % length) * inner);
                *value = taps
                    .iter()
                    .enumerate()
                    .map(|(t, &w)| f64::from(w) * x[base + sources.index[pos + t] * inner])
                    .sum();
            }
            x = out;
        }
        x.into_iter().map(|v| v as f32).collect()
    }

    fn taps(k: usize, sigma: f32) -> Vec<f32> {
        let h = (k / 2) as f32;
        let w: Vec<f32> = (0..k)
            .map(|i| (-(i as f32 - h).powi(2) / (2.0 * sigma * sigma)).exp())
            .collect();
        let s: f32 = w.iter().sum();
        w.iter().map(|v| v / s).collect()
    }

    #[test]
    fn matches_the_direct_sum_in_2d_and_3d_short_axes_included() {
        for (shape, k) in [
            (vec![2, 9, 13], 5),
            (vec![1, 5, 7, 6], 3),
            (vec![3, 2, 17], 9),
            (vec![1, 1, 4], 7),
        ] {
            let n: usize = shape.iter().product();
            let values: Vec<f32> = (0..n).map(|i| ((i * 37 % 11) as f32) - 5.0).collect();
            let w = taps(k, 1.3);
            let mut got = values.clone();
            filter(&mut got, &shape, &w).unwrap();
            for (g, e) in got.iter().zip(direct(&values, &shape, &w)) {
                assert!((g - e).abs() < 1e-5, "{shape:?} k={k}: {g} vs {e}");
            }
        }
    }

    #[test]
    fn refuses_bad_taps_and_shapes() {
        let mut v = vec![0.0; 12];
        assert!(filter(&mut v, &[3, 4], &[0.5, 0.5]).is_err());
        assert!(filter(&mut v, &[3, 4], &[0.2, 0.5, 0.3]).is_err());
        assert!(filter(&mut v, &[3, 5], &[1.0]).is_err());
        assert!(filter(&mut v, &[12], &[1.0]).is_err());
    }
}
