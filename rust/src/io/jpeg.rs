//! JPEG decoding for ImageStream, by one of two decoders:
//!
//! - libjpeg-turbo, through its TurboJPEG C API, loaded at run time from the system
//!   (`libturbojpeg.so.0`, Debian's `libturbojpeg0`; `QGFAST_TURBOJPEG=/path/lib` names
//!   another). It is the decoder inside Pillow's wheels, so its pixels are PIL's, bit for
//!   bit, and it decodes a 512² JPEG ~20 % faster than zune-jpeg on this project's CPUs.
//!   Loaded, not linked: the extension builds and runs without it.
//! - zune-jpeg, pure Rust and always built in (the decoder the `image` crate wraps); its
//!   IDCT and upsampling round differently from libjpeg's, so pixels differ from PIL's by a
//!   level or two.
//!
//! `Choice::Auto` takes libjpeg-turbo where it loads. Both decode the JPEG as stored:
//! grey stays grey, every other colour space becomes interleaved RGB.
use std::ffi::{c_char, c_int, c_ulong, c_void, CStr};
use std::sync::OnceLock;

use crate::errors::Error;

/// The `image` crate's default allocation cap, kept for the direct paths too: a header may
/// claim up to 65535² pixels.
pub const MAX_IMAGE_BYTES: usize = 512 << 20;

/// Which decoder a stream uses (its `jpeg_decoder` option).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Choice {
    /// libjpeg-turbo where it loads, zune-jpeg otherwise
    #[default]
    Auto,
    LibjpegTurbo,
    Zune,
}

