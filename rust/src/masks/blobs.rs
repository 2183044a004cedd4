//! Holes and islands (`qgfast.corrupt.blobs`) on the CPU: the blobs' centres (the k-th
//! candidate voxel of a sample) and their painting, walking each blob's bounding box only.
//! The same integer arithmetic as the PyTorch reference, so the outputs are equal bit for bit.
use super::fill::Batch;
use crate::errors::Error;

/// Per sample b and blob j, the linear index of candidate number k = min(⌊u·total⌋,
/// total − 1) (0-based, C order), candidates being the foreground (`hole`) or background
/// voxels; and each sample's candidate total. `u` is [B, n]; a sample without candidates
/// gets the last voxel's index (the reference's clamp), which its painting ignores.
pub fn kth_candidates(
    masks: &[u8],
    batch: Batch,
    hole: bool,
    u: &[f64],
) -> Result<(Vec<i64>, Vec<i64>), Error> {
    batch.check(masks.len(), "blob centres")?;
    let b = batch.shape[0];
    let voxels: usize = batch.shape[1..].iter().product();
    if b == 0 || !u.len().is_multiple_of(b) {
        return Err(Error::InvalidArgument(format!(
            "blob centres: {} uniforms for {b} samples",
            u.len()
        )));
    }
    let n = u.len() / b;
    let mut linear = vec![0i64; b * n];
    let mut totals = vec![0i64; b];
    let mut chunk_counts = Vec::with_capacity(voxels.div_ceil(CHUNK));
    for (s, sample) in masks.chunks_exact(voxels.max(1)).enumerate() {
        // one vectorised pass counting the candidates of every chunk of the sample
        chunk_counts.clear();
        chunk_counts.extend(sample.chunks(CHUNK).map(|c| count_candidates(c, hole)));
        let total: i64 = chunk_counts.iter().sum();
        totals[s] = total;
        if total == 0 {
            linear[s * n..(s + 1) * n].fill(voxels as i64 - 1);
            continue;
        }
        let mut wanted: Vec<(i64, usize)> = (0..n)
            .map(|j| {
                let k = ((u[s * n + j] * total as f64) as i64).min(total - 1);
                (k, j)
            })
            .collect();
        wanted.sort_unstable();
        // walk the chunk counts to the chunk holding each wanted candidate, then its voxels
        let (mut before, mut next) = (0i64, 0usize);
        for (c, &count) in chunk_counts.iter().enumerate() {
            while next < n && wanted[next].0 < before + count {
                let mut rank = wanted[next].0 - before;
                let start = c * CHUNK;
                for (offset, &v) in sample[start..(start + CHUNK).min(voxels)]
                    .iter()
                    .enumerate()
                {
                    if (v != 0) == hole {
                        if rank == 0 {
                            linear[s * n + wanted[next].1] = (start + offset) as i64;
                            break;
                        }
                        rank -= 1;
                    }
                }
                next += 1;
            }
            before += count;
            if next == n {
                break;
            }
        }
    }
    Ok((linear, totals))
}

/// Voxels a chunk of the candidate search: counted in one vector pass, searched one by one
/// only where a wanted candidate falls.
const CHUNK: usize = 256;

fn count_candidates(chunk: &[u8], hole: bool) -> i64 {
    let foreground = chunk.iter().map(|&v| u32::from(v != 0)).sum::<u32>() as i64;
    if hole {
        foreground
    } else {
        chunk.len() as i64 - foreground
    }
}

