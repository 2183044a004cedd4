//! 2D colour augmentation and the per-sample normalisation after it, fused: torchvision's
//! ColorJitter order (brightness, contrast, per-channel gain, each clamped to [0, 1]), then
//! ImageNet mean/std or per-image z-scores, in one write pass.

/// Per-sample normalisation after augmentation (2D: ImageNet or per-image).
#[derive(Debug, Clone, PartialEq)]
pub enum PostNorm {
    None,
    MeanStd(Vec<f32>, Vec<f32>),
    PerImage,
}

/// One sample's colour jitter: brightness and contrast factors and per-channel gains
/// (1 is the identity).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Jitter {
    pub brightness: f32,
    pub contrast: f32,
    pub gain: [f32; 3],
}

/// Where `colour` reads: the output itself, or stored 2D planes [H, W] written into the
/// output mirrored per (vertical, horizontal) flag.
pub enum Source<'a> {
    InPlace(usize),
    Planes(&'a [&'a [f32]], [usize; 2], [bool; 2]),
}

/// torchvision ColorJitter order: brightness, contrast (blend with the mean grey level),
/// then per-channel gain, clamping to [0, 1] after each; then the per-sample normalisation.
/// Fused: one read pass for the grey level (when contrast changes), one per channel for
/// per-image statistics (when asked), and one write pass.
pub fn colour(jitter: &Jitter, post: &PostNorm, source: Source, out: &mut [f32]) {
    // The same loops compiled for AVX2 + FMA when the CPU has them (8-wide instead of the
    // baseline's 4), chosen at run time.
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        #[target_feature(enable = "avx2,fma")]
        fn avx2(jitter: &Jitter, post: &PostNorm, source: Source, out: &mut [f32]) {
            colour_impl(jitter, post, source, out)
        }
        // SAFETY: the CPU was just checked for AVX2 and FMA.
        return unsafe { avx2(jitter, post, source, out) };
    }
    colour_impl(jitter, post, source, out)
}

/// Σ f over the planes' values in f64: eight f32 lanes (one vector) within blocks of 1024
/// values, the blocks added in f64 (error ~1e-6 of the mean, like a pairwise sum).
#[inline(always)]
fn block_sum<const K: usize>(planes: [&[f32]; K], f: impl Fn([f32; K]) -> f32) -> f64 {
    let n = planes[0].len();
    let mut total = 0f64;
    for start in (0..n).step_by(1024) {
        let block = planes.map(|p| &p[start..(start + 1024).min(n)]);
        let vectors = block.map(|p| p.as_chunks::<8>().0);
        let mut lanes = [0f32; 8];
        for i in 0..vectors[0].len() {
            let v: [&[f32; 8]; K] = vectors.map(|p| &p[i]);
            for (l, lane) in lanes.iter_mut().enumerate() {
                *lane += f(v.map(|p| p[l]));
            }
        }
        let tail: f64 = (vectors[0].len() * 8..block[0].len())
            .map(|i| f(block.map(|p| p[i])) as f64)
            .sum();
        total += lanes.iter().map(|&v| v as f64).sum::<f64>() + tail;
    }
    total
}

/// One value through brightness `b`, contrast `k` (towards `grey`) and `gain`, each clamped
/// to [0, 1]. Branch-free (an identity step computes its input exactly: v·1, 1·v + 0·grey,
/// and values already in [0, 1]), so the loops vectorise.
#[inline(always)]
fn jittered(v: f32, [b, k, grey, gain]: [f32; 4]) -> f32 {
    let v = (v * b).clamp(0.0, 1.0);
    let v = (k * v + (1.0 - k) * grey).clamp(0.0, 1.0);
    (v * gain).clamp(0.0, 1.0)
}

