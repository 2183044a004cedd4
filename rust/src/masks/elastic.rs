//! The elastic deformation of `qgfast.corrupt.warp.elastic` in one native call on the CPU:
//! the displacement noise (`normals`, times α), its Gaussian smoothing (`gaussian`) and the
//! nearest remap through it (`remap`), with no trip through Python between them. Each step
//! is the one the Python fast path calls in turn, in the same order, so the result is the
//! same bit for bit; no full-size array is copied on the way.
use super::remap::{self, Term, Values};
use super::{gaussian, normals};
use crate::errors::Error;

/// The masks [B, *S] (`shape`) remapped through x + d(x), d the displacement field of
/// α·N(0, 1) noise per voxel and axis (stream `stream` under `seed`, per sample key of
/// `samples`) smoothed with `taps` along every axis.
pub fn elastic(
    masks: &[u8],
    shape: &[usize],
    alpha: f32,
    taps: &[f32],
    seed: u32,
    stream: i64,
    samples: &[i64],
) -> Result<Vec<u8>, Error> {
    let b = *shape.first().unwrap_or(&0);
    let spatial = &shape[1.min(shape.len())..];
    let nd = spatial.len();
    let voxels: usize = spatial.iter().product();
    if !(1..=3).contains(&nd) || samples.len() != b || masks.len() != b * voxels {
        return Err(Error::InvalidArgument(format!(
            "elastic: {} mask values and {} sample keys for masks of shape {shape:?}",
            masks.len(),
            samples.len()
        )));
    }
    if masks.is_empty() {
        return Ok(Vec::new());
    }
    // sample by sample, so the noise and the field stay in the cache: nd fields of
    // α·N(0, 1), smoothed as nd volumes, then the sample's remap
    let mut volumes = vec![nd];
    volumes.extend_from_slice(spatial);
    let mut sample_shape = vec![1];
    sample_shape.extend_from_slice(spatial);
    let grids: Vec<Term> = (0..nd)
        .map(|a| {
            let mut grid_shape = vec![1usize; nd + 1];
            grid_shape[1 + a] = spatial[a];
            Term {
                values: Values::F64((0..spatial[a]).map(|x| x as f64).collect()),
                shape: grid_shape,
            }
        })
        .collect();
    let mut out = vec![0u8; masks.len()];
    for ((&key, mask), target) in samples
        .iter()
        .zip(masks.chunks_exact(voxels))
        .zip(out.chunks_exact_mut(voxels))
    {
        let mut field = normals::normals(seed, stream, &[key], nd * voxels);
        for v in field.iter_mut() {
            *v *= alpha;
        }
        gaussian::filter(&mut field, &volumes, taps)?;
        // source along axis a: the coordinate (float64) plus the field (float32), in order
        let axes: Vec<Vec<Term>> = (0..nd)
            .map(|a| {
                let displacement = Term {
                    values: Values::F32(field[a * voxels..(a + 1) * voxels].to_vec()),
                    shape: sample_shape.clone(),
                };
                vec![grids[a].clone(), displacement]
            })
            .collect();
        target.copy_from_slice(&remap::gather_nearest(mask, &sample_shape, &axes)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_strength_is_the_identity_and_bad_keys_are_refused() {
        let masks: Vec<u8> = (0..2 * 9 * 7).map(|i| u8::from(i % 3 == 0)).collect();
        let taps = [0.25, 0.5, 0.25];
        let out = elastic(&masks, &[2, 9, 7], 0.0, &taps, 1, 8, &[0, 1]).unwrap();
        assert_eq!(out, masks);
        let moved = elastic(&masks, &[2, 9, 7], 3.0, &taps, 1, 8, &[0, 1]).unwrap();
        assert_ne!(moved, masks);
        assert!(elastic(&masks, &[2, 9, 7], 1.0, &taps, 1, 8, &[0]).is_err());
    }
}

#[cfg(test)]
mod speed {
    #[test]
    #[ignore]
    fn elastic_speed() {
        let shape = [32usize, 224, 224];
        let masks: Vec<u8> = (0..32 * 224 * 224).map(|i| u8::from(i % 7 < 3)).collect();
        let taps: Vec<f32> = (0..25)
            .map(|i| 1.0 / (1.0 + (i as f32 - 12.0).abs()))
            .collect();
        let samples: Vec<i64> = (0..32).collect();
        for _ in 0..5 {
            let t = std::time::Instant::now();
            let out = super::elastic(&masks, &shape, 30.0, &taps, 0, 8, &samples).unwrap();
            println!(
                "{:?} per mask {:?} {}",
                t.elapsed(),
                t.elapsed() / 32,
                out[77]
            );
        }
    }
}
