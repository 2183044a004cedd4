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

/// Interleaved [H, W, C] uint8 → planar [C, h, w] float in [0, 1] into `out`, anti-aliased
/// bilinear (PIL's filter). The vertical pass runs first, on whole interleaved rows
/// (contiguous, vectorised) into `rows` (scratch, grown as needed, never re-zeroed), so the
/// horizontal pass sees only `h` rows; the result differs from horizontal-first (PIL,
/// torch) by float rounding only (tests: within 2e-6 of torch).
pub fn resize_linear(
    src: &[u8],
    [c, h, w]: [usize; 3],
    [out_h, out_w]: [usize; 2],
    rows: &mut Vec<f32>,
    out: &mut [f32],
) {
    assert_eq!(src.len(), c * h * w, "resize source size");
    assert_eq!(out.len(), c * out_h * out_w, "resize output size");
    if rows.len() < out_h * w * c {
        rows.resize(out_h * w * c, 0.0);
    }
    let rows = &mut rows[..out_h * w * c];
    // The same loops compiled twice: for AVX2 + FMA (8-wide, what the vertical pass
    // auto-vectorises to), chosen at run time, and for the baseline x86-64 / other targets.
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2(src: &[u8], dims: [usize; 5], rows: &mut [f32], out: &mut [f32]) {
            resize_linear_impl(src, dims, rows, out)
        }
        // SAFETY: the CPU was just checked for AVX2 and FMA.
        return unsafe { avx2(src, [c, h, w, out_h, out_w], rows, out) };
    }
    resize_linear_impl(src, [c, h, w, out_h, out_w], rows, out)
}

#[inline(always)]
fn resize_linear_impl(
    src: &[u8],
    [c, h, w, out_h, out_w]: [usize; 5],
    rows: &mut [f32],
    out: &mut [f32],
) {
    let (tx, ty) = (Taps::new(w, out_w), Taps::new(h, out_h));
    let row_len = w * c;
    for (y, acc) in rows.chunks_exact_mut(row_len).enumerate() {
        let (lo, ws) = ty.of(y);
        // the first tap assigns (0 + x is x exactly), so the scratch needs no zeroing
        let first = &src[lo * row_len..][..row_len];
        for (a, &v) in acc.iter_mut().zip(first) {
            *a = ws[0] * v as f32;
        }
        for (k, &wk) in ws.iter().enumerate().skip(1) {
            let row = &src[(lo + k) * row_len..][..row_len];
            for (a, &v) in acc.iter_mut().zip(row) {
                *a += wk * v as f32;
            }
        }
    }
    let plane = out_h * out_w;
    for (y, row) in rows.chunks_exact(row_len).enumerate() {
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
}

/// torch's "nearest-exact" into `out` [out_h, out_w]: source index floor((dst + 0.5) · in / out),
/// in exact arithmetic (at an exact tie torch's float32 scale can round one pixel lower).
pub fn resize_nearest(src: &[u8], [h, w]: [usize; 2], [out_h, out_w]: [usize; 2], out: &mut [u8]) {
    let pick = |i: usize, inp: usize, out: usize| {
        (((i as f64 + 0.5) * inp as f64 / out as f64) as usize).min(inp - 1)
    };
    let columns: Vec<usize> = (0..out_w).map(|x| pick(x, w, out_w)).collect();
    for (y, dst) in out.chunks_exact_mut(out_w).take(out_h).enumerate() {
        let row = &src[pick(y, h, out_h) * w..][..w];
        for (o, &x) in dst.iter_mut().zip(&columns) {
            *o = row[x];
        }
    }
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

/// The `image` crate's default allocation cap, kept for the direct JPEG path too: a header
/// may claim up to 65535² pixels.
const MAX_IMAGE_BYTES: usize = 512 << 20;

/// JPEG straight through zune-jpeg (the decoder `image` wraps, same options) into a reused
/// buffer: interleaved RGB, or grey for a grey file. None where the generic path should run
/// instead (alpha colour spaces, a decode error: that path words the error).
fn decode_jpeg_into(bytes: &[u8], pixels: &mut Vec<u8>) -> Option<(usize, usize, usize)> {
    use zune_core::{bytestream::ZCursor, colorspace::ColorSpace, options::DecoderOptions};
    let options = DecoderOptions::default()
        .set_strict_mode(false)
        .set_max_width(usize::MAX)
        .set_max_height(usize::MAX);
    let mut decoder = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(bytes), options);
    decoder.decode_headers().ok()?;
    let (c, colours) = match decoder.input_colorspace()? {
        ColorSpace::Luma => (1, ColorSpace::Luma),
        ColorSpace::RGBA | ColorSpace::LumaA => return None,
        _ => (3, ColorSpace::RGB), // YCbCr, RGB, CMYK, YCCK: what `image` asks for too
    };
    decoder.set_options(decoder.options().jpeg_set_out_colorspace(colours));
    let (w, h) = decoder.dimensions()?;
    let size = decoder.output_buffer_size()?;
    if size > MAX_IMAGE_BYTES || size != h * w * c {
        return None;
    }
    // zeroed every time: a truncated file leaves part of the output unwritten, which must
    // read as zeros, not as the previous image
    pixels.clear();
    pixels.resize(size, 0);
    decoder.decode_into(pixels).ok()?;
    Some((c, h, w))
}

/// Image as interleaved uint8 [H, W, C] (C = 1 grey, 3 otherwise) in `pixels`; its (C, H, W).
pub fn decode_image(path: &Path, pixels: &mut Vec<u8>) -> Result<(usize, usize, usize), Error> {
    let bytes = read(path)?;
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        if let Some(dims) = decode_jpeg_into(&bytes, pixels) {
            return Ok(dims);
        }
    }
    let img = decode_any(path, &bytes)?;
    let (w, h) = (img.width() as usize, img.height() as usize);
    let grey = matches!(img.color(), image::ColorType::L8 | image::ColorType::L16);
    // `into_*` reuses the decoder's buffer when it already holds that layout
    *pixels = if grey {
        img.into_luma8().into_raw()
    } else {
        img.into_rgb8().into_raw()
    };
    Ok((if grey { 1 } else { 3 }, h, w))
}

