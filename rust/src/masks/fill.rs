//! Per-sample statistics and shape fills of the blob and shape-approximation corruptions
//! (`qgfast.corrupt.shapes`, `.approx`, `.simple`): the foreground's axis profiles and
//! cross moments as exact integers, and fills of a quadratic form around a centre (fitted
//! ellipse, disc/ball) or of its smallest values (the Gaussian blob).
//!
//! The float arithmetic is the references' own, in their order (centred coordinate
//! x − μ, then per-term products, summed left to right), so the fills are equal bit for
//! bit; the statistics are integers, equal whatever the order.
use crate::errors::Error;

/// A batch of C-order volumes [B, *S] with 1 to 3 spatial axes.
#[derive(Clone, Copy)]
pub struct Batch<'a> {
    pub shape: &'a [usize],
}

impl Batch<'_> {
    pub fn check(&self, len: usize, what: &str) -> Result<(), Error> {
        let nd = self.shape.len().saturating_sub(1);
        if !(1..=3).contains(&nd) || self.shape.iter().product::<usize>() != len {
            return Err(Error::InvalidArgument(format!(
                "{what}: {len} values do not make masks [B, *S] (1 to 3 spatial axes) of shape \
                 {:?}",
                self.shape
            )));
        }
        Ok(())
    }
    fn samples(&self) -> usize {
        self.shape[0]
    }
    pub fn nd(&self) -> usize {
        self.shape.len() - 1
    }
    fn voxels(&self) -> usize {
        self.shape[1..].iter().product()
    }
    /// The spatial shape as [Z, Y, X], leading axes 1 where there are fewer than three.
    pub fn dims(&self) -> [usize; 3] {
        let mut dims = [1usize; 3];
        dims[4 - self.shape.len()..].copy_from_slice(&self.shape[1..]);
        dims
    }
}

/// Per sample, the foreground (nonzero) count along every axis: `[axis][b · S_a + x]`.
pub fn profiles(masks: &[u8], batch: Batch) -> Vec<Vec<i64>> {
    let [nz, ny, nx] = batch.dims();
    let b = batch.samples();
    let (mut pz, mut py, mut px) = (vec![0i64; b * nz], vec![0i64; b * ny], vec![0i64; b * nx]);
    let mut columns = vec![0u32; nx];
    for (s, sample) in masks.chunks_exact(batch.voxels().max(1)).enumerate() {
        columns.fill(0);
        for (r, row) in sample.chunks_exact(nx).enumerate() {
            let (z, y) = (r / ny, r % ny);
            let mut count = 0u32;
            for (c, &v) in columns.iter_mut().zip(row) {
                let f = u32::from(v != 0);
                *c += f;
                count += f;
            }
            pz[s * nz + z] += i64::from(count);
            py[s * ny + y] += i64::from(count);
        }
        for (p, &c) in px[s * nx..(s + 1) * nx].iter_mut().zip(&columns) {
            *p = i64::from(c);
        }
    }
    let all = [pz, py, px];
    all.into_iter().skip(3 - batch.nd()).collect()
}

/// Per sample, Σ x_i · x_j over the foreground for every pair i < j of axes, in the order
/// (0, 1), (0, 2), (1, 2): `[b · pairs + p]`.
pub fn cross_moments(masks: &[u8], batch: Batch) -> Vec<i64> {
    let [_, ny, nx] = batch.dims();
    let nd = batch.nd();
    let pairs = nd * (nd - 1) / 2;
    let mut out = vec![0i64; batch.samples() * pairs];
    for (s, sample) in masks.chunks_exact(batch.voxels().max(1)).enumerate() {
        let (mut zy, mut zx, mut yx) = (0i64, 0i64, 0i64);
        for (r, row) in sample.chunks_exact(nx).enumerate() {
            let (z, y) = ((r / ny) as i64, (r % ny) as i64);
            let (mut count, mut first) = (0i64, 0i64);
            for (x, &v) in row.iter().enumerate() {
                let f = i64::from(v != 0);
                count += f;
                first += f * x as i64;
            }
            zy += z * y * count;
            zx += z * first;
            yx += y * first;
        }
        let sums = &mut out[s * pairs..(s + 1) * pairs];
        match nd {
            2 => sums.copy_from_slice(&[yx]),
            3 => sums.copy_from_slice(&[zy, zx, yx]),
            _ => {}
        }
    }
    out
}