/// Sets to `fill` every voxel inside the blobs: centres [B, n, nd] voxel coordinates, axes
/// [B, n, nd] integer semi-axes (first < 0: no blob). Inside: |d_a| ≤ r_a on every axis and
/// Σ_a d_a² · Π_{b≠a} q_b ≤ Π_a q_a, q_a = max(r_a², 1) (`reference.blobs.paint_blobs`).
pub fn paint(
    masks: &mut [u8],
    batch: Batch,
    centres: &[i64],
    axes: &[i64],
    fill: u8,
) -> Result<(), Error> {
    batch.check(masks.len(), "paint blobs")?;
    let b = batch.shape[0];
    let spatial = &batch.shape[1..];
    let nd = spatial.len();
    if b == 0 || centres.len() != axes.len() || !centres.len().is_multiple_of(b * nd) {
        return Err(Error::InvalidArgument(format!(
            "paint blobs: {} centre and {} axis values for {b} samples of {nd} axes",
            centres.len(),
            axes.len()
        )));
    }
    let n = centres.len() / (b * nd);
    let voxels: usize = spatial.iter().product();
    let mut strides = [0usize; 3];
    let mut step = 1;
    for a in (0..nd).rev() {
        strides[a] = step;
        step *= spatial[a];
    }
    for (s, sample) in masks.chunks_exact_mut(voxels.max(1)).enumerate() {
        for j in 0..n {
            let at = (s * n + j) * nd;
            let (c, r) = (&centres[at..at + nd], &axes[at..at + nd]);
            if r[0] < 0 {
                continue;
            }
            let r: Vec<i64> = r.iter().map(|&v| v.max(0)).collect();
            let q: Vec<i64> = r.iter().map(|&v| (v * v).max(1)).collect();
            let whole: i64 = q.iter().product();
            let weight: Vec<i64> = q.iter().map(|&qa| whole / qa).collect();
            // the box of offsets, clipped to the volume
            let lo: Vec<i64> = (0..nd).map(|a| (c[a] - r[a]).max(0)).collect();
            let hi: Vec<i64> = (0..nd)
                .map(|a| (c[a] + r[a]).min(spatial[a] as i64 - 1))
                .collect();
            if (0..nd).any(|a| lo[a] > hi[a]) {
                continue;
            }
            let mut pos = lo.clone();
            'walk: loop {
                let lhs: i64 = (0..nd)
                    .map(|a| (pos[a] - c[a]) * (pos[a] - c[a]) * weight[a])
                    .sum();
                if lhs <= whole {
                    let linear: usize = (0..nd).map(|a| pos[a] as usize * strides[a]).sum();
                    sample[linear] = fill;
                }
                for a in (0..nd).rev() {
                    if pos[a] < hi[a] {
                        pos[a] += 1;
                        continue 'walk;
                    }
                    pos[a] = lo[a];
                }
                break;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kth_candidate_in_c_order() {
        let masks = [0, 1, 1, 0, 1, 0, 0, 0];
        let batch = Batch { shape: &[2, 4] };
        // sample 0 foreground at 1, 2; sample 1 at 0 → u 0.0 → first, 0.99 → last
        let (linear, totals) = kth_candidates(&masks, batch, true, &[0.0, 0.99, 0.5, 0.5]).unwrap();
        assert_eq!(totals, vec![2, 1]);
        assert_eq!(linear, vec![1, 2, 0, 0]);
        let (linear, _) =
            kth_candidates(&[0, 0, 0], Batch { shape: &[1, 3] }, true, &[0.5]).unwrap();
        assert_eq!(linear, vec![2]); // no candidate: the last voxel, as the reference clamps
        let (linear, totals) = kth_candidates(&masks, batch, false, &[0.6, 0.0, 0.0, 0.9]).unwrap();
        assert_eq!(totals, vec![2, 3]);
        assert_eq!(linear, vec![3, 0, 1, 3]);
    }

    #[test]
    fn chunked_search_finds_the_same_candidates_as_a_scan() {
        let n = 3 * CHUNK + 17;
        let masks: Vec<u8> = (0..2 * n)
            .map(|i| u8::from((i * 7 + i / 13) % 5 < 2))
            .collect();
        let u = [0.0, 0.999, 0.37, 0.5, 0.51, 0.01];
        for hole in [true, false] {
            let (linear, totals) =
                kth_candidates(&masks, Batch { shape: &[2, n] }, hole, &u).unwrap();
            for s in 0..2 {
                let candidates: Vec<usize> = (0..n)
                    .filter(|&v| (masks[s * n + v] != 0) == hole)
                    .collect();
                assert_eq!(totals[s], candidates.len() as i64);
                for j in 0..3 {
                    let k = ((u[s * 3 + j] * candidates.len() as f64) as usize)
                        .min(candidates.len() - 1);
                    assert_eq!(linear[s * 3 + j], candidates[k] as i64);
                }
            }
        }
    }

    #[test]
    fn paints_a_digital_disc_clipped_at_the_border() {
        let mut masks = vec![0u8; 25];
        let batch = Batch { shape: &[1, 5, 5] };
        paint(&mut masks, batch, &[0, 0], &[2, 2], 7).unwrap();
        // x² + y² ≤ 4 with x, y ≥ 0: (0,0..2), (1,0..1), (2,0)
        assert_eq!(masks.iter().filter(|&&v| v == 7).count(), 6);
        paint(&mut masks, batch, &[4, 4], &[-1, -1], 9).unwrap(); // no blob
        assert!(masks.iter().all(|&v| v != 9));
    }
}