fn unpack(row: &[u8], depth: usize, width: usize) -> impl Iterator<Item = u8> + '_ {
    let per = 8 / depth;
    let mask = (1u8 << depth) - 1;
    (0..width).map(move |x| {
        let shift = 8 - depth * (x % per + 1);
        (row[x / per] >> shift) & mask
    })
}

/// A PNG mask's values as stored (palette indices, grey levels, or grey saved as RGB) into
/// `out`; 16-bit values must fit uint8. `buf` is scratch for the raw frame.
fn decode_png_mask(
    path: &Path,
    bytes: &[u8],
    buf: &mut Vec<u8>,
    out: &mut Vec<u8>,
) -> Result<(usize, usize), Error> {
    use png::{BitDepth, ColorType};
    let bad = |e: png::DecodingError| data(path, format!("cannot decode PNG: {e}"));
    let mut decoder = png::Decoder::new(Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::IDENTITY);
    let mut reader = decoder.read_info().map_err(bad)?;
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| data(path, "PNG too large"))?;
    buf.clear();
    buf.resize(size, 0);
    let info = reader.next_frame(buf).map_err(bad)?;
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
    out.clear();
    out.reserve(w * h);
    let mut values: Vec<u8> = Vec::with_capacity(w * samples);
    for row in buf.chunks_exact(info.line_size).take(h) {
        let row: &[u8] = match depth {
            8 if samples == 1 => &row[..w], // grey or palette: the values themselves
            8 => &row[..w * samples],
            1 | 2 | 4 => {
                values.clear();
                values.extend(unpack(row, depth, w * samples));
                &values
            }
            _ => {
                values.clear();
                for b in row[..2 * w * samples].chunks_exact(2) {
                    let v = u16::from_be_bytes([b[0], b[1]]);
                    let v = u8::try_from(v)
                        .map_err(|_| data(path, format!("label {v} is over 255")))?;
                    values.push(v);
                }
                &values
            }
        };
        if samples == 1 {
            out.extend_from_slice(row);
            continue;
        }
        for px in row.chunks_exact(samples) {
            if samples >= 3 && (px[0] != px[1] || px[0] != px[2]) {
                return Err(data(
                    path,
                    "colour mask: expected grey levels or palette indices",
                ));
            }
            out.push(px[0]);
        }
    }
    Ok((h, w))
}