/// A quadratic form per sample: with d = x − `mean`, q(x) = Σ_i (c_ii·d_i)·d_i followed by
/// Σ_{i<j} (c_ij·d_i)·d_j, summed left to right; voxels with q ≤ `limit` are set.
pub struct Quadric<'a> {
    pub mean: &'a [f64],    // [B, nd]
    pub coef: &'a [f64],    // [B, nd, nd], only i <= j read
    pub limit: &'a [f64],   // [B]
    pub active: &'a [bool], // [B]: false leaves the sample empty
}

pub fn quadric_fill(batch: Batch, form: &Quadric) -> Result<Vec<u8>, Error> {
    let nd = batch.nd();
    let b = batch.samples();
    if form.mean.len() != b * nd
        || form.coef.len() != b * nd * nd
        || form.limit.len() != b
        || form.active.len() != b
    {
        return Err(Error::InvalidArgument(format!(
            "quadric_fill: parameters do not match {b} samples of {nd} axes"
        )));
    }
    let [_, ny, nx] = batch.dims();
    let mut out = vec![0u8; b * batch.voxels()];
    let mut dx = vec![0.0f64; nx];
    for (s, sample) in out.chunks_exact_mut(batch.voxels().max(1)).enumerate() {
        if !form.active[s] {
            continue;
        }
        let mean = &form.mean[s * nd..(s + 1) * nd];
        let c = |i: usize, j: usize| form.coef[s * nd * nd + i * nd + j];
        let limit = form.limit[s];
        let last = nd - 1; // the row axis
        for (x, d) in dx.iter_mut().enumerate() {
            *d = x as f64 - mean[last];
        }
        let cxx = c(last, last);
        for (r, row) in sample.chunks_exact_mut(nx).enumerate() {
            // the row's fixed coordinates, as [z, y] of the padded shape
            let fixed = [(r / ny) as f64, (r % ny) as f64];
            let d: Vec<f64> = (0..last).map(|a| fixed[2 - last + a] - mean[a]).collect();
            // the reference's order: diagonal terms, then pairs (i, j) lexicographically;
            // the fixed-axis terms before the row axis's are summed first, as there
            let mut head = 0.0;
            for (i, &di) in d.iter().enumerate() {
                let t = c(i, i) * di * di;
                head = if i == 0 { t } else { head + t };
            }
            let pairs_fixed: Vec<f64> = (0..last)
                .flat_map(|i| (i + 1..last).map(move |j| (i, j)))
                .map(|(i, j)| c(i, j) * d[i] * d[j])
                .collect();
            let factors: Vec<f64> = (0..last).map(|i| c(i, last) * d[i]).collect();
            quadric_row(row, &dx, cxx, head, &pairs_fixed, &factors, limit);
        }
    }
    Ok(out)
}

/// One row of `quadric_fill`: q = head + (cxx·e)·e, then the fixed pairs, then each
/// factor·e, with e = x − μ along the row; specialised by how many terms follow so the loop
/// vectorises (the order of the additions is the reference's in every case).
fn quadric_row(
    row: &mut [u8],
    dx: &[f64],
    cxx: f64,
    head: f64,
    pairs: &[f64],
    factors: &[f64],
    limit: f64,
) {
    #[inline(always)]
    fn body(
        row: &mut [u8],
        dx: &[f64],
        cxx: f64,
        head: f64,
        pairs: &[f64],
        factors: &[f64],
        limit: f64,
    ) {
        match (pairs, factors) {
            ([], []) => {
                for (o, &e) in row.iter_mut().zip(dx) {
                    *o = u8::from(cxx * e * e <= limit);
                }
            }
            ([], &[f0]) => {
                for (o, &e) in row.iter_mut().zip(dx) {
                    *o = u8::from(head + cxx * e * e + f0 * e <= limit);
                }
            }
            (&[p01], &[f0, f1]) => {
                for (o, &e) in row.iter_mut().zip(dx) {
                    *o = u8::from(head + cxx * e * e + p01 + f0 * e + f1 * e <= limit);
                }
            }
            _ => {
                for (o, &e) in row.iter_mut().zip(dx) {
                    let mut q = if factors.is_empty() {
                        cxx * e * e
                    } else {
                        head + cxx * e * e
                    };
                    for &p in pairs {
                        q += p;
                    }
                    for &f in factors {
                        q += f * e;
                    }
                    *o = u8::from(q <= limit);
                }
            }
        }
    }
    avx2_or_plain!(
        body,
        (
            row: &mut [u8],
            dx: &[f64],
            cxx: f64,
            head: f64,
            pairs: &[f64],
            factors: &[f64],
            limit: f64,
        ) -> (),
        (row, dx, cxx, head, pairs, factors, limit)
    )
}

