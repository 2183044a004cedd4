//! Erosion and dilation of uint8 label maps by a cube (side 2r + 1) on the CPU, with the
//! semantics of `qgfast.corrupt.morphology` (scipy's binary morphology with border 0 on
//! 0/1 masks): erosion keeps a voxel's label where its whole cube holds that label (outside
//! the volume counts as 0), dilation gives a background voxel the largest label in its cube.
//!
//! Both are separable over a cube: the cube's minimum and maximum are the per-axis running
//! minima and maxima in turn, and "the whole cube holds label v" is min = max (= v, the centre
//! being in the cube). Each axis pass takes the running extreme of whole rows or lines, so
//! the work is (2r + 1) vector operations a voxel and axis, whatever the shape.
use super::fill::Batch;
use crate::errors::Error;

/// The eroded (`erode`) or dilated masks [B, *S] (`batch`), by a cube of radius `radius`.
pub fn cube(masks: &[u8], batch: Batch, radius: usize, erode: bool) -> Result<Vec<u8>, Error> {
    batch.check(masks.len(), "morphology")?;
    let dims = batch.dims();
    let mut out = masks.to_vec();
    if radius == 0 || masks.is_empty() {
        return Ok(out);
    }
    let voxels = dims.iter().product::<usize>();
    let mut high = vec![0u8; voxels]; // one sample's running maxima
    let mut scratch = vec![0u8; voxels];
    let first_axis = 3 - batch.nd(); // dims pads 2D masks with a leading axis of 1
    let passes = |values: &mut [u8], scratch: &mut [u8], take_max: bool| {
        for (axis, &n) in dims.iter().enumerate().skip(first_axis) {
            let inner: usize = dims[axis + 1..].iter().product();
            for block in values.chunks_exact_mut(n * inner) {
                running(block, &mut scratch[..n * inner], inner, radius, take_max);
            }
        }
    };
    for low in out.chunks_exact_mut(voxels) {
        if erode && low.iter().all(|&v| v <= 1) {
            // 0/1: the cube is all one label exactly where its minimum is 1
            passes(low, &mut scratch, false);
            continue;
        }
        high.copy_from_slice(low);
        passes(&mut high, &mut scratch, true);
        if erode {
            passes(low, &mut scratch, false);
            for (l, &h) in low.iter_mut().zip(high.iter()) {
                *l = if *l == h { *l } else { 0 };
            }
        } else {
            for (o, &h) in low.iter_mut().zip(high.iter()) {
                *o = if *o != 0 { *o } else { h };
            }
        }
    }
    Ok(out)
}

