//! 2D images for ImageStream: decode (PNG, JPEG, BMP, TIFF), resize to the stream's size
//! and hand back a [C, H, W, 1] "volume" the patch machinery of `stream` crops whole.
//!
//! Images: grey stays one channel, everything else becomes RGB, values in [0, 1], resized
//! with PIL's anti-aliased bilinear filter (what torch's `interpolate(..., antialias=True)`
//! computes). Masks: PNG palette indices as stored (not expanded to colours), grey levels,
//! or grey saved as RGB; a 0/255 mask becomes 0/1; JPEG masks are binarised at 128 (a lossy
//! format cannot hold labels); resized by nearest neighbour (torch's "nearest-exact").
use std::io::Cursor;
use std::path::Path;

use crate::errors::Error;
use crate::nifti::data;
use crate::volume::Decoded;

pub const EXTENSIONS: [&str; 6] = [".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"];

pub fn is_2d(path: &Path) -> bool {
    let name = path.to_string_lossy().to_lowercase();
    EXTENSIONS.iter().any(|e| name.ends_with(e))
}

fn is_jpeg(path: &Path) -> bool {
    let name = path.to_string_lossy().to_lowercase();
    name.ends_with(".jpg") || name.ends_with(".jpeg")
}

/// PIL's separable resampling weights for one axis (bilinear = triangle filter, support
/// scaled by the reduction factor when shrinking): per output pixel the first input index
/// and its taps, flattened with a fixed stride so the inner loops index one array.
struct Taps {
    first: Vec<usize>,
    stride: usize,
    weights: Vec<f32>,
}

impl Taps {
    fn new(input: usize, output: usize) -> Taps {
        let scale = input as f64 / output as f64;
        let (support, inv) = if scale >= 1.0 {
            (scale, 1.0 / scale)
        } else {
            (1.0, 1.0)
        };
        let per: Vec<(usize, Vec<f64>)> = (0..output)
            .map(|i| {
                let centre = scale * (i as f64 + 0.5);
                let lo = ((centre - support + 0.5) as isize).max(0) as usize;
                let hi = ((centre + support + 0.5) as usize).min(input);
                let mut w: Vec<f64> = (lo..hi)
                    .map(|j| {
                        let x = (j as f64 - centre + 0.5) * inv;
                        (1.0 - x.abs()).max(0.0)
                    })
                    .collect();
                let total: f64 = w.iter().sum();
                if total > 0.0 {
                    w.iter_mut().for_each(|v| *v /= total);
                }
                (lo, w)
            })
            .collect();
        // every output gets the same number of taps (zero weights pad the short ones, the
        // window shifted left at the far edge), so the inner loops have one fixed length;
        // a zero-weight term adds exactly 0 and leaves the sums unchanged
        let stride = per.iter().map(|(_, w)| w.len()).max().unwrap_or(0);
        let mut weights = vec![0f32; stride * output];
        let mut first = Vec::with_capacity(output);
        for (i, (lo, w)) in per.iter().enumerate() {
            let start = (*lo).min(input - stride);
            for (k, &v) in w.iter().enumerate() {
                weights[i * stride + lo - start + k] = v as f32;
            }
            first.push(start);
        }
        Taps {
            first,
            stride,
            weights,
        }
    }

    fn of(&self, i: usize) -> (usize, &[f32]) {
        (
            self.first[i],
            &self.weights[i * self.stride..][..self.stride],
        )
    }
}

/// Interleaved [H, W, C] uint8 → planar [C, h, w] float in [0, 1], anti-aliased bilinear
/// (PIL's filter). The vertical pass runs first, on whole interleaved rows (contiguous,
/// vectorised), so the scalar horizontal pass sees only `h` rows; the result differs from
/// horizontal-first (PIL, torch) by float rounding only (tests: within 2e-6 of torch).
pub fn resize_linear(
    src: &[u8],
    c: usize,
    h: usize,
    w: usize,
    out_h: usize,
    out_w: usize,
) -> Vec<f32> {
    // The same loops compiled twice: for AVX2 + FMA (8-wide, what the vertical pass
    // auto-vectorises to), chosen at run time, and for the baseline x86-64 / other targets.
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2(src: &[u8], dims: [usize; 5]) -> Vec<f32> {
            resize_linear_impl(src, dims)
        }
        // SAFETY: the CPU was just checked for AVX2 and FMA.
        return unsafe { avx2(src, [c, h, w, out_h, out_w]) };
    }
    resize_linear_impl(src, [c, h, w, out_h, out_w])
}