/// Per sample, the `count[b]` voxels of smallest z = Σ_a ((x_a − μ_a) / s_a)², ties at the
/// cut going to the lower voxel indices (`shapes.gaussian_blob`'s selection).
pub fn smallest_spread(
    batch: Batch,
    mean: &[f64],
    spread: &[f64],
    count: &[i64],
) -> Result<Vec<u8>, Error> {
    let nd = batch.nd();
    let (b, n) = (batch.samples(), batch.voxels());
    if mean.len() != b * nd || spread.len() != b * nd || count.len() != b {
        return Err(Error::InvalidArgument(format!(
            "gaussian_blob: parameters do not match {b} samples of {nd} axes"
        )));
    }
    let [_, ny, nx] = batch.dims();
    let last = nd - 1;
    let mut out = vec![0u8; b * n];
    let mut z = vec![0.0f64; n];
    let mut tx = vec![0.0f64; nx];
    let mut sorted = Vec::with_capacity(n);
    for (s, sample) in out.chunks_exact_mut(n.max(1)).enumerate() {
        let k = count[s].clamp(0, n as i64) as usize;
        if k == 0 {
            continue;
        }
        let (mu, sd) = (&mean[s * nd..(s + 1) * nd], &spread[s * nd..(s + 1) * nd]);
        let term = |a: usize, x: f64| {
            let t = (x - mu[a]) / sd[a];
            t * t
        };
        for (x, t) in tx.iter_mut().enumerate() {
            *t = term(last, x as f64);
        }
        for (r, row) in z.chunks_exact_mut(nx).enumerate() {
            let fixed = [(r / ny) as f64, (r % ny) as f64];
            // Σ over the fixed axes first, left to right, then the row axis's term
            let mut head = None;
            for a in 0..last {
                let t = term(a, fixed[2 - last + a]);
                head = Some(head.map_or(t, |h: f64| h + t));
            }
            match head {
                None => row.copy_from_slice(&tx),
                Some(h) => {
                    for (v, &t) in row.iter_mut().zip(&tx) {
                        *v = h + t;
                    }
                }
            }
        }
        sorted.clear();
        sorted.extend_from_slice(&z);
        let (_, &mut cut, _) = sorted.select_nth_unstable_by(k - 1, f64::total_cmp);
        let mut room = k - z.iter().filter(|&&v| v < cut).count();
        for (o, &v) in sample.iter_mut().zip(&z) {
            if v < cut {
                *o = 1;
            } else if v == cut && room > 0 {
                *o = 1;
                room -= 1;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_and_cross_moments_count_the_foreground() {
        // two 2x3 samples
        let masks = [1, 0, 1, 0, 1, 1, 0, 0, 0, 1, 0, 0];
        let batch = Batch { shape: &[2, 2, 3] };
        let p = profiles(&masks, batch);
        assert_eq!(p[0], vec![2, 2, 0, 1]);
        assert_eq!(p[1], vec![1, 1, 2, 1, 0, 0]);
        // sample 0: (0,0) (0,2) (1,1) (1,2) → 0 + 0 + 1 + 2; sample 1: (1,0) → 0
        assert_eq!(cross_moments(&masks, batch), vec![3, 0]);
    }

    #[test]
    fn quadric_fill_is_a_disc_and_respects_active() {
        let batch = Batch { shape: &[2, 5, 5] };
        let form = Quadric {
            mean: &[2.0, 2.0, 2.0, 2.0],
            coef: &[1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0],
            limit: &[1.0, 1.0],
            active: &[true, false],
        };
        let out = quadric_fill(batch, &form).unwrap();
        assert_eq!(out[..25].iter().filter(|&&v| v == 1).count(), 5); // the plus shape
        assert!(out[25..].iter().all(|&v| v == 0));
    }

    #[test]
    fn smallest_spread_keeps_exactly_count_voxels_ties_to_lower_indices() {
        let batch = Batch { shape: &[1, 1, 5] };
        // z = (x - 2)^2: 4 1 0 1 4; three voxels: 1, 2, 3; two: 2 and the lower tie 1
        let three = smallest_spread(batch, &[0.0, 2.0], &[1.0, 1.0], &[3]).unwrap();
        assert_eq!(three, vec![0, 1, 1, 1, 0]);
        let two = smallest_spread(batch, &[0.0, 2.0], &[1.0, 1.0], &[2]).unwrap();
        assert_eq!(two, vec![0, 1, 1, 0, 0]);
    }
}
