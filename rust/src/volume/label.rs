//! Labels: the check that their values fit uint8, and the foreground positions a stream
//! oversamples.
use std::path::Path;

use super::channel::Channel;
use crate::errors::{data, Error};
use crate::io::nifti::{with_voxel_type, DType, Voxel};

const MAX_FG: usize = 100_000;

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
        Some(v) => Err(data(
            path,
            format!("label value {v} is not a whole number in 0..255"),
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