/// The mean grey level (0 when contrast is off) and per channel (mean, 1 / std) of the
/// normalisation, from the planes' values as read.
#[inline(always)]
fn colour_stats(
    jitter: &Jitter,
    post: &PostNorm,
    planes: &[&[f32]],
    gains: &[f32],
) -> (f32, Vec<(f32, f32)>) {
    let (b, k, n) = (jitter.brightness, jitter.contrast, planes[0].len());
    let bright = |v: f32| jittered(v, [b, 1.0, 0.0, 1.0]);
    let grey = if k == 1.0 {
        0.0
    } else if planes.len() == 3 {
        let grey =
            |[r, g, bl]: [f32; 3]| 0.299 * bright(r) + 0.587 * bright(g) + 0.114 * bright(bl);
        (block_sum([planes[0], planes[1], planes[2]], grey) / n as f64) as f32
    } else {
        let sum: f64 = planes
            .iter()
            .map(|p| block_sum([*p], |[v]| bright(v)))
            .sum();
        (sum / (planes.len() * n) as f64) as f32
    };
    let norm = (0..planes.len())
        .map(|ch| match post {
            PostNorm::None => (0.0, 1.0),
            // (v - mean) · (1 / std): a multiply instead of a divide per value, within an ulp
            PostNorm::MeanStd(mean, std) => (mean[ch % mean.len()], 1.0 / std[ch % std.len()]),
            PostNorm::PerImage => {
                let j = [b, k, grey, gains[ch]];
                let mean = (block_sum([planes[ch]], |[v]| jittered(v, j)) / n as f64) as f32;
                let sq = |[v]: [f32; 1]| (jittered(v, j) - mean).powi(2);
                let var = block_sum([planes[ch]], sq) / n as f64;
                (mean, 1.0 / var.sqrt().max(1e-6) as f32)
            }
        })
        .collect();
    (grey, norm)
}

/// `out[i] = f(src[len - 1 - i])`, eight values a step (a fixed reversal the compiler turns
/// into one shuffle; an element-wise reversed loop stays scalar).
#[inline(always)]
fn map_mirrored(out: &mut [f32], src: &[f32], f: impl Fn(f32) -> f32) {
    let mut outs = out.chunks_exact_mut(8);
    let mut srcs = src.rchunks_exact(8);
    for (o, s) in (&mut outs).zip(&mut srcs) {
        for (i, o) in o.iter_mut().enumerate() {
            *o = f(s[7 - i]);
        }
    }
    for (o, &v) in outs
        .into_remainder()
        .iter_mut()
        .zip(srcs.remainder().iter().rev())
    {
        *o = f(v);
    }
}

#[inline(always)]
fn colour_impl(jitter: &Jitter, post: &PostNorm, source: Source, out: &mut [f32]) {
    let (b, k) = (jitter.brightness, jitter.contrast);
    let c = match source {
        Source::InPlace(c) => c,
        Source::Planes(planes, ..) => planes.len(),
    };
    let n = out.len() / c;
    let gains: Vec<f32> = (0..c)
        .map(|ch| jitter.gain.get(ch).copied().unwrap_or(1.0))
        .collect();
    match source {
        Source::InPlace(_) => {
            let identity = b == 1.0 && k == 1.0 && gains.iter().all(|&g| g == 1.0);
            if identity && *post == PostNorm::None {
                return; // nothing to do: spare the write pass
            }
            let planes: Vec<&[f32]> = out.chunks_exact(n).collect();
            let (grey, norm) = colour_stats(jitter, post, &planes, &gains);
            for (ch, plane) in out.chunks_exact_mut(n).enumerate() {
                let (j, (mean, inv_std)) = ([b, k, grey, gains[ch]], norm[ch]);
                // plain loops, not `for_each`: a generic method would not inline into the
                // AVX2 copy
                for v in plane.iter_mut() {
                    *v = (jittered(*v, j) - mean) * inv_std;
                }
            }
        }
        Source::Planes(planes, [h, w], [vflip, hflip]) => {
            let (grey, norm) = colour_stats(jitter, post, planes, &gains);
            for (ch, plane) in out.chunks_exact_mut(n).enumerate() {
                let (j, (mean, inv_std)) = ([b, k, grey, gains[ch]], norm[ch]);
                let f = |v: f32| (jittered(v, j) - mean) * inv_std;
                for (y, row) in plane.chunks_exact_mut(w).take(h).enumerate() {
                    let from = if vflip { h - 1 - y } else { y };
                    let src = &planes[ch][from * w..][..w];
                    if hflip {
                        map_mirrored(row, src, f);
                    } else {
                        for (o, &v) in row.iter_mut().zip(src) {
                            *o = f(v);
                        }
                    }
                }
            }
        }
    }
}