/// Label map uint8 [H, W] into `values` (`buf`: scratch), its size, and whether it is a 0/255
/// mask (to read as 0/1).
fn decode_mask(
    path: &Path,
    buf: &mut Vec<u8>,
    values: &mut Vec<u8>,
) -> Result<(usize, usize, bool), Error> {
    let bytes = read(path)?;
    let (h, w) = if bytes.starts_with(b"\x89PNG") {
        decode_png_mask(path, &bytes, buf, values)?
    } else {
        let img = decode_any(path, &bytes)?;
        let luma = img.to_luma8();
        let (w, h) = (luma.width() as usize, luma.height() as usize);
        *values = luma.into_raw();
        if is_jpeg(path) {
            values
                .iter_mut()
                .for_each(|v| *v = u8::from(*v >= 128) * 255);
        }
        (h, w)
    };
    // no early exit inside a chunk, so the comparison vectorises
    let binary = values
        .chunks(4096)
        .all(|c| c.iter().fold(true, |ok, &v| ok & ((v == 0) | (v == 255))));
    Ok((h, w, binary))
}

/// Per-thread buffers reused from image to image: the decoded pixels, the resize's
/// intermediate rows, the raw PNG frame and the mask values. Fresh 0.3–1.4 MB buffers per
/// image cost zeroing and page faults on the order of the resize itself; buffers of
/// outsized images are not kept.
#[derive(Default)]
struct Scratch {
    pixels: Vec<u8>,
    rows: Vec<f32>,
    png: Vec<u8>,
    mask: Vec<u8>,
}

const SCRATCH_KEEP_BYTES: usize = 64 << 20;

impl Scratch {
    /// Let go of buffers an outsized image grew past `SCRATCH_KEEP_BYTES`.
    fn trim(&mut self) {
        for v in [&mut self.pixels, &mut self.png, &mut self.mask] {
            if v.capacity() > SCRATCH_KEEP_BYTES {
                *v = Vec::new();
            }
        }
        if self.rows.capacity() * 4 > SCRATCH_KEEP_BYTES {
            self.rows = Vec::new();
        }
    }
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::default();
}

/// One 2D case at `size` = (H, W) as a [C, H, W, 1] volume (normalisation happens per
/// sample, after colour augmentation).
pub fn decode(
    image: &Path,
    label: Option<&std::path::PathBuf>,
    size: [usize; 2],
) -> Result<Decoded, Error> {
    SCRATCH.with(|scratch| {
        let scratch = &mut *scratch.borrow_mut();
        let decoded = decode_with(image, label, size, scratch);
        scratch.trim();
        decoded
    })
}

