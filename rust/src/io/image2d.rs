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

use super::jpeg::{self, Choice};
use super::resize::{resize_nearest, LinearResizer};
use crate::errors::{data, Error};

pub const EXTENSIONS: [&str; 6] = [".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"];

pub fn is_2d(path: &Path) -> bool {
    let name = path.to_string_lossy().to_lowercase();
    EXTENSIONS.iter().any(|e| name.ends_with(e))
}

fn is_jpeg(path: &Path) -> bool {
    let name = path.to_string_lossy().to_lowercase();
    name.ends_with(".jpg") || name.ends_with(".jpeg")
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

/// Image as interleaved uint8 [H, W, C] (C = 1 grey, 3 otherwise) in `pixels`; its (C, H, W).
/// JPEGs go to the stream's JPEG decoder (`jpeg`), the rest and the JPEGs that decoder does
/// not take to the `image` crate.
pub fn decode_image(
    path: &Path,
    pixels: &mut Vec<u8>,
    jpeg: (Choice, &mut jpeg::Decoder),
) -> Result<(usize, usize, usize), Error> {
    let bytes = read(path)?;
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        let (choice, decoder) = jpeg;
        match decoder.decode_into(choice, &bytes, pixels) {
            Ok(Some(dims)) => return Ok(dims),
            Ok(None) => {}
            Err(why) => return Err(data(path, format!("cannot decode JPEG: {why}"))),
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

/// Per-thread buffers reused from image to image: the decoded pixels, the resizer (its
/// block scratch and the last sizes' taps), the raw PNG frame, the mask values, and the
/// thread's JPEG decompressor. Fresh
/// 0.3–1.4 MB buffers per image cost zeroing and page faults on the order of the resize
/// itself; buffers of outsized images are not kept.
#[derive(Default)]
struct Scratch {
    pixels: Vec<u8>,
    resizer: LinearResizer,
    png: Vec<u8>,
    mask: Vec<u8>,
    jpeg: jpeg::Decoder,
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
        if self.resizer.scratch_bytes() > SCRATCH_KEEP_BYTES {
            self.resizer = LinearResizer::default();
        }
    }
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::default();
}

/// One 2D case decoded at the stream's size [H, W]: `channels` float32 planes [C][H·W]
/// (row-major) in one buffer, and an optional uint8 label [H·W]. The buffers come from and
/// go back to the thread's spares (`buffer::spare_words`).
pub struct Planes {
    pub size: [usize; 2],
    pub channels: usize,
    pub planes: Vec<u64>,
    pub label: Option<Vec<u64>>,
}

/// One 2D case at `size` = (H, W) (normalisation happens per sample, after colour
/// augmentation).
pub fn decode(
    image: &Path,
    label: Option<&std::path::PathBuf>,
    size: [usize; 2],
    jpeg: Choice,
) -> Result<Planes, Error> {
    SCRATCH.with(|scratch| {
        let scratch = &mut *scratch.borrow_mut();
        let decoded = decode_with(image, label, size, jpeg, scratch);
        scratch.trim();
        decoded
    })
}

fn decode_with(
    image: &Path,
    label: Option<&std::path::PathBuf>,
    size: [usize; 2],
    jpeg: Choice,
    scratch: &mut Scratch,
) -> Result<Planes, Error> {
    let n = size[0] * size[1];
    let (c, h, w) = decode_image(image, &mut scratch.pixels, (jpeg, &mut scratch.jpeg))?;
    // every word is written by the resize (an odd count leaves a never-read half)
    let mut planes = super::buffer::spare_words((c * n).div_ceil(2));
    let out = &mut bytemuck::cast_slice_mut::<u64, f32>(&mut planes)[..c * n];
    scratch
        .resizer
        .resize(&scratch.pixels, [c, h, w], size, out);
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
            let mut words = super::buffer::spare_words(n.div_ceil(8));
            let out = &mut bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..n];
            resize_nearest(&scratch.mask, [h, w], size, out);
            if binary {
                out.iter_mut().for_each(|v| *v = u8::from(*v != 0));
            }
            Some(words)
        }
    };
    Ok(Planes {
        size,
        channels: c,
        planes,
        label,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `QGFAST_IMAGES=DIR cargo test --release image_decode_speed -- --ignored --nocapture`:
    /// decode + resize + mask per image of DIR/images/*.jpg with DIR/masks/*.png, one thread.
    #[test]
    #[ignore]
    fn image_decode_speed() {
        let Some(dir) = std::env::var_os("QGFAST_IMAGES") else {
            return;
        };
        let dir = std::path::PathBuf::from(dir);
        let mut images: Vec<_> = std::fs::read_dir(dir.join("images"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        images.sort();
        let masks: Vec<_> = images
            .iter()
            .map(|p| {
                dir.join("masks")
                    .join(p.file_name().unwrap())
                    .with_extension("png")
            })
            .collect();
        let mut best = f64::MAX;
        for _ in 0..5 {
            let t = std::time::Instant::now();
            for (i, m) in images.iter().zip(&masks) {
                drop(decode(i, Some(m), [224, 224], Choice::Auto).unwrap());
            }
            best = best.min(t.elapsed().as_secs_f64() * 1e3 / images.len() as f64);
        }
        println!("decode + resize + mask: {best:.3} ms per image");
    }
}