#[inline(always)]
fn resize_linear_impl(src: &[u8], [c, h, w, out_h, out_w]: [usize; 5]) -> Vec<f32> {
    let (tx, ty) = (Taps::new(w, out_w), Taps::new(h, out_h));
    let row_len = w * c;
    let mut tmp = vec![0f32; out_h * row_len];
    for (y, acc) in tmp.chunks_exact_mut(row_len).enumerate() {
        let (lo, ws) = ty.of(y);
        for (k, &wk) in ws.iter().enumerate() {
            let row = &src[(lo + k) * row_len..][..row_len];
            for (a, &v) in acc.iter_mut().zip(row) {
                *a += wk * v as f32;
            }
        }
    }
    let mut out = vec![0f32; c * out_h * out_w];
    let plane = out_h * out_w;
    for (y, row) in tmp.chunks_exact(row_len).enumerate() {
        for x in 0..out_w {
            let (lo, ws) = tx.of(x);
            let px = &row[lo * c..(lo + ws.len()) * c];
            let at = y * out_w + x;
            if c == 3 {
                let (mut r, mut g, mut b) = (0f32, 0f32, 0f32);
                for (p, &wk) in px.chunks_exact(3).zip(ws) {
                    r += wk * p[0];
                    g += wk * p[1];
                    b += wk * p[2];
                }
                out[at] = r / 255.0;
                out[plane + at] = g / 255.0;
                out[2 * plane + at] = b / 255.0;
            } else {
                for ch in 0..c {
                    let acc: f32 = px
                        .iter()
                        .skip(ch)
                        .step_by(c)
                        .zip(ws)
                        .map(|(&v, &wk)| wk * v)
                        .sum();
                    out[ch * plane + at] = acc / 255.0;
                }
            }
        }
    }
    out
}

/// torch's "nearest-exact": source index floor((dst + 0.5) · in / out).
pub fn resize_nearest(src: &[u8], h: usize, w: usize, out_h: usize, out_w: usize) -> Vec<u8> {
    let pick = |i: usize, inp: usize, out: usize| {
        (((i as f64 + 0.5) * inp as f64 / out as f64) as usize).min(inp - 1)
    };
    let columns: Vec<usize> = (0..out_w).map(|x| pick(x, w, out_w)).collect();
    let mut out = Vec::with_capacity(out_h * out_w);
    for y in 0..out_h {
        let row = &src[pick(y, h, out_h) * w..][..w];
        out.extend(columns.iter().map(|&x| row[x]));
    }
    out
}

fn decode_any(path: &Path, bytes: &[u8]) -> Result<image::DynamicImage, Error> {
    image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| data(path, format!("cannot read image: {e}")))?
        .decode()
        .map_err(|e| data(path, format!("cannot decode image: {e}")))
}

fn read(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|e| data(path, format!("cannot open: {e}")))
}

/// Image as interleaved uint8 [H, W, C] (C = 1 grey, 3 otherwise) and its size.
pub fn decode_image(path: &Path) -> Result<(Vec<u8>, usize, usize, usize), Error> {
    let img = decode_any(path, &read(path)?)?;
    let (w, h) = (img.width() as usize, img.height() as usize);
    let grey = matches!(img.color(), image::ColorType::L8 | image::ColorType::L16);
    // `into_*` reuses the decoder's buffer when it already holds that layout (JPEG: RGB8)
    Ok(if grey {
        (img.into_luma8().into_raw(), 1, h, w)
    } else {
        (img.into_rgb8().into_raw(), 3, h, w)
    })
}

fn unpack(row: &[u8], depth: usize, width: usize) -> Vec<u16> {
    let per = 8 / depth;
    let mask = (1u16 << depth) - 1;
    (0..width)
        .map(|x| {
            let byte = row[x / per] as u16;
            let shift = 8 - depth * (x % per + 1);
            (byte >> shift) & mask
        })
        .collect()
}