fn decode_with(
    image: &Path,
    label: Option<&std::path::PathBuf>,
    size: [usize; 2],
    scratch: &mut Scratch,
) -> Result<Decoded, Error> {
    let n = size[0] * size[1];
    let (c, h, w) = decode_image(image, &mut scratch.pixels)?;
    // every word is written by the resize (an odd count leaves a never-read half)
    let mut planes = crate::buffer::spare_words((c * n).div_ceil(2));
    let out = &mut bytemuck::cast_slice_mut::<u64, f32>(&mut planes)[..c * n];
    resize_linear(&scratch.pixels, [c, h, w], size, &mut scratch.rows, out);
    let label = match label {
        None => None,
        Some(path) => {
            let (mh, mw, binary) = decode_mask(path, &mut scratch.png, &mut scratch.mask)?;
            if (mh, mw) != (h, w) {
                return Err(data(
                    path,
                    format!("mask size {mh}×{mw} does not match the image's {h}×{w}"),
                ));
            }
            let mut words = crate::buffer::spare_words(n.div_ceil(8));
            let out = &mut bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..n];
            resize_nearest(&scratch.mask, [h, w], size, out);
            if binary {
                out.iter_mut().for_each(|v| *v = u8::from(*v != 0));
            }
            Some(words)
        }
    };
    Ok(Decoded::from_2d(size, c, planes, label))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(n: usize, seed: u32) -> Vec<u8> {
        let mut x = seed.wrapping_mul(2_654_435_761).max(1);
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x >> 24) as u8
            })
            .collect()
    }

    #[test]
    fn jpeg_fast_path_equals_the_image_crate() {
        let (w, h) = (37u32, 29u32);
        for (colour, c) in [
            (image::ExtendedColorType::Rgb8, 3usize),
            (image::ExtendedColorType::L8, 1),
        ] {
            // a smooth image with noise: JPEG keeps detail, so chroma and blocks matter
            let raw: Vec<u8> = noise((w * h) as usize * c, 7)
                .iter()
                .enumerate()
                .map(|(i, &v)| (v / 4).wrapping_add((i / c % w as usize) as u8 * 5))
                .collect();
            let mut jpeg = Vec::new();
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 90)
                .encode(&raw, w, h, colour)
                .unwrap();
            let mut fast = Vec::new();
            let (stored, hh, ww) = decode_jpeg_into(&jpeg, &mut fast).expect("fast path");
            assert_eq!((hh, ww), (h as usize, w as usize));
            let generic = decode_any(Path::new("x.jpg"), &jpeg).unwrap();
            assert_eq!(stored, c);
            if c == 3 {
                assert_eq!(fast, generic.to_rgb8().into_raw());
            } else {
                assert_eq!(fast, generic.to_luma8().into_raw());
            }
        }
    }

    #[test]
    fn rgb_resize_equals_each_channel_resized_alone() {
        let (h, w) = (23, 31);
        let rgb = noise(h * w * 3, 3);
        for size in [[11, 13], [23, 31], [40, 17]] {
            let n = size[0] * size[1];
            let mut rows = Vec::new();
            let mut out = vec![0f32; 3 * n];
            resize_linear(&rgb, [3, h, w], size, &mut rows, &mut out);
            for ch in 0..3 {
                let grey: Vec<u8> = rgb.iter().skip(ch).step_by(3).copied().collect();
                let mut alone = vec![0f32; n];
                resize_linear(&grey, [1, h, w], size, &mut rows, &mut alone);
                assert_eq!(
                    &out[ch * n..(ch + 1) * n],
                    &alone[..],
                    "{size:?} channel {ch}"
                );
            }
        }
    }

    #[test]
    fn grey_resize_matches_the_separable_filter_in_f64() {
        let (h, w) = (19, 26);
        let grey = noise(h * w, 5);
        for size in [[7, 9], [19, 26], [33, 41]] {
            let (tx, ty) = (Taps::new(w, size[1]), Taps::new(h, size[0]));
            let mut rows = Vec::new();
            let mut out = vec![0f32; size[0] * size[1]];
            resize_linear(&grey, [1, h, w], size, &mut rows, &mut out);
            for y in 0..size[0] {
                for x in 0..size[1] {
                    let ((ly, wy), (lx, wx)) = (ty.of(y), tx.of(x));
                    let mut want = 0f64;
                    for (i, &a) in wy.iter().enumerate() {
                        for (j, &b) in wx.iter().enumerate() {
                            want += a as f64 * b as f64 * grey[(ly + i) * w + lx + j] as f64;
                        }
                    }
                    let got = out[y * size[1] + x] as f64;
                    assert!((got - want / 255.0).abs() < 1e-5, "{size:?} ({y}, {x})");
                }
            }
        }
    }
}
