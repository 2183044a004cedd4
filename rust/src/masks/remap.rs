//! Nearest-neighbour remaps of uint8 label maps on the CPU: the non-separable case of
//! `qgfast.corrupt.geometry.gather_nearest` (rotations, affine maps, elastic fields) in one
//! pass, where the torch version streams float64 coordinates and int64 indices through
//! memory about ten times a voxel.
//!
//! output[b, y] = masks[b, round(src(b, y))], 0 where the rounded source falls outside the
//! volume. The source coordinate along axis a is the sum, in order, of that axis's terms,
//! each broadcast over [B, *S]; the arithmetic is the torch version's exactly (float64 sums
//! left to right, float32 terms widened exactly, round half to even, the same bounds test),
//! so the outputs are equal bit for bit.
use crate::errors::Error;

/// The values of one term: float64, or float32 widened when read.
#[derive(Clone)]
pub enum Values {
    F64(Vec<f64>),
    F32(Vec<f32>),
}

/// One term of a source coordinate: C-order values of shape `shape` (each dim 1 or the
/// map's), broadcast over [B, *S].
#[derive(Clone)]
pub struct Term {
    pub values: Values,
    pub shape: Vec<usize>,
}

/// A term resolved against the map: element strides over [B, Z, Y, X] (0 = broadcast; the
/// last is 0 or 1, the values being C-ordered).
struct Resolved<'a> {
    values: &'a Values,
    strides: [usize; 4],
}

impl Resolved<'_> {
    /// Sets (`first`) or adds this term's values along one output row into `src`.
    #[inline(always)]
    fn accumulate(&self, base: usize, src: &mut [f64], first: bool) {
        let n = src.len();
        match (self.values, self.strides[3]) {
            (Values::F64(v), 0) => along(src, first, std::iter::repeat(v[base])),
            (Values::F32(v), 0) => along(src, first, std::iter::repeat(f64::from(v[base]))),
            (Values::F64(v), _) => along(src, first, v[base..base + n].iter().copied()),
            (Values::F32(v), _) => {
                along(src, first, v[base..base + n].iter().map(|&x| f64::from(x)))
            }
        }
    }
}

#[inline(always)]
fn along(src: &mut [f64], first: bool, values: impl Iterator<Item = f64>) {
    if first {
        for (s, v) in src.iter_mut().zip(values) {
            *s = v;
        }
    } else {
        for (s, v) in src.iter_mut().zip(values) {
            *s += v;
        }
    }
}

/// [B, *S] (nd = 1..=3 spatial axes) as [B, Z, Y, X], the leading spatial axes 1.
fn padded(shape: &[usize]) -> Result<[usize; 4], Error> {
    let nd = shape.len().saturating_sub(1);
    if !(1..=3).contains(&nd) {
        return Err(Error::InvalidArgument(format!(
            "gather_nearest: masks must be [B, *S] with 1 to 3 spatial axes, got {shape:?}"
        )));
    }
    let mut out = [1usize; 4];
    out[0] = shape[0];
    out[4 - nd..].copy_from_slice(&shape[1..]);
    Ok(out)
}

fn resolve<'a>(term: &'a Term, map: &[usize]) -> Result<Resolved<'a>, Error> {
    let fits = term.shape.len() == map.len()
        && term.shape.iter().zip(map).all(|(&t, &m)| t == 1 || t == m);
    let len = match &term.values {
        Values::F64(v) => v.len(),
        Values::F32(v) => v.len(),
    };
    if !fits || len != term.shape.iter().product::<usize>() {
        return Err(Error::InvalidArgument(format!(
            "gather_nearest: a term of shape {:?} ({len} values) does not broadcast to {map:?}",
            term.shape
        )));
    }
    let term_dims = padded(&term.shape)?;
    let mut strides = [0usize; 4];
    let mut step = 1;
    for d in (0..4).rev() {
        strides[d] = if term_dims[d] == 1 { 0 } else { step };
        step *= term_dims[d];
    }
    Ok(Resolved {
        values: &term.values,
        strides,
    })
}