fn decode_png_mask(path: &Path, bytes: &[u8]) -> Result<(Vec<u16>, usize, usize), Error> {
    use png::{BitDepth, ColorType};
    let bad = |e: png::DecodingError| data(path, format!("cannot decode PNG: {e}"));
    let mut decoder = png::Decoder::new(Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::IDENTITY);
    let mut reader = decoder.read_info().map_err(bad)?;
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| data(path, "PNG too large"))?;
    let mut buf = vec![0u8; size];
    let info = reader.next_frame(&mut buf).map_err(bad)?;
    let (w, h) = (info.width as usize, info.height as usize);
    let depth = match info.bit_depth {
        BitDepth::One => 1,
        BitDepth::Two => 2,
        BitDepth::Four => 4,
        BitDepth::Eight => 8,
        BitDepth::Sixteen => 16,
    };
    let samples = match info.color_type {
        ColorType::Grayscale | ColorType::Indexed => 1,
        ColorType::GrayscaleAlpha => 2,
        ColorType::Rgb => 3,
        ColorType::Rgba => 4,
    };
    let mut out = Vec::with_capacity(w * h);
    let mut values: Vec<u16> = Vec::with_capacity(w * samples);
    for row in buf.chunks_exact(info.line_size).take(h) {
        values.clear();
        match depth {
            1 | 2 | 4 => values.extend(unpack(row, depth, w * samples)),
            8 => values.extend(row[..w * samples].iter().map(|&v| v as u16)),
            _ => values.extend(
                row[..2 * w * samples]
                    .chunks_exact(2)
                    .map(|b| u16::from_be_bytes([b[0], b[1]])),
            ),
        }
        if samples == 1 {
            out.extend_from_slice(&values); // grey or palette: nothing to check per pixel
            continue;
        }
        for px in values.chunks_exact(samples) {
            if samples >= 3 && (px[0] != px[1] || px[0] != px[2]) {
                return Err(data(
                    path,
                    "colour mask: expected grey levels or palette indices",
                ));
            }
            out.push(px[0]);
        }
    }
    Ok((out, h, w))
}

/// Label map uint8 [H, W] and its size.
pub fn decode_mask(path: &Path) -> Result<(Vec<u8>, usize, usize), Error> {
    let bytes = read(path)?;
    let (values, h, w) = if bytes.starts_with(b"\x89PNG") {
        decode_png_mask(path, &bytes)?
    } else {
        let img = decode_any(path, &bytes)?;
        let luma = img.to_luma8();
        let (w, h) = (luma.width() as usize, luma.height() as usize);
        let binarise = is_jpeg(path);
        let vals = luma
            .into_raw()
            .into_iter()
            .map(|v| {
                if binarise {
                    u16::from(v >= 128)
                } else {
                    v as u16
                }
            })
            .collect();
        (vals, h, w)
    };
    if values.iter().all(|&v| v == 0 || v == 255) {
        return Ok((values.iter().map(|&v| u8::from(v != 0)).collect(), h, w));
    }
    if let Some(v) = values.iter().find(|&&v| v > 255) {
        return Err(data(path, format!("label {v} is over 255")));
    }
    Ok((values.iter().map(|&v| v as u8).collect(), h, w))
}

/// One 2D case at `size` = (H, W) as a [C, H, W, 1] volume (normalisation happens per
/// sample, after colour augmentation).
pub fn decode(
    image: &Path,
    label: Option<&std::path::PathBuf>,
    size: [usize; 2],
) -> Result<Decoded, Error> {
    let (pixels, c, h, w) = decode_image(image)?;
    let resized = resize_linear(&pixels, c, h, w, size[0], size[1]);
    let label = match label {
        None => None,
        Some(path) => {
            let (mask, mh, mw) = decode_mask(path)?;
            if (mh, mw) != (h, w) {
                return Err(data(
                    path,
                    format!("mask size {mh}×{mw} does not match the image's {h}×{w}"),
                ));
            }
            Some(resize_nearest(&mask, h, w, size[0], size[1]))
        }
    };
    Ok(Decoded::from_2d(
        size[0],
        size[1],
        &resized,
        label.as_deref(),
    ))
}
