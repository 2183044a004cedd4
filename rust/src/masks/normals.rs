//! Standard normals of `qgfast.corrupt.warp._normal` (the elastic fields' noise) in one
//! pass: Box–Muller over pairs of counter-based uniforms, R = √(−2 ln u₁) and θ = 2π u₂,
//! giving R cos θ for pair c at c and R sin θ at pairs + c.
//!
//! The reference runs five torch passes over float32 (log, sqrt, cos, sin, products); here
//! the hash, the logarithm and the sine/cosine are one loop of branch-free float32
//! polynomials (Cephes' minimax coefficients: ~1 ulp), which the compiler vectorises. The
//! values agree with the reference to float32 rounding, not bit for bit (tested).
use super::counter_rng::{key, mix};

const UNIT: f32 = 1.0 / 4_294_967_296.0; // 2^-32, exact in float32

/// ln x for finite x > 0 (normal floats): x = m·2^e with m in [√½, √2), then Cephes' logf.
#[inline(always)]
fn ln(x: f32) -> f32 {
    let bits = x.to_bits();
    let mut e = ((bits >> 23) & 0xFF) as i32 - 126; // x = m·2^e, m in [0.5, 1)
    let mut m = f32::from_bits((bits & 0x007F_FFFF) | 0x3F00_0000);
    let low = m < std::f32::consts::FRAC_1_SQRT_2;
    e -= i32::from(low);
    m = if low { m + m - 1.0 } else { m - 1.0 };
    let e = e as f32;
    let z = m * m;
    let mut p = 7.037_683_6e-2_f32;
    for c in [
        -1.151_461e-1,
        1.167_699_9e-1,
        -1.242_014_1e-1,
        1.424_932_3e-1,
        -1.666_805_8e-1,
        2.000_071_4e-1,
        -2.499_999_4e-1,
        3.333_333e-1,
    ] {
        p = p * m + c;
    }
    let mut y = p * m * z;
    y += -2.121_944_4e-4 * e;
    y += -0.5 * z;
    m + y + 0.693_359_4 * e
}

/// (sin 2πt, cos 2πt) for t in [0, 1]: the quarter turn q = round(4t) taken out exactly,
/// the rest (|2π r| ≤ π/4) by Cephes' sinf/cosf polynomials, then rotated by q quarters.
#[inline(always)]
fn sin_cos_turns(t: f32) -> (f32, f32) {
    let q = (4.0 * t + 0.5).floor(); // t >= 0: rounds half up, one vector instruction
    let r = t - 0.25 * q; // exact: both are multiples of t's last bit
    let a = r * std::f32::consts::TAU;
    let a2 = a * a;
    let s = a + a * a2 * (-1.666_665_5e-1 + a2 * (8.332_161e-3 + a2 * -1.951_529_6e-4));
    let c =
        1.0 - 0.5 * a2 + a2 * a2 * (4.166_664_6e-2 + a2 * (-1.388_731_6e-3 + a2 * 2.443_315_7e-5));
    // by q quarter turns: odd q swaps sine and cosine (negating the new cosine), q = 2 or 3
    // negates both; written as selects so the loop stays vectorised
    let q = q as i32;
    let (s, c) = if q & 1 == 1 { (c, -s) } else { (s, c) };
    if q & 2 == 2 {
        (-s, -c)
    } else {
        (s, c)
    }
}

/// `count` standard normals per sample key (row-major [samples × count]) of the stream.
pub fn normals(seed: u32, stream: i64, samples: &[i64], count: usize) -> Vec<f32> {
    let pairs = count.div_ceil(2);
    let mut out = vec![0.0f32; samples.len() * count];
    if count == 0 {
        return out;
    }
    let mut sines = vec![0.0f32; pairs];
    for (&sample, row) in samples.iter().zip(out.chunks_exact_mut(count)) {
        let k = key(seed, sample, stream);
        fill(k, &mut row[..pairs], &mut sines);
        let tail = count - pairs; // the sines of the first `count − pairs` pairs
        row[pairs..].copy_from_slice(&sines[..tail]);
    }
    out
}

/// R cos θ into `cosines` and R sin θ into `sines` for pairs 0, 1, … under one key.
fn fill(key: u32, cosines: &mut [f32], sines: &mut [f32]) {
    #[inline(always)]
    fn body(key: u32, cosines: &mut [f32], sines: &mut [f32]) {
        for (c, (cos, sin)) in cosines.iter_mut().zip(sines.iter_mut()).enumerate() {
            let c = c as i64;
            // hash · 2^-32 rounded to float32 is the hash rounded to float32, times 2^-32
            // (a power of two scales exactly): the reference's float64 uniform, converted,
            // without leaving the float32 lanes
            let u1 = ((mix(key, 2 * c) as f32) * UNIT).max(UNIT);
            let u2 = (mix(key, 2 * c + 1) as f32) * UNIT;
            let radius = (-2.0 * ln(u1)).sqrt();
            let (s, co) = sin_cos_turns(u2);
            *cos = radius * co;
            *sin = radius * s;
        }
    }
    avx2_or_plain!(
        body,
        (key: u32, cosines: &mut [f32], sines: &mut [f32]) -> (),
        (key, cosines, sines)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ln_and_sin_cos_are_within_a_few_ulp_of_libm() {
        for i in 1..20_000u32 {
            let x = i as f32 / 20_000.0;
            let want = f64::from(x).ln();
            assert!(
                (f64::from(ln(x)) - want).abs() <= 2e-7 * want.abs().max(1.0),
                "ln {x}"
            );
            let (s, c) = sin_cos_turns(x);
            let a = std::f64::consts::TAU * f64::from(x);
            assert!((f64::from(s) - a.sin()).abs() < 4e-7, "sin {x}");
            assert!((f64::from(c) - a.cos()).abs() < 4e-7, "cos {x}");
        }
        assert_eq!(ln(1.0), 0.0);
        assert!((f64::from(ln(2f32.powi(-32))) - (-32.0 * 2f64.ln())).abs() < 1e-5);
    }

    #[test]
    fn float32_uniforms_are_the_rounded_float64_ones() {
        for h in [
            0u32,
            1,
            255,
            16_777_217,
            4_294_967_295,
            2_147_483_777,
            3_000_000_001,
        ] {
            let wide = (f64::from(h) * f64::from(UNIT)) as f32;
            assert_eq!((h as f32) * UNIT, wide, "{h}");
        }
    }

    #[test]
    fn pairs_are_laid_out_cosines_then_sines() {
        let z = normals(3, 8, &[0, 5], 7);
        assert_eq!(z.len(), 14);
        let k = key(3, 5, 8);
        let u1 = (f64::from(mix(k, 2)) * f64::from(UNIT)).max(f64::from(UNIT));
        let t = f64::from(mix(k, 3)) * f64::from(UNIT);
        let r = (-2.0 * u1.ln()).sqrt();
        let (s, c) = (std::f64::consts::TAU * t).sin_cos();
        assert!((f64::from(z[7 + 1]) - r * c).abs() < 1e-5);
        assert!((f64::from(z[7 + 4 + 1]) - r * s).abs() < 1e-5); // pairs = 4
    }
}

#[cfg(test)]
mod speed {
    #[test]
    #[ignore]
    fn normals_speed() {
        let samples: Vec<i64> = (0..64).collect();
        for _ in 0..5 {
            let t = std::time::Instant::now();
            let z = super::normals(0, 8, &samples, 2 * 224 * 224);
            println!("{:?} per mask {:?} {}", t.elapsed(), t.elapsed() / 64, z[9]);
        }
    }
}