/// The running minimum (`take_max` false; positions outside the axis count as 0) or
/// maximum over ±radius along an axis of `inner` contiguous values a position ([n, inner]
/// in C order), in place through `scratch`.
fn running(block: &mut [u8], scratch: &mut [u8], inner: usize, radius: usize, take_max: bool) {
    #[inline(always)]
    fn body(block: &mut [u8], scratch: &mut [u8], inner: usize, radius: usize, take_max: bool) {
        let n = block.len() / inner;
        for (i, out) in scratch.chunks_exact_mut(inner).enumerate() {
            let (lo, hi) = (i.saturating_sub(radius), (i + radius).min(n - 1));
            let clipped = lo + radius > i || i + radius > n - 1;
            if clipped && !take_max {
                out.fill(0); // the window leaves the volume, whose outside is 0
                continue;
            }
            out.copy_from_slice(&block[lo * inner..(lo + 1) * inner]);
            for j in lo + 1..=hi {
                let line = &block[j * inner..(j + 1) * inner];
                if take_max {
                    out.iter_mut()
                        .zip(line)
                        .for_each(|(o, &v)| *o = (*o).max(v));
                } else {
                    out.iter_mut()
                        .zip(line)
                        .for_each(|(o, &v)| *o = (*o).min(v));
                }
            }
        }
        block.copy_from_slice(scratch);
    }
    // inner = 1 (the row axis): the window slides along contiguous values; as lines of one
    // value the loop above would not vectorise, so rows go through shifted copies instead
    #[inline(always)]
    fn along_row(row: &mut [u8], scratch: &mut [u8], radius: usize, take_max: bool) {
        let n = row.len();
        scratch.copy_from_slice(row);
        for d in 1..=radius.min(n) {
            // scratch[x] ⊕= row[x + d] and row[x − d]; outside: 0
            let (head, tail) = (&row[d..], &row[..n - d]);
            if take_max {
                scratch[..n - d]
                    .iter_mut()
                    .zip(head)
                    .for_each(|(o, &v)| *o = (*o).max(v));
                scratch[d..]
                    .iter_mut()
                    .zip(tail)
                    .for_each(|(o, &v)| *o = (*o).max(v));
            } else {
                scratch[..n - d]
                    .iter_mut()
                    .zip(head)
                    .for_each(|(o, &v)| *o = (*o).min(v));
                scratch[d..]
                    .iter_mut()
                    .zip(tail)
                    .for_each(|(o, &v)| *o = (*o).min(v));
            }
        }
        if !take_max {
            let edge = radius.min(n);
            scratch[..edge].fill(0);
            scratch[n - edge..].fill(0);
        }
        row.copy_from_slice(scratch);
    }
    #[inline(always)]
    fn dispatch(block: &mut [u8], scratch: &mut [u8], inner: usize, radius: usize, max: bool) {
        if inner == 1 {
            along_row(block, scratch, radius, max)
        } else {
            body(block, scratch, inner, radius, max)
        }
    }
    avx2_or_plain!(
        dispatch,
        (block: &mut [u8], scratch: &mut [u8], inner: usize, radius: usize, max: bool) -> (),
        (block, scratch, inner, radius, take_max)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition, voxel by voxel over the cube.
    fn direct(masks: &[u8], dims: [usize; 3], nd: usize, r: usize, erode: bool) -> Vec<u8> {
        let [nz, ny, nx] = dims;
        let at = |z: i64, y: i64, x: i64| -> u8 {
            if z < 0 || y < 0 || x < 0 || z >= nz as i64 || y >= ny as i64 || x >= nx as i64 {
                0
            } else {
                masks[(z as usize * ny + y as usize) * nx + x as usize]
            }
        };
        let r = r as i64;
        let mut out = vec![0u8; masks.len()];
        for z in 0..nz as i64 {
            for y in 0..ny as i64 {
                for x in 0..nx as i64 {
                    let v = at(z, y, x);
                    let (mut lo, mut hi) = (u8::MAX, 0u8);
                    // the padding axes of a 2D mask are not part of the cube
                    let rz = if nd == 3 { r } else { 0 };
                    for dz in -rz..=rz {
                        for dy in -r..=r {
                            for dx in -r..=r {
                                let w = at(z + dz, y + dy, x + dx);
                                lo = lo.min(w);
                                hi = hi.max(w);
                            }
                        }
                    }
                    out[((z as usize) * ny + y as usize) * nx + x as usize] = if erode {
                        if lo == hi {
                            v
                        } else {
                            0
                        }
                    } else if v != 0 {
                        v
                    } else {
                        hi
                    };
                }
            }
        }
        out
    }

    #[test]
    fn matches_the_definition_on_label_maps_2d_and_3d() {
        for (shape, r) in [
            (vec![2, 9, 13], 1),
            (vec![1, 7, 40], 3),
            (vec![1, 5, 6, 7], 2),
            (vec![1, 3, 3], 4),
            (vec![2, 1, 4, 5], 1), // a real axis of one voxel: erosion empties it
        ] {
            let n: usize = shape.iter().product();
            let masks: Vec<u8> = (0..n)
                .map(|i| u8::from((i * 31 + i / 5) % 7 < 5) * (1 + (i % 3 == 0) as u8))
                .collect();
            let batch = Batch { shape: &shape };
            let dims = batch.dims();
            let per = dims.iter().product::<usize>();
            for erode in [true, false] {
                let got = cube(&masks, batch, r, erode).unwrap();
                for (s, sample) in masks.chunks_exact(per).enumerate() {
                    let want = direct(sample, dims, shape.len() - 1, r, erode);
                    assert_eq!(
                        &got[s * per..(s + 1) * per],
                        &want[..],
                        "{shape:?} r={r} {erode}"
                    );
                }
            }
        }
    }
}