/// The remap of `masks` (C order, shape [B, *S]) through the source coordinates whose terms
/// are `axes[a]` for spatial axis a.
pub fn gather_nearest(masks: &[u8], shape: &[usize], axes: &[Vec<Term>]) -> Result<Vec<u8>, Error> {
    let dims = padded(shape)?;
    let nd = shape.len() - 1;
    let total: usize = shape.iter().product();
    if masks.len() != total || axes.len() != nd || axes.iter().any(|t| t.is_empty()) {
        return Err(Error::InvalidArgument(format!(
            "gather_nearest: {} mask values for shape {shape:?}, {} axes of terms (need {nd}, \
             each with at least one term)",
            masks.len(),
            axes.len()
        )));
    }
    if total == 0 {
        return Ok(Vec::new());
    }
    if shape[1..].iter().product::<usize>() > i32::MAX as usize {
        return Err(Error::InvalidArgument(format!(
            "gather_nearest: a sample must hold fewer than 2^31 voxels, got {shape:?}"
        )));
    }
    let resolved: Vec<Vec<Resolved>> = axes
        .iter()
        .map(|terms| terms.iter().map(|t| resolve(t, shape)).collect())
        .collect::<Result<_, _>>()?;
    let sizes = &shape[1..];
    let mut voxel_strides = vec![1u32; nd]; // strides of the spatial axes in one sample
    for a in (0..nd.saturating_sub(1)).rev() {
        voxel_strides[a] = voxel_strides[a + 1] * sizes[a + 1] as u32;
    }
    let per_sample = total / dims[0].max(1);
    let lasts: Vec<f64> = sizes.iter().map(|&n| (n - 1) as f64).collect();
    let mut out = vec![0u8; total];
    let width = dims[3];
    let mut scratch = Scratch {
        src: vec![0.0; width],
        linear: vec![0; width],
        inside: vec![1; width],
    };
    let plan = Rows {
        dims,
        per_sample,
        resolved: &resolved,
        lasts: &lasts,
        voxel_strides: &voxel_strides,
    };
    avx2_or_plain!(
        Rows::run,
        (plan: &Rows, masks: &[u8], out: &mut [u8], scratch: &mut Scratch) -> (),
        (&plan, masks, &mut out, &mut scratch)
    );
    Ok(out)
}

/// The resolved map, walked output row by output row.
struct Rows<'a> {
    dims: [usize; 4],
    per_sample: usize,
    resolved: &'a [Vec<Resolved<'a>>],
    lasts: &'a [f64],
    voxel_strides: &'a [u32],
}

impl Rows<'_> {
    /// Every output row: each axis's terms summed into the source coordinates, rounded
    /// and turned into flat indices, then the row's values picked. Inlined into the AVX2
    /// copy above, so the term sums and the picks are vector code too.
    #[inline(always)]
    fn run(&self, masks: &[u8], out: &mut [u8], scratch: &mut Scratch) {
        let dims = self.dims;
        for (r, row) in out.chunks_exact_mut(dims[3]).enumerate() {
            let (b, z, y) = (
                r / (dims[1] * dims[2]),
                (r / dims[2]) % dims[1],
                r % dims[2],
            );
            let sample = &masks[b * self.per_sample..(b + 1) * self.per_sample];
            let at = |t: &Resolved| b * t.strides[0] + z * t.strides[1] + y * t.strides[2];
            scratch.linear.fill(0);
            scratch.inside.fill(1);
            for (a, terms) in self.resolved.iter().enumerate() {
                for (k, t) in terms.iter().enumerate() {
                    t.accumulate(at(t), &mut scratch.src, k == 0);
                }
                scratch.index_body(self.lasts[a], self.voxel_strides[a]);
            }
            scratch.pick(sample, row);
        }
    }
}

/// One output row's source coordinates (of the axis at hand), flat indices and flags.
struct Scratch {
    src: Vec<f64>,
    linear: Vec<u32>,
    inside: Vec<u8>,
}