impl Choice {
    pub const NAMES: [&'static str; 3] = ["auto", "libjpeg-turbo", "zune"];

    /// The option's value; "libjpeg-turbo" is refused here when the library does not load,
    /// so a stream that asks for it fails at construction, not at its first JPEG.
    pub fn parse(name: &str) -> Result<Self, Error> {
        let choice = match name {
            "auto" => Choice::Auto,
            "libjpeg-turbo" => Choice::LibjpegTurbo,
            "zune" => Choice::Zune,
            other => {
                return Err(Error::InvalidArgument(format!(
                    "jpeg_decoder must be one of {:?}, got {other:?}",
                    Self::NAMES
                )))
            }
        };
        if choice == Choice::LibjpegTurbo {
            if let Err(why) = turbo() {
                return Err(Error::InvalidArgument(format!(
                    "jpeg_decoder=\"libjpeg-turbo\", but it does not load here: {why}"
                )));
            }
        }
        Ok(choice)
    }
}

/// What `build_info()["jpeg_decoder"]` says: the decoder "auto" picks, and why.
pub fn describe() -> String {
    match turbo() {
        Ok(t) => format!("libjpeg-turbo ({})", t.path),
        Err(why) => format!("zune-jpeg ({why})"),
    }
}

type Handle = *mut c_void;

/// The TurboJPEG 2.0 API functions used here (present in every release since 2.0, 3.x
/// included), with the library that holds them.
struct Turbo {
    init: unsafe extern "C" fn() -> Handle,
    header: unsafe extern "C" fn(
        Handle,
        *const u8,
        c_ulong,
        *mut c_int,
        *mut c_int,
        *mut c_int,
        *mut c_int,
    ) -> c_int,
    #[allow(clippy::type_complexity)]
    decompress: unsafe extern "C" fn(
        Handle,
        *const u8,
        c_ulong,
        *mut u8,
        c_int,
        c_int,
        c_int,
        c_int,
        c_int,
    ) -> c_int,
    error_str: unsafe extern "C" fn(Handle) -> *const c_char,
    error_code: unsafe extern "C" fn(Handle) -> c_int,
    destroy: unsafe extern "C" fn(Handle) -> c_int,
    path: String,
    _library: libloading::Library,
}

// TurboJPEG's enums (turbojpeg.h)
const TJPF_RGB: c_int = 0;
const TJPF_GRAY: c_int = 6;
const TJCS_RGB: c_int = 0;
const TJCS_YCBCR: c_int = 1;
const TJCS_GRAY: c_int = 2;
const TJERR_WARNING: c_int = 0;
/// Refuse progressive JPEGs with over 500 scans: a crafted file can otherwise make the
/// decoder spend minutes (libjpeg-turbo's own guard against that denial of service).
const TJFLAG_LIMITSCANS: c_int = 32768;

const LIBRARY_NAMES: &[&str] = if cfg!(target_os = "macos") {
    &["libturbojpeg.0.dylib", "libturbojpeg.dylib"]
} else if cfg!(windows) {
    &["turbojpeg.dll"]
} else {
    &["libturbojpeg.so.0", "libturbojpeg.so"]
};

/// The loaded library, or why none loaded; tried once per process.
fn turbo() -> Result<&'static Turbo, &'static str> {
    static TURBO: OnceLock<Result<Turbo, String>> = OnceLock::new();
    TURBO
        .get_or_init(|| match std::env::var_os("QGFAST_TURBOJPEG") {
            Some(path) => load(&path.to_string_lossy()),
            None => {
                let mut why = Vec::new();
                for name in LIBRARY_NAMES {
                    match load(name) {
                        Ok(t) => return Ok(t),
                        Err(e) => why.push(e),
                    }
                }
                Err(why.join("; "))
            }
        })
        .as_ref()
        .map_err(String::as_str)
}

fn load(name: &str) -> Result<Turbo, String> {
    let fail = |e: libloading::Error| format!("cannot load {name}: {e}");
    // SAFETY: loading runs the library's initialisers; libjpeg-turbo's have no side effects
    // beyond its own state. The symbols' types are those of turbojpeg.h, and the library
    // is kept alive in the same struct as the copied function pointers.
    unsafe {
        let library = libloading::Library::new(name).map_err(fail)?;
        let turbo = Turbo {
            init: *library.get(b"tjInitDecompress\0").map_err(fail)?,
            header: *library.get(b"tjDecompressHeader3\0").map_err(fail)?,
            decompress: *library.get(b"tjDecompress2\0").map_err(fail)?,
            error_str: *library.get(b"tjGetErrorStr2\0").map_err(fail)?,
            error_code: *library.get(b"tjGetErrorCode\0").map_err(fail)?,
            destroy: *library.get(b"tjDestroy\0").map_err(fail)?,
            path: name.to_string(),
            _library: library,
        };
        Ok(turbo)
    }
}

/// A thread's TurboJPEG decompressor, made at its first JPEG (a handle holds libjpeg's
/// decompression state and buffers; one per thread, as the API requires).
#[derive(Default)]
pub struct Decoder {
    handle: Option<(&'static Turbo, Handle)>,
}

impl Drop for Decoder {
    fn drop(&mut self) {
        if let Some((turbo, handle)) = self.handle.take() {
            // SAFETY: the handle came from this library's tjInitDecompress and is freed once
            unsafe { (turbo.destroy)(handle) };
        }
    }
}

impl Decoder {
    /// Decode `bytes` into `pixels` (interleaved uint8 [H, W, C]): Ok(Some((C, H, W))),
    /// Ok(None) where the chosen decoder does not take this file (CMYK or alpha colour
    /// spaces, a size over `MAX_IMAGE_BYTES`: the generic path decodes or words those), or
    /// the decoder's reason the file cannot be decoded.
    pub fn decode_into(
        &mut self,
        choice: Choice,
        bytes: &[u8],
        pixels: &mut Vec<u8>,
    ) -> Result<Option<(usize, usize, usize)>, String> {
        match (choice, turbo()) {
            (Choice::Zune, _) | (Choice::Auto, Err(_)) => Ok(decode_zune(bytes, pixels)),
            (_, Ok(turbo)) => self.decode_turbo(turbo, bytes, pixels),
            (Choice::LibjpegTurbo, Err(why)) => Err(why.to_string()), // refused by `parse`
        }
    }

