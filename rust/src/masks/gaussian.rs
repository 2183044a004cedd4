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
    if values.is_empty() {
        return Ok(()); // an empty axis: nothing to filter
    }
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

/// `smooth.gaussian_smooth` of uint8 masks [B, *S]: each sample's 0/1 foreground (nonzero)
/// as float32, filtered with `taps`, kept where above 0.5 — sample by sample, in the cache.
/// The same filter as `filter`, so the same voxels as the Python steps around it.
pub fn smooth_threshold(masks: &[u8], shape: &[usize], taps: &[f32]) -> Result<Vec<u8>, Error> {
    check(masks.len(), shape, taps)?;
    let voxels: usize = shape[1..].iter().product();
    let mut sample_shape = vec![1];
    sample_shape.extend_from_slice(&shape[1..]);
    let mut out = vec![0u8; masks.len()];
    let mut values = vec![0.0f32; voxels];
    for (mask, target) in masks
        .chunks_exact(voxels.max(1))
        .zip(out.chunks_exact_mut(voxels.max(1)))
    {
        for (v, &m) in values.iter_mut().zip(mask) {
            *v = f32::from(u8::from(m != 0));
        }
        filter(&mut values, &sample_shape, taps)?;
        for (t, &v) in target.iter_mut().zip(&values) {
            *t = u8::from(v > 0.5);
        }
    }
    Ok(out)
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

/// Outputs summed together in registers: four AVX2 vectors of float32, enough independent
/// sums to hide the latency of each one's chain of additions.
const LANES: usize = 32;

/// The starts of the LANES-wide output blocks covering 0..n: every LANES, and a last one
/// ending at n (overlapping the one before; outputs never feed back, so a value computed
/// twice is the same). None when n < LANES (the caller's scalar loop then takes the row).
fn block_starts(n: usize) -> impl Iterator<Item = usize> {
    let full = if n < LANES { 0 } else { n / LANES };
    let tail = (n >= LANES && !n.is_multiple_of(LANES)).then(|| n - LANES);
    (0..full).map(|c| c * LANES).chain(tail)
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
    // the padded row: the borders through the index, the interior copied as it is
    let (n, h) = (row.len(), taps.len() / 2);
    scratch.clear();
    scratch.extend(sources.index[..h].iter().map(|&j| row[j]));
    scratch.extend_from_slice(row);
    scratch.extend(sources.index[n + h..].iter().map(|&j| row[j]));
    #[inline(always)]
    fn body(row: &mut [f32], padded: &[f32], taps: &[f32]) {
        let h = taps.len() / 2;
        for start in block_starts(row.len()) {
            let mut acc = [0.0f32; LANES];
            for (a, &v) in acc.iter_mut().zip(&padded[start + h..][..LANES]) {
                *a = taps[h] * v;
            }
            for (t, &w) in taps[..h].iter().enumerate() {
                let left = &padded[start + t..][..LANES];
                let right = &padded[start + 2 * h - t..][..LANES];
                for ((a, &x), &y) in acc.iter_mut().zip(left).zip(right) {
                    *a += w * (x + y);
                }
            }
            row[start..start + LANES].copy_from_slice(&acc);
        }
        if row.len() < LANES {
            for (i, out) in row.iter_mut().enumerate() {
                let mut a = taps[h] * padded[i + h];
                for (t, &w) in taps[..h].iter().enumerate() {
                    a += w * (padded[i + t] + padded[i + 2 * h - t]);
                }
                *out = a;
            }
        }
    }
    avx2_or_plain!(
        body,
        (row: &mut [f32], padded: &[f32], taps: &[f32]) -> (),
        (row, scratch, taps)
    )
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
            for start in block_starts(inner) {
                let mut acc = [0.0f32; LANES];
                for (a, &v) in acc.iter_mut().zip(&line(i)[start..][..LANES]) {
                    *a = taps[h] * v;
                }
                for (t, &w) in taps[..h].iter().enumerate() {
                    let x = &line(index[i + t])[start..][..LANES];
                    let y = &line(index[i + 2 * h - t])[start..][..LANES];
                    for ((a, &x), &y) in acc.iter_mut().zip(x).zip(y) {
                        *a += w * (x + y);
                    }
                }
                out[start..start + LANES].copy_from_slice(&acc);
            }
            if inner < LANES {
                for (at, o) in out.iter_mut().enumerate() {
                    let mut a = taps[h] * line(i)[at];
                    for (t, &w) in taps[..h].iter().enumerate() {
                        a += w * (line(index[i + t])[at] + line(index[i + 2 * h - t])[at]);
                    }
                    *o = a;
                }
            }
        }
    }
    avx2_or_plain!(
        body,
        (block: &[f32], out: &mut [f32], inner: usize, index: &[usize], taps: &[f32]) -> (),
        (block, scratch, inner, &sources.index, taps)
    );
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
            (vec![1, 70, 45], 9), // blocks of LANES and an overlapping last one
            (vec![2, 3, 33, 64], 5), // rows of exactly two blocks
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
        assert!(filter(&mut [], &[2, 0, 5], &[0.25, 0.5, 0.25]).is_ok());
    }
}

#[cfg(test)]
mod speed {
    #[test]
    #[ignore]
    fn filter_speed() {
        let shape = [64usize, 224, 224];
        let n: usize = shape.iter().product();
        let values: Vec<f32> = (0..n)
            .map(|i| ((i * 7919) % 1000) as f32 / 1000.0)
            .collect();
        let taps: Vec<f32> = (0..25)
            .map(|i| 1.0 / (1.0 + (i as f32 - 12.0).abs()))
            .collect();
        for _ in 0..5 {
            let mut v = values.clone();
            let t = std::time::Instant::now();
            super::filter(&mut v, &shape, &taps).unwrap();
            println!("{:?} per field {:?}", t.elapsed(), t.elapsed() / 64);
        }
    }
}