impl Scratch {
    /// Rounds the row's source coordinates along one axis (half to even, as torch.round),
    /// flags those outside [0, last] (NaN included) and adds the clamped index × stride.
    /// Inlined into `Rows::run`'s AVX2 copy, where the rounding is one instruction.
    #[inline(always)]
    fn index_body(&mut self, last: f64, stride: u32) {
        for ((&src, linear), inside) in self.src.iter().zip(&mut self.linear).zip(&mut self.inside)
        {
            let rounded = src.round_ties_even();
            *inside &= u8::from(rounded >= 0.0) & u8::from(rounded <= last);
            // clamped into [0, last] (NaN → 0: max and min ignore a NaN operand)
            let clamped = rounded.max(0.0).min(last);
            // SAFETY: clamped is finite and in [0, last], last < a sample's voxels < 2^31
            // (checked by gather_nearest), so it fits an i32: one vector instruction per
            // 4 values, where a saturating `as usize` is a branchy scalar sequence.
            let index = unsafe { clamped.to_int_unchecked::<i32>() } as u32;
            *linear += index * stride; // < the sample's voxels < 2^31: no overflow
        }
    }

    /// The row's output: each voxel's source value, 0 where any axis fell outside.
    #[inline(always)]
    fn pick(&self, sample: &[u8], row: &mut [u8]) {
        for ((out, &linear), &inside) in row.iter_mut().zip(&self.linear).zip(&self.inside) {
            // every index was clamped into the sample, so the read is in bounds; the
            // product keeps the loop free of a branch per voxel
            *out = sample[linear as usize] * inside;
        }
    }
}