    fn decode_turbo(
        &mut self,
        turbo: &'static Turbo,
        bytes: &[u8],
        pixels: &mut Vec<u8>,
    ) -> Result<Option<(usize, usize, usize)>, String> {
        let Ok(len) = c_ulong::try_from(bytes.len()) else {
            return Ok(None);
        };
        let handle = match self.handle {
            Some((_, h)) => h,
            None => {
                // SAFETY: no arguments; a null return is handled
                let h = unsafe { (turbo.init)() };
                if h.is_null() {
                    return Err("libjpeg-turbo could not make a decompressor".into());
                }
                self.handle = Some((turbo, h));
                h
            }
        };
        let error = || {
            // SAFETY: the handle is live; the message is a NUL-terminated string the
            // handle owns, copied before the next call
            unsafe { CStr::from_ptr((turbo.error_str)(handle)) }
                .to_string_lossy()
                .into_owned()
        };
        let (mut w, mut h, mut subsampling, mut colours) = (0, 0, 0, 0);
        // SAFETY: `bytes` is valid for `len` bytes; the out-pointers are live locals
        let status = unsafe {
            (turbo.header)(
                handle,
                bytes.as_ptr(),
                len,
                &mut w,
                &mut h,
                &mut subsampling,
                &mut colours,
            )
        };
        if status != 0 {
            return Err(error());
        }
        // a header that ends before its frame (tables only) reads as 0×0
        let (Ok(wu @ 1..), Ok(hu @ 1..)) = (usize::try_from(w), usize::try_from(h)) else {
            return Err(format!("no image in the file (its header gives {w}×{h})"));
        };
        let (c, format) = match colours {
            TJCS_GRAY => (1, TJPF_GRAY),
            TJCS_YCBCR | TJCS_RGB => (3, TJPF_RGB),
            _ => return Ok(None), // CMYK, YCCK: zune converts them as `image` does
        };
        let size = hu * wu * c;
        if size > MAX_IMAGE_BYTES {
            return Ok(None);
        }
        // not zeroed: tjDecompress2 writes every row unless it fails outright, and a
        // failure returns an error, so no earlier image's pixels can show through
        pixels.resize(size, 0);
        // SAFETY: `pixels` holds h rows of w·c bytes, exactly what a pitch of 0 (tightly
        // packed rows) at this size and pixel format writes
        let status = unsafe {
            (turbo.decompress)(
                handle,
                bytes.as_ptr(),
                len,
                pixels.as_mut_ptr(),
                w,
                0,
                h,
                format,
                TJFLAG_LIMITSCANS,
            )
        };
        // a warning (premature end of data, extraneous bytes) still decodes every row, as
        // PIL with LOAD_TRUNCATED_IMAGES and zune-jpeg's lenient mode do
        // SAFETY: the handle is live
        if status != 0 && unsafe { (turbo.error_code)(handle) } != TJERR_WARNING {
            return Err(error());
        }
        Ok(Some((c, hu, wu)))
    }
}

/// zune-jpeg with the options `image` gives it, into a reused buffer. None where the generic
/// path should run instead (alpha colour spaces, a decode error: that path words it).
pub fn decode_zune(bytes: &[u8], pixels: &mut Vec<u8>) -> Option<(usize, usize, usize)> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::resize::tests::noise;

    /// A smooth image with noise at quality 90: JPEG keeps detail, so chroma and blocks
    /// matter. `c` = 3 (RGB) or 1 (grey).
    fn encoded(w: u32, h: u32, c: usize) -> Vec<u8> {
        let raw: Vec<u8> = noise((w * h) as usize * c, 7)
            .iter()
            .enumerate()
            .map(|(i, &v)| (v / 4).wrapping_add(((i / c % w as usize) as u8).wrapping_mul(5)))
            .collect();
        let colour = if c == 3 {
            image::ExtendedColorType::Rgb8
        } else {
            image::ExtendedColorType::L8
        };
        let mut jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 90)
            .encode(&raw, w, h, colour)
            .unwrap();
        jpeg
    }

    /// libjpeg-turbo where it loads; CI sets QGFAST_REQUIRE_TURBOJPEG so its tests cannot
    /// pass there by skipping.
    fn loaded() -> bool {
        let ok = turbo().is_ok();
        if !ok && std::env::var_os("QGFAST_REQUIRE_TURBOJPEG").is_some() {
            panic!("libjpeg-turbo is required here: {}", describe());
        }
        ok
    }

    #[test]
    fn zune_equals_the_image_crate() {
        for c in [3, 1] {
            let jpeg = encoded(37, 29, c);
            let mut fast = Vec::new();
            let dims = decode_zune(&jpeg, &mut fast).expect("fast path");
            assert_eq!(dims, (c, 29, 37));
            let generic = image::load_from_memory(&jpeg).unwrap();
            let want = if c == 3 {
                generic.to_rgb8().into_raw()
            } else {
                generic.to_luma8().into_raw()
            };
            assert_eq!(fast, want);
        }
    }

