//! The counter-based hash of `qgfast.corrupt.rng`, for CPU draws of whole volumes: murmur3's
//! 32-bit finaliser over a mix of (seed, sample, stream, counter). The Python module computes
//! it in int64 torch tensors (products masked to 32 bits, ~15 passes over every value);
//! here it is wrapping u32 arithmetic, so the values are the same bit for bit.

const UNIT: f64 = 1.0 / 4_294_967_296.0; // 2^-32: a hash as a uniform in [0, 1), exactly

#[inline]
fn fmix32(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85EB_CA6B);
    h ^= h >> 13;
    h = h.wrapping_mul(0xC2B2_AE35);
    h ^= h >> 16;
    h
}

/// The key of one sample's stream (`rng._key`); `seed` is the seed's low 32 bits and the
/// sample and stream enter through their low 32 bits, as the masked int64 products do.
#[inline]
pub fn key(seed: u32, sample: i64, stream: i64) -> u32 {
    let h = fmix32((sample as u32).wrapping_mul(0x9E37_79B1).wrapping_add(seed));
    fmix32(h ^ (stream as u32).wrapping_mul(0x85EB_CA77))
}

/// The hash of one counter under a key (`rng._mix`).
#[inline]
pub fn mix(key: u32, counter: i64) -> u32 {
    fmix32((counter as u32).wrapping_mul(0xC2B2_AE3D).wrapping_add(key))
}

/// Uniforms in [0, 1) for every (sample, counter) pair, row-major [samples × counters]
/// (`rng.uniform` of a [B, 1] sample column against a [1, C] counter row).
pub fn uniforms(seed: u32, stream: i64, samples: &[i64], counters: &[i64]) -> Vec<f64> {
    let mut out = vec![0.0; samples.len() * counters.len()];
    if counters.is_empty() {
        return out;
    }
    for (&sample, row) in samples.iter().zip(out.chunks_exact_mut(counters.len())) {
        fill_row(key(seed, sample, stream), counters, row);
    }
    out
}

/// Per (sample, counter) pair, 1 where the uniform is below `p` (row-major [samples ×
/// counters]): `rng.uniform(...) < p` without the float64 array in between.
pub fn below(seed: u32, stream: i64, samples: &[i64], counters: &[i64], p: f64) -> Vec<u8> {
    let mut out = vec![0u8; samples.len() * counters.len()];
    if counters.is_empty() {
        return out;
    }
    for (&sample, row) in samples.iter().zip(out.chunks_exact_mut(counters.len())) {
        let k = key(seed, sample, stream);
        #[inline(always)]
        fn body(k: u32, counters: &[i64], row: &mut [u8], p: f64) {
            for (out, &c) in row.iter_mut().zip(counters) {
                *out = u8::from(f64::from(mix(k, c)) * UNIT < p);
            }
        }
        avx2_or_plain!(
            body,
            (k: u32, counters: &[i64], row: &mut [u8], p: f64) -> (),
            (k, counters, row, p)
        );
    }
    out
}

/// One key's uniforms; independent lanes, so the loop vectorises (AVX2: eight 32-bit
/// multiplies an instruction, where SSE2 has none).
fn fill_row(key: u32, counters: &[i64], row: &mut [f64]) {
    fn body(key: u32, counters: &[i64], row: &mut [f64]) {
        for (out, &c) in row.iter_mut().zip(counters) {
            *out = f64::from(mix(key, c)) * UNIT;
        }
    }
    avx2_or_plain!(
        body,
        (key: u32, counters: &[i64], row: &mut [f64]) -> (),
        (key, counters, row)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Python definition, transcribed with i64 products masked to 32 bits (a product of
    /// two 32-bit values can pass 2^63: torch's int64 multiply wraps, and so does this one;
    /// the low 32 bits, all that is kept, are exact either way).
    fn fmix_masked(mut h: i64) -> i64 {
        const M: i64 = 0xFFFF_FFFF;
        h ^= h >> 16;
        h = h.wrapping_mul(0x85EB_CA6B) & M;
        h ^= h >> 13;
        h = h.wrapping_mul(0xC2B2_AE35) & M;
        h ^= h >> 16;
        h
    }

    #[test]
    fn wrapping_u32_equals_the_masked_int64_definition() {
        const M: i64 = 0xFFFF_FFFF;
        for (seed, sample, stream) in [(0i64, 0i64, 8i64), (12345, 7, 1), (-3, 99_999, 10)] {
            let h = fmix_masked((sample.wrapping_mul(0x9E37_79B1) + (seed & M)) & M);
            let want_key = fmix_masked((h ^ stream.wrapping_mul(0x85EB_CA77)) & M);
            let k = key((seed & M) as u32, sample, stream);
            assert_eq!(i64::from(k), want_key);
            for counter in [0i64, 1, 2, 65_535, 3_000_001, (1 << 31) + 5] {
                let want =
                    fmix_masked(counter.wrapping_mul(0xC2B2_AE3D).wrapping_add(want_key) & M);
                assert_eq!(i64::from(mix(k, counter)), want);
            }
        }
    }

    #[test]
    fn below_is_the_uniform_compared() {
        let counters: Vec<i64> = (0..1000).collect();
        for p in [0.0, 0.3, 0.5, 1.0] {
            let coins = below(9, 3, &[0, 4], &counters, p);
            let u = uniforms(9, 3, &[0, 4], &counters);
            assert!(coins.iter().zip(&u).all(|(&c, &v)| (c == 1) == (v < p)));
        }
    }

    #[test]
    fn uniforms_are_row_major_and_in_the_unit_interval() {
        let u = uniforms(5, 8, &[0, 3], &[0, 1, 2]);
        assert_eq!(u.len(), 6);
        assert_eq!(u[4], f64::from(mix(key(5, 3, 8), 1)) * UNIT);
        assert!(u.iter().all(|&v| (0.0..1.0).contains(&v)));
    }
}

#[cfg(test)]
mod speed {
    #[test]
    #[ignore]
    fn uniforms_speed() {
        let counters: Vec<i64> = (0..1_505_280).collect();
        for _ in 0..3 {
            let t = std::time::Instant::now();
            let u = super::uniforms(0, 8, &[0], &counters);
            println!("{:?} {}", t.elapsed(), u[7]);
        }
    }
}