/// The separable remap (shifts, scalings, grid distortion): output[b, z, y, x] =
/// masks[b, iz, iy, ix] with per-sample, per-axis source indices `sources[a]` [B, S_a]
/// (already rounded; < 0 where the source falls outside, which makes the voxel 0).
pub fn gather_separable(
    masks: &[u8],
    shape: &[usize],
    sources: &[Vec<i64>],
) -> Result<Vec<u8>, Error> {
    let dims = padded(shape)?;
    let nd = shape.len() - 1;
    let sizes = &shape[1..];
    let fits = sources.len() == nd
        && sources
            .iter()
            .zip(sizes)
            .all(|(s, &n)| s.len() == dims[0] * n && s.iter().all(|&i| i < n as i64));
    if masks.len() != shape.iter().product::<usize>() || !fits {
        return Err(Error::InvalidArgument(format!(
            "gather_separable: {} mask values for shape {shape:?} and {} index axes (need {nd} \
             of [B, S_a], each index < S_a)",
            masks.len(),
            sources.len()
        )));
    }
    if masks.is_empty() {
        return Ok(Vec::new()); // an empty axis: nothing to gather
    }
    let (b, nz, ny, nx) = (dims[0], dims[1], dims[2], dims[3]);
    let per_sample = nz * ny * nx;
    // the per-axis sources of the padded [Z, Y, X] (a missing axis reads index 0)
    let axis = |a: usize, s: usize, n: usize| -> Vec<i64> {
        match (a + nd).checked_sub(3) {
            Some(real) => sources[real][s * n..(s + 1) * n].to_vec(),
            None => vec![0; n],
        }
    };
    let mut out = vec![0u8; masks.len()];
    for s in 0..b {
        let (iz, iy, ix) = (axis(0, s, nz), axis(1, s, ny), axis(2, s, nx));
        let sample = &masks[s * per_sample..(s + 1) * per_sample];
        let target = &mut out[s * per_sample..(s + 1) * per_sample];
        for (r, row) in target.chunks_exact_mut(nx).enumerate() {
            let (z, y) = (iz[r / ny], iy[r % ny]);
            if z < 0 || y < 0 {
                continue; // the row reads outside: stays 0
            }
            let from = &sample[(z as usize * ny + y as usize) * nx..][..nx];
            for (o, &x) in row.iter_mut().zip(&ix) {
                *o = if x < 0 { 0 } else { from[x as usize] };
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f64_term(values: Vec<f64>, shape: &[usize]) -> Term {
        Term {
            values: Values::F64(values),
            shape: shape.to_vec(),
        }
    }

    #[test]
    fn a_shift_by_one_moves_every_row_and_loses_the_last() {
        // 1 sample, 2x3: source row = y + 1 (so the last row reads outside), column = x
        let masks = vec![1, 2, 3, 4, 5, 6];
        let rows = f64_term(vec![1.0, 2.0], &[1, 2, 1]);
        let cols = f64_term(vec![0.0, 1.0, 2.0], &[1, 1, 3]);
        let out = gather_nearest(&masks, &[1, 2, 3], &[vec![rows], vec![cols]]).unwrap();
        assert_eq!(out, vec![4, 5, 6, 0, 0, 0]);
    }

    #[test]
    fn terms_are_summed_and_rounded_half_to_even() {
        // columns 0..4 read at x + 0.5 → 0.5, 1.5, 2.5, 3.5 round to 0, 2, 2, 4 (outside)
        let masks = vec![10, 11, 12, 13];
        let x = f64_term(vec![0.0, 1.0, 2.0, 3.0], &[1, 4]);
        let half = Term {
            values: Values::F32(vec![0.5]),
            shape: vec![1, 1],
        };
        let out = gather_nearest(&masks, &[1, 4], &[vec![x, half]]).unwrap();
        assert_eq!(out, vec![10, 12, 12, 0]);
    }

    #[test]
    fn separable_reads_each_axis_source_and_zeroes_outside() {
        // 1 sample 2x3: rows read (1, outside), columns (2, 0, 0)
        let masks = vec![1, 2, 3, 4, 5, 6];
        let out = gather_separable(&masks, &[1, 2, 3], &[vec![1, -1], vec![2, 0, 0]]).unwrap();
        assert_eq!(out, vec![6, 4, 4, 0, 0, 0]);
        assert!(gather_separable(&masks, &[1, 2, 3], &[vec![2, 0], vec![0, 0, 0]]).is_err());
        let empty = gather_separable(&[], &[2, 4, 0], &[vec![0; 8], vec![]]).unwrap();
        assert!(empty.is_empty());
    }

    #[test]
    fn nan_and_mismatched_terms() {
        let masks = vec![7, 7];
        let nan = f64_term(vec![f64::NAN, 0.0], &[1, 2]);
        assert_eq!(
            gather_nearest(&masks, &[1, 2], &[vec![nan]]).unwrap(),
            vec![0, 7]
        );
        let wrong = f64_term(vec![0.0; 3], &[1, 3]);
        assert!(gather_nearest(&masks, &[1, 2], &[vec![wrong]]).is_err());
        assert!(gather_nearest(&masks, &[1, 2], &[vec![]]).is_err());
        assert!(gather_nearest(&masks, &[2], &[]).is_err());
        let empty = f64_term(vec![], &[1, 0]);
        assert_eq!(
            gather_nearest(&[], &[1, 0], &[vec![empty]]).unwrap(),
            Vec::<u8>::new()
        );
    }
}

#[cfg(test)]
mod speed {
    use super::*;

    #[test]
    #[ignore]
    fn gather_speed() {
        let (b, z, y, x) = (4usize, 112usize, 112usize, 80usize);
        let masks = vec![1u8; b * z * y * x];
        let grid = |n: usize, shape: Vec<usize>| Term {
            values: Values::F64((0..n).map(|i| i as f64 + 0.3).collect()),
            shape,
        };
        let field = || Term {
            values: Values::F32(vec![0.7; b * z * y * x]),
            shape: vec![b, z, y, x],
        };
        let axes = vec![
            vec![grid(z, vec![1, z, 1, 1]), field()],
            vec![grid(y, vec![1, 1, y, 1]), field()],
            vec![grid(x, vec![1, 1, 1, x]), field()],
        ];
        for _ in 0..3 {
            let t = std::time::Instant::now();
            let out = gather_nearest(&masks, &[b, z, y, x], &axes).unwrap();
            println!("{:?} {}", t.elapsed(), out[5]);
        }
        let small = vec![
            vec![grid(z, vec![1, z, 1, 1])],
            vec![grid(y, vec![1, 1, y, 1])],
            vec![grid(x, vec![1, 1, 1, x])],
        ];
        for _ in 0..3 {
            let t = std::time::Instant::now();
            let out = gather_nearest(&masks, &[b, z, y, x], &small).unwrap();
            println!("small terms {:?} {}", t.elapsed(), out[5]);
        }
    }
}