    #[test]
    fn libjpeg_turbo_is_within_a_few_levels_of_zune() {
        if !loaded() {
            return;
        }
        let mut decoder = Decoder::default();
        for c in [3, 1] {
            let jpeg = encoded(37, 29, c);
            let mut turbo = vec![0xAB; 5]; // stale, shorter: resized and overwritten
            let dims = decoder.decode_into(Choice::LibjpegTurbo, &jpeg, &mut turbo);
            assert_eq!(dims, Ok(Some((c, 29, 37))));
            let mut zune = Vec::new();
            decode_zune(&jpeg, &mut zune).unwrap();
            assert_eq!(turbo.len(), zune.len());
            let worst = turbo.iter().zip(&zune).map(|(a, b)| a.abs_diff(*b)).max();
            assert!(worst <= Some(4), "c = {c}: {worst:?}");
            // the same handle decodes again, to the same pixels
            let mut again = Vec::new();
            decoder
                .decode_into(Choice::Auto, &jpeg, &mut again)
                .unwrap();
            assert_eq!(again, turbo);
        }
    }

    #[test]
    fn libjpeg_turbo_refuses_garbage_and_decodes_every_row_of_a_truncated_file() {
        if !loaded() {
            return;
        }
        let mut decoder = Decoder::default();
        let mut pixels = Vec::new();
        let garbage = b"\xff\xd8\xff\xe0 not really a jpeg".to_vec();
        let err = decoder.decode_into(Choice::LibjpegTurbo, &garbage, &mut pixels);
        assert!(err.is_err(), "{err:?}");
        let jpeg = encoded(64, 48, 3);
        let truncated = &jpeg[..jpeg.len() * 2 / 3];
        let mut pixels = vec![0xAB; 64 * 48 * 3];
        // the last rows have no data: libjpeg fills them (its warning is not an error)
        let dims = decoder.decode_into(Choice::LibjpegTurbo, truncated, &mut pixels);
        assert_eq!(dims, Ok(Some((3, 48, 64))));
        let mut full = Vec::new();
        decoder
            .decode_into(Choice::LibjpegTurbo, &jpeg, &mut full)
            .unwrap();
        assert_eq!(pixels[..64 * 3 * 8], full[..64 * 3 * 8]); // the first block row is intact
        assert!(pixels[pixels.len() - 64 * 3..].iter().all(|&v| v != 0xAB));
    }

    #[test]
    fn choice_names_are_checked() {
        assert_eq!(Choice::parse("zune"), Ok(Choice::Zune));
        assert_eq!(Choice::parse("auto"), Ok(Choice::Auto));
        let err = Choice::parse("pil").unwrap_err();
        assert!(err.to_string().contains("libjpeg-turbo"), "{err}");
        assert_eq!(Choice::parse("libjpeg-turbo").is_ok(), turbo().is_ok());
    }

    // `fuzz_` like the header fuzzers: PROPTEST_CASES sets the count of the long run
    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Bytes of a real JPEG edited and cut anywhere: each decoder returns pixels, a
            /// pass to the generic path or an error, never a panic or a crash, and pixels
            /// only of the size the dimensions give.
            #[test]
            fn fuzz_mutated_jpegs(
                grey in any::<bool>(),
                edits in proptest::collection::vec((0usize..4000, any::<u8>()), 1..16),
                cut in 0usize..4000,
            ) {
                let mut bytes = encoded(40, 24, if grey { 1 } else { 3 });
                let n = bytes.len();
                for (at, v) in edits {
                    bytes[at % n] = v;
                }
                bytes.truncate(cut.max(3));
                let mut decoder = Decoder::default();
                for choice in [Choice::Auto, Choice::Zune] {
                    let mut pixels = Vec::new();
                    if let Ok(Some((c, h, w))) = decoder.decode_into(choice, &bytes, &mut pixels) {
                        prop_assert_eq!(pixels.len(), c * h * w);
                    }
                }
            }
        }
    }
}
