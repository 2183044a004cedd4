//! NIfTI-1 / NIfTI-2 single-file reader (`.nii` read in one positioned read, `.nii.gz` inflated by
//! libdeflate in one call, or streamed through zlib-rs when the gzip trailer does not
//! match the header), returning the voxels exactly as nibabel's `np.asanyarray(img.dataobj)` holds
//! them: the on-disk type when the header does not scale, float64 `raw * slope + inter`
//! when it does (nibabel's rule: scaling is skipped for a zero or non-finite slope, and for
//! slope 1 / intercept 0).
//!
//! Every size the header claims is checked before memory is committed: the voxel count
//! must not overflow, must fit the caller's byte cap, and an uncompressed file must hold
//! `vox_offset + nbytes` bytes. A `.nii.gz` is inflated in one go only when its gzip
//! trailer agrees with the header's size; otherwise it is streamed and the buffer grows only
//! as data really arrive, so a lying header in a small file cannot make us commit gigabytes.
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use flate2::read::MultiGzDecoder;

use super::buffer::Spares;
use crate::errors::{data, Error};

const NIFTI1_SIZE: usize = 348;
const NIFTI2_SIZE: usize = 540;

/// Voxel types nibabel reads for NIfTI that we support (complex, RGB and float128 are refused).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    U8,
    I8,
    I16,
    U16,
    I32,
    U32,
    I64,
    U64,
    F32,
    F64,
}

impl DType {
    fn from_code(code: i32) -> Result<DType, String> {
        Ok(match code {
            2 => DType::U8,
            256 => DType::I8,
            4 => DType::I16,
            512 => DType::U16,
            8 => DType::I32,
            768 => DType::U32,
            1024 => DType::I64,
            1280 => DType::U64,
            16 => DType::F32,
            64 => DType::F64,
            32 | 1792 | 2048 => return Err(format!("complex datatype {code} is not supported")),
            128 | 2304 => return Err(format!("RGB datatype {code} is not supported")),
            1536 => return Err("float128 datatype 1536 is not supported".into()),
            1 => return Err("1-bit (binary) datatype is not supported".into()),
            other => return Err(format!("unknown datatype code {other}")),
        })
    }

    pub fn size(self) -> usize {
        match self {
            DType::U8 | DType::I8 => 1,
            DType::I16 | DType::U16 => 2,
            DType::I32 | DType::U32 | DType::F32 => 4,
            DType::I64 | DType::U64 | DType::F64 => 8,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            DType::U8 => "uint8",
            DType::I8 => "int8",
            DType::I16 => "int16",
            DType::U16 => "uint16",
            DType::I32 => "int32",
            DType::U32 => "uint32",
            DType::I64 => "int64",
            DType::U64 => "uint64",
            DType::F32 => "float32",
            DType::F64 => "float64",
        }
    }
}

/// A voxel type as stored on disk.
pub trait Voxel: bytemuck::Pod + PartialEq {
    fn to_f64(self) -> f64;
}

macro_rules! voxel {
    ($($t:ty),*) => { $(impl Voxel for $t { #[inline] fn to_f64(self) -> f64 { self as f64 } })* };
}
voxel!(u8, i8, i16, u16, i32, u32, i64, u64, f32, f64);

/// Run `$body` with `$T` bound to the Rust type of a `DType`.
macro_rules! with_voxel_type {
    ($dtype:expr, $T:ident, $body:expr) => {
        $crate::io::nifti::with_voxel_type!(@arms $dtype, $T, $body;
            U8 u8, I8 i8, I16 i16, U16 u16, I32 i32, U32 u32, I64 i64, U64 u64, F32 f32, F64 f64)
    };
    (@arms $dtype:expr, $T:ident, $body:expr; $($variant:ident $t:ty),*) => {
        match $dtype {
            $($crate::io::nifti::DType::$variant => {
                type $T = $t;
                $body
            })*
        }
    };
}
pub(crate) use with_voxel_type;

/// nibabel's scaling of one value: `x · slope + inter`, multiplying only when the slope is
/// not 1 and adding only when the intercept is not 0 (None: unscaled).
#[inline]
pub fn apply_scaling(x: f64, scaling: Option<(f64, f64)>) -> f64 {
    let mut x = x;
    if let Some((slope, inter)) = scaling {
        if slope != 1.0 {
            x *= slope;
        }
        if inter != 0.0 {
            x += inter;
        }
    }
    x
}

/// The header fields a reader needs (both versions widened to the NIfTI-2 types).
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    pub version: u8,
    pub big_endian: bool,
    pub shape: Vec<usize>,
    pub dtype: DType,
    pub vox_offset: u64,
    pub pixdim: [f64; 8],
    pub scl_slope: f64,
    pub scl_inter: f64,
    pub qform_code: i32,
    pub sform_code: i32,
    pub quatern: [f64; 3],
    pub qoffset: [f64; 3],
    pub srow: [[f64; 4]; 3],
    pub xyzt_units: i32,
    pub intent_code: i32,
    pub descrip: String,
}

impl Header {
    pub fn n_voxels(&self) -> Option<usize> {
        self.shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
    }

    pub fn n_bytes(&self) -> Option<usize> {
        self.n_voxels()?.checked_mul(self.dtype.size())
    }

    /// nibabel's scaling: None when the data are returned unscaled.
    pub fn scaling(&self) -> Result<Option<(f64, f64)>, String> {
        let (slope, inter) = (self.scl_slope, self.scl_inter);
        if slope == 0.0 || !slope.is_finite() {
            return Ok(None);
        }
        if !inter.is_finite() {
            return Err(format!("valid slope {slope} but invalid intercept {inter}"));
        }
        if slope == 1.0 && inter == 0.0 {
            return Ok(None);
        }
        Ok(Some((slope, inter)))
    }
}

struct Fields<'a> {
    bytes: &'a [u8],
    big: bool,
}

impl Fields<'_> {
    fn raw<const N: usize>(&self, at: usize) -> [u8; N] {
        let mut out = [0u8; N];
        out.copy_from_slice(&self.bytes[at..at + N]);
        if self.big {
            out.reverse();
        }
        out
    }
    fn i16(&self, at: usize) -> i16 {
        i16::from_le_bytes(self.raw(at))
    }
    fn i32(&self, at: usize) -> i32 {
        i32::from_le_bytes(self.raw(at))
    }
    fn i64(&self, at: usize) -> i64 {
        i64::from_le_bytes(self.raw(at))
    }
    fn f32(&self, at: usize) -> f64 {
        f32::from_le_bytes(self.raw(at)) as f64
    }
    fn f64(&self, at: usize) -> f64 {
        f64::from_le_bytes(self.raw(at))
    }
}

/// Which header version the first 4 bytes announce, and its byte order.
pub fn sniff(first4: &[u8]) -> Result<(usize, bool), String> {
    let le = i32::from_le_bytes([first4[0], first4[1], first4[2], first4[3]]);
    let be = i32::from_be_bytes([first4[0], first4[1], first4[2], first4[3]]);
    match (le, be) {
        (348, _) => Ok((NIFTI1_SIZE, false)),
        (_, 348) => Ok((NIFTI1_SIZE, true)),
        (540, _) => Ok((NIFTI2_SIZE, false)),
        (_, 540) => Ok((NIFTI2_SIZE, true)),
        _ => Err(format!(
            "not a NIfTI file: sizeof_hdr is {le} (expected 348 or 540)"
        )),
    }
}

fn text(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// Parse a complete header block (348 or 540 bytes).
pub fn parse_header(bytes: &[u8]) -> Result<Header, String> {
    if bytes.len() < 4 {
        return Err("file too short for a NIfTI header".into());
    }
    let (size, big) = sniff(&bytes[..4])?;
    if bytes.len() < size {
        return Err(format!("header truncated: {} of {size} bytes", bytes.len()));
    }
    let f = Fields { bytes, big };
    let v2 = size == NIFTI2_SIZE;
    let magic = if v2 { &bytes[4..8] } else { &bytes[344..348] };
    let ok_magic = if v2 {
        magic == b"n+2\0"
    } else {
        magic == b"n+1\0"
    };
    if !ok_magic {
        let pair = if v2 {
            magic == b"ni2\0"
        } else {
            magic == b"ni1\0"
        };
        return Err(if pair {
            "header/image pairs (.hdr/.img) are not supported: convert to .nii".into()
        } else {
            format!("bad NIfTI magic {:?}", String::from_utf8_lossy(magic))
        });
    }
    let dim: Vec<i64> = (0..8)
        .map(|i| {
            if v2 {
                f.i64(16 + 8 * i)
            } else {
                f.i16(40 + 2 * i) as i64
            }
        })
        .collect();
    if !(1..=7).contains(&dim[0]) {
        return Err(format!("dim[0] = {} is not in 1..7", dim[0]));
    }
    let ndim = dim[0] as usize;
    let mut shape = Vec::with_capacity(ndim);
    for (axis, &d) in dim[1..=ndim].iter().enumerate() {
        if d < 0 {
            return Err(format!("dim[{}] = {d} is negative", axis + 1));
        }
        shape.push(usize::try_from(d).map_err(|_| format!("dim[{}] = {d} too large", axis + 1))?);
    }
    let code = if v2 {
        f.i16(12) as i32
    } else {
        f.i16(70) as i32
    };
    let dtype = DType::from_code(code)?;
    let mut pixdim = [0f64; 8];
    for (i, p) in pixdim.iter_mut().enumerate() {
        *p = if v2 {
            f.f64(104 + 8 * i)
        } else {
            f.f32(76 + 4 * i)
        };
    }
    let vox_offset = if v2 { f.i64(168) as f64 } else { f.f32(108) };
    if !vox_offset.is_finite() || !(0.0..=1e15).contains(&vox_offset) {
        return Err(format!("vox_offset {vox_offset} is invalid"));
    }
    let mut srow = [[0f64; 4]; 3];
    for (r, row) in srow.iter_mut().enumerate() {
        for (c, v) in row.iter_mut().enumerate() {
            *v = if v2 {
                f.f64(400 + 32 * r + 8 * c)
            } else {
                f.f32(280 + 16 * r + 4 * c)
            };
        }
    }
    let (q, o) = if v2 { (352, 376) } else { (256, 268) };
    let (step, read): (usize, &dyn Fn(usize) -> f64) = if v2 {
        (8, &|at| f.f64(at))
    } else {
        (4, &|at| f.f32(at))
    };
    Ok(Header {
        version: if v2 { 2 } else { 1 },
        big_endian: big,
        shape,
        dtype,
        vox_offset: vox_offset as u64,
        pixdim,
        scl_slope: if v2 { f.f64(176) } else { f.f32(112) },
        scl_inter: if v2 { f.f64(184) } else { f.f32(116) },
        qform_code: if v2 { f.i32(344) } else { f.i16(252) as i32 },
        sform_code: if v2 { f.i32(348) } else { f.i16(254) as i32 },
        quatern: [read(q), read(q + step), read(q + 2 * step)],
        qoffset: [read(o), read(o + step), read(o + 2 * step)],
        srow,
        xyzt_units: if v2 { f.i32(500) } else { bytes[123] as i32 },
        intent_code: if v2 { f.i32(504) } else { f.i16(68) as i32 },
        descrip: text(if v2 {
            &bytes[240..320]
        } else {
            &bytes[148..228]
        }),
    })
}

/// Voxel bytes in native byte order, plus the header. The bytes live in 8-byte words
/// (`bytes()[start..start + len]`), so any voxel type can view them in place: Python gets
/// the words and views them as the voxel dtype without a copy.
pub struct Volume {
    pub header: Header,
    pub words: Vec<u64>,
    pub start: usize,
    pub len: usize,
}

impl Volume {
    pub fn voxels(&self) -> &[u8] {
        &bytemuck::cast_slice::<u64, u8>(&self.words)[self.start..self.start + self.len]
    }

    /// Voxels at a byte offset the voxel type divides (NIfTI offsets are multiples of 16;
    /// an odd one is moved to the front once).
    fn aligned(mut self) -> Volume {
        if !self.start.is_multiple_of(self.header.dtype.size()) {
            let (start, len) = (self.start, self.len);
            bytemuck::cast_slice_mut::<u64, u8>(&mut self.words).copy_within(start..start + len, 0);
            self.start = 0;
        }
        self
    }
}

impl Volume {
    /// Every voxel as float64, scaled the way nibabel scales it.
    pub fn scaled_values(&self, scaling: (f64, f64)) -> Vec<f64> {
        // voxels start at an offset the type divides (`Volume::aligned`), so the cast holds
        with_voxel_type!(self.header.dtype, T, {
            bytemuck::cast_slice::<u8, T>(self.voxels())
                .iter()
                .map(|&v| apply_scaling(v.to_f64(), Some(scaling)))
                .collect()
        })
    }
}

/// Zeroed 8-byte words holding at least `nbytes` bytes (pages, huge where possible, appear on write).
fn words_for(nbytes: usize) -> Vec<u64> {
    super::buffer::zeroed(nbytes.div_ceil(8))
}

pub fn is_gzip(path: &Path) -> Result<bool, Error> {
    let mut magic = [0u8; 2];
    let mut file = open(path)?;
    let n = file
        .read(&mut magic)
        .map_err(|e| data(path, format!("cannot read: {e}")))?;
    Ok(n == 2 && magic == [0x1f, 0x8b])
}

fn open(path: &Path) -> Result<File, Error> {
    File::open(path).map_err(|e| data(path, format!("cannot open: {e}")))
}

fn check_size(path: &Path, header: &Header, max_bytes: usize) -> Result<usize, Error> {
    let nbytes = header.n_bytes().ok_or_else(|| {
        data(
            path,
            format!("dims {:?} overflow the address space", header.shape),
        )
    })?;
    if nbytes > max_bytes {
        return Err(data(
            path,
            format!(
                "header claims {nbytes} bytes of voxels ({:?} {}), over the {max_bytes}-byte cap",
                header.shape,
                header.dtype.name()
            ),
        ));
    }
    Ok(nbytes)
}

/// Read the header only (for `.nii.gz` this decodes just the first 540 bytes).
pub fn read_header(path: &Path) -> Result<Header, Error> {
    let mut block = vec![0u8; NIFTI2_SIZE];
    let n = if is_gzip(path)? {
        read_up_to(
            &mut MultiGzDecoder::new(BufReader::new(open(path)?)),
            &mut block,
        )
    } else {
        read_up_to(&mut open(path)?, &mut block)
    }
    .map_err(|e| data(path, format!("cannot read header: {e}")))?;
    parse_header(&block[..n]).map_err(|r| data(path, r))
}

fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Read a whole single-file NIfTI volume; voxel bytes come back in native byte order.
pub fn read(path: &Path, max_bytes: usize) -> Result<Volume, Error> {
    read_using(path, max_bytes, None)
}

/// `read`, taking its large buffers from `spares` where one fits (a stream's finished
/// volumes; `Volume::words` may then be longer than the voxels need) and giving the
/// compressed bytes back when inflated.
pub fn read_using(path: &Path, max_bytes: usize, spares: Option<&Spares>) -> Result<Volume, Error> {
    if is_gzip(path)? {
        read_gz(path, max_bytes, spares)
    } else {
        read_plain(path, max_bytes, spares)
    }
}

fn read_plain(path: &Path, max_bytes: usize, spares: Option<&Spares>) -> Result<Volume, Error> {
    let (file, header, start, nbytes) = open_plain(path, max_bytes)?;
    // a positioned read straight into a fresh buffer: the kernel copies from the page
    // cache once, where a memory map would fault every page in and copy it again
    let words = super::buffer::read_words_at(&file, start, nbytes, spares)
        .map_err(|e| data(path, format!("cannot read the voxels: {e}")))?;
    Ok(native_volume(header, words, nbytes))
}

/// An uncompressed file's open handle, header, voxel offset and voxel byte count, checked
/// against the file size and the cap before any voxel is read (`read_plain` reads them
/// whole; a volume opened by its statistics reads a crop's bytes: `volume::FileChannel`).
pub fn open_plain(path: &Path, max_bytes: usize) -> Result<(File, Header, u64, usize), Error> {
    let file = open(path)?;
    let len = file
        .metadata()
        .map_err(|e| data(path, format!("cannot stat: {e}")))?
        .len();
    let mut block = vec![0u8; NIFTI2_SIZE];
    let n =
        read_up_to(&mut &file, &mut block).map_err(|e| data(path, format!("cannot read: {e}")))?;
    let (header, start, nbytes) = plain_layout(&block[..n], len, path, max_bytes)?;
    Ok((file, header, start, nbytes))
}

/// A volume whose `words` hold its `nbytes` voxel bytes from the start, in file byte order.
fn native_volume(header: Header, mut words: Vec<u64>, nbytes: usize) -> Volume {
    to_native(
        &header,
        &mut bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..nbytes],
    );
    Volume {
        header,
        words,
        start: 0,
        len: nbytes,
    }
}

/// Header, voxel offset and voxel byte count of an uncompressed file of `len` bytes whose
/// first bytes are `head`, checked against the file size and the cap before any allocation.
fn plain_layout(
    head: &[u8],
    len: u64,
    path: &Path,
    max_bytes: usize,
) -> Result<(Header, u64, usize), Error> {
    let header = parse_header(head).map_err(|r| data(path, r))?;
    let nbytes = check_size(path, &header, max_bytes)?;
    let start = data_offset(&header);
    start
        .checked_add(nbytes as u64)
        .filter(|&e| e <= len)
        .ok_or_else(|| {
            data(
                path,
                format!(
                    "file is {len} bytes but the header implies {} (offset {start} + {nbytes} \
                 bytes of voxels): truncated file or corrupt header",
                    start as u128 + nbytes as u128
                ),
            )
        })?;
    Ok((header, start, nbytes))
}

/// Uncompressed `.nii` bytes already in memory (`path` only names them in errors): the
/// fuzz tests' entry to the parser.
#[cfg(test)]
fn read_plain_bytes(file: &[u8], path: &Path, max_bytes: usize) -> Result<Volume, Error> {
    let head = &file[..file.len().min(NIFTI2_SIZE)];
    let (header, start, nbytes) = plain_layout(head, file.len() as u64, path, max_bytes)?;
    Ok(volume_from_bytes(
        header,
        &file[start as usize..start as usize + nbytes],
    ))
}

/// A volume holding a copy of `bytes` (its voxels, in file byte order).
fn volume_from_bytes(header: Header, bytes: &[u8]) -> Volume {
    let mut words = words_for(bytes.len());
    bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..bytes.len()].copy_from_slice(bytes);
    native_volume(header, words, bytes.len())
}

/// nibabel treats a single-file offset below the header + extension flag as the minimum.
fn data_offset(header: &Header) -> u64 {
    let minimum = if header.version == 2 { 544 } else { 352 };
    header.vox_offset.max(minimum)
}

fn read_gz(path: &Path, max_bytes: usize, spares: Option<&Spares>) -> Result<Volume, Error> {
    use std::io::Seek;
    let file = open(path)?;
    let cannot = |e: std::io::Error| data(path, format!("cannot read: {e}"));
    let len = file.metadata().map_err(cannot)?.len();
    // the header is checked first (its bytes streamed from the file), so an absurd claim
    // is refused before the file is read whole
    let (header, nbytes) = gz_header(BufReader::new(&file), path, max_bytes)?;
    (&file).rewind().map_err(cannot)?; // the header read moved the cursor
    let len = match usize::try_from(len) {
        Ok(len) if len <= max_bytes => len,
        // a file larger than the cap (trailing data, padding) is never held whole: streamed,
        // only what the header asks for is inflated
        _ => {
            let reader = MultiGzDecoder::new(BufReader::new(file));
            return stream_voxels(reader, header, nbytes, path, max_bytes);
        }
    };
    // otherwise read whole: its size is known, and libdeflate wants one slice. Without
    // spares a plain read (a positioned read into a fresh huge-page buffer measured ~3 %
    // slower a BraTS case); with them, into a kept buffer
    let Some(spares) = spares else {
        let mut compressed = Vec::with_capacity(len);
        (&file).read_to_end(&mut compressed).map_err(cannot)?;
        return inflate_volume(&compressed, header, nbytes, path, None);
    };
    let words = super::buffer::read_words_at(&file, 0, len, Some(spares)).map_err(cannot)?;
    let compressed = &bytemuck::cast_slice::<u64, u8>(&words)[..len];
    let volume = inflate_volume(compressed, header, nbytes, path, Some(spares));
    spares.give(words);
    volume
}

/// `.nii.gz` bytes already in memory (`path` only names them in errors): the fuzz tests'
/// entry to the gzip path.
#[cfg(test)]
fn read_gz_bytes(compressed: &[u8], path: &Path, max_bytes: usize) -> Result<Volume, Error> {
    let (header, nbytes) = gz_header(compressed, path, max_bytes)?;
    inflate_volume(compressed, header, nbytes, path, None)
}

fn gz_error(path: &Path, e: std::io::Error) -> Error {
    data(path, format!("gzip stream is corrupt or truncated: {e}"))
}

/// The header at the start of gzip-compressed `reader` and its voxel byte count, checked
/// against the cap.
fn gz_header(reader: impl Read, path: &Path, max_bytes: usize) -> Result<(Header, usize), Error> {
    // the largest header (NIfTI-2); parse_header uses what the version needs, and the
    // voxels are read afresh later, so over-reading into them is harmless
    let mut block = vec![0u8; NIFTI2_SIZE];
    let n =
        read_up_to(&mut MultiGzDecoder::new(reader), &mut block).map_err(|e| gz_error(path, e))?;
    let header = parse_header(&block[..n]).map_err(|r| data(path, r))?;
    let nbytes = check_size(path, &header, max_bytes)?;
    Ok((header, nbytes))
}

/// The voxels of the whole compressed file (`header` and its `nbytes` from `gz_header`).
fn inflate_volume(
    compressed: &[u8],
    header: Header,
    nbytes: usize,
    path: &Path,
    spares: Option<&Spares>,
) -> Result<Volume, Error> {
    let offset = data_offset(&header);
    let total = offset + nbytes as u64;
    if let Some(mut words) = inflate_whole(compressed, total, spares) {
        let bytes = bytemuck::cast_slice_mut::<u64, u8>(&mut words);
        to_native(&header, &mut bytes[offset as usize..total as usize]);
        return Ok(Volume {
            header,
            words,
            start: offset as usize,
            len: nbytes,
        }
        .aligned());
    }
    // multi-member gzip, trailing bytes or a trailer that disagrees with the header
    let hint = compressed.len().saturating_mul(4);
    stream_voxels(MultiGzDecoder::new(compressed), header, nbytes, path, hint)
}

/// The `nbytes` voxels of `header` from a decompressing reader positioned at the file's
/// start: exactly what the header asks for, the buffer growing only as data really arrive
/// (from at most `hint` bytes reserved).
fn stream_voxels(
    mut stream: impl Read,
    header: Header,
    nbytes: usize,
    path: &Path,
    hint: usize,
) -> Result<Volume, Error> {
    let offset = data_offset(&header);
    let skipped = std::io::copy(&mut (&mut stream).take(offset), &mut std::io::sink())
        .map_err(|e| gz_error(path, e))?;
    let mut bytes = Vec::with_capacity(nbytes.min(hint.max(1 << 16)));
    (&mut stream)
        .take(nbytes as u64)
        .read_to_end(&mut bytes)
        .map_err(|e| gz_error(path, e))?;
    if skipped < offset || bytes.len() < nbytes {
        return Err(data(
            path,
            format!(
                "decompressed data end after {} voxel bytes; the header implies {nbytes}: \
                 truncated file or corrupt header",
                bytes.len()
            ),
        ));
    }
    Ok(volume_from_bytes(header, &bytes))
}

/// One libdeflate call when the gzip trailer's size (ISIZE, the last member's length mod
/// 2^32) says the stream holds exactly header + voxels (what every NIfTI writer produces).
/// None otherwise, or when libdeflate does not produce exactly that many bytes.
fn inflate_whole(compressed: &[u8], total: u64, spares: Option<&Spares>) -> Option<Vec<u64>> {
    let trailer: [u8; 4] = compressed
        .get(compressed.len().checked_sub(4)?..)?
        .try_into()
        .ok()?;
    if u64::from(u32::from_le_bytes(trailer)) != total % (1 << 32) {
        return None;
    }
    let total = usize::try_from(total).ok()?;
    let mut words = match spares {
        Some(spares) => spares.take(total.div_ceil(8)),
        None => words_for(total),
    };
    let out = &mut bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..total];
    let mut inflater = libdeflater::Decompressor::new();
    match inflater.gzip_decompress(compressed, out) {
        Ok(n) if n == total => Some(words),
        _ => None,
    }
}

pub fn to_native(header: &Header, bytes: &mut [u8]) {
    let size = header.dtype.size();
    if header.big_endian != cfg!(target_endian = "big") && size > 1 {
        for chunk in bytes.chunks_exact_mut(size) {
            chunk.reverse();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn nifti1(shape: &[i16], code: i16, big: bool) -> Vec<u8> {
        let mut h = vec![0u8; 352];
        let put16 = |h: &mut Vec<u8>, at: usize, v: i16| {
            let b = if big {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            };
            h[at..at + 2].copy_from_slice(&b);
        };
        let put32 = |h: &mut Vec<u8>, at: usize, v: [u8; 4]| {
            let mut b = v;
            if big {
                b.reverse();
            }
            h[at..at + 4].copy_from_slice(&b);
        };
        put32(&mut h, 0, 348i32.to_le_bytes());
        put16(&mut h, 40, shape.len() as i16);
        for (i, &d) in shape.iter().enumerate() {
            put16(&mut h, 42 + 2 * i, d);
        }
        put16(&mut h, 70, code);
        put32(&mut h, 108, 352f32.to_le_bytes());
        put32(&mut h, 112, 1f32.to_le_bytes());
        h[344..348].copy_from_slice(b"n+1\0");
        h
    }

    #[test]
    fn parses_both_byte_orders() {
        for big in [false, true] {
            let h = parse_header(&nifti1(&[3, 4, 5], 4, big)).unwrap();
            assert_eq!(h.shape, vec![3, 4, 5]);
            assert_eq!(h.dtype, DType::I16);
            assert_eq!(h.big_endian, big);
            assert_eq!(h.n_bytes(), Some(120));
            assert_eq!(h.scaling(), Ok(None));
        }
    }

    #[test]
    fn refuses_bad_fields() {
        let mut bad = nifti1(&[3, 4, 5], 4, false);
        bad[344] = b'x';
        assert!(parse_header(&bad).unwrap_err().contains("magic"));
        assert!(parse_header(&nifti1(&[3], 32, false))
            .unwrap_err()
            .contains("complex"));
        assert!(parse_header(&nifti1(&[3], 128, false))
            .unwrap_err()
            .contains("RGB"));
        assert!(parse_header(&nifti1(&[3, -1], 2, false))
            .unwrap_err()
            .contains("negative"));
        assert!(parse_header(&[1, 2, 3]).unwrap_err().contains("too short"));
        assert!(parse_header(&[0; 400]).unwrap_err().contains("not a NIfTI"));
    }

    #[test]
    fn size_overflow_is_detected() {
        let h = parse_header(&nifti1(&[32767; 7], 64, false)).unwrap();
        assert_eq!(h.n_bytes(), None);
    }

    #[test]
    fn slope_rules_follow_nibabel() {
        let mut h = parse_header(&nifti1(&[2], 4, false)).unwrap();
        for (slope, inter, want) in [
            (0.0, 5.0, Ok(None)),
            (f64::NAN, 5.0, Ok(None)),
            (1.0, 0.0, Ok(None)),
            (2.0, 0.0, Ok(Some((2.0, 0.0)))),
            (1.0, 3.0, Ok(Some((1.0, 3.0)))),
        ] {
            h.scl_slope = slope;
            h.scl_inter = inter;
            assert_eq!(h.scaling(), want);
        }
        h.scl_slope = 2.0;
        h.scl_inter = f64::INFINITY;
        assert!(h.scaling().is_err());
    }

    // Property tests: no input makes the parser or the decoders panic. CI runs the default
    // case count; `PROPTEST_CASES=1000000 cargo test --release fuzz_` is the long run.
    mod fuzz {
        use super::*;
        use proptest::prelude::*;
        use std::io::Write;

        fn gzip(bytes: &[u8]) -> Vec<u8> {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(bytes).unwrap();
            enc.finish().unwrap()
        }

        fn valid_file(shape: &[i16], code: i16, big: bool) -> Vec<u8> {
            let mut file = nifti1(shape, code, big);
            let h = parse_header(&file).unwrap();
            file.resize(352 + h.n_bytes().unwrap(), 7);
            file
        }

        fn both_paths(bytes: &[u8]) {
            let p = Path::new("fuzz");
            let _ = read_plain_bytes(bytes, p, 1 << 24);
            let _ = read_gz_bytes(bytes, p, 1 << 24);
            let _ = read_gz_bytes(&gzip(bytes), p, 1 << 24);
        }

        proptest! {
            #[test]
            fn fuzz_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..1200)) {
                let _ = parse_header(&bytes);
                both_paths(&bytes);
            }

            #[test]
            fn fuzz_mutated_headers(
                big in any::<bool>(),
                code in prop::sample::select(vec![2i16, 4, 16, 64, 256, 512, 1024]),
                edits in proptest::collection::vec((0usize..600, any::<u8>()), 1..12),
                cut in 0usize..2000,
            ) {
                let mut file = valid_file(&[5, 4, 3], code, big);
                for (at, v) in edits {
                    if at < file.len() {
                        file[at] = v;
                    }
                }
                file.truncate(cut.max(4).min(file.len()));
                both_paths(&file);
            }

            #[test]
            fn fuzz_corrupt_gzip(
                edits in proptest::collection::vec((0usize..400, any::<u8>()), 1..8),
                cut in 10usize..400,
            ) {
                let mut gz = gzip(&valid_file(&[6, 5, 4], 4, false));
                for (at, v) in edits {
                    if at < gz.len() {
                        gz[at] = v;
                    }
                }
                gz.truncate(cut.min(gz.len()));
                let _ = read_gz_bytes(&gz, Path::new("fuzz"), 1 << 24);
            }
        }

        #[test]
        fn valid_files_round_trip_through_both_paths() {
            let file = valid_file(&[5, 4, 3], 4, true);
            let plain = read_plain_bytes(&file, Path::new("x"), 1 << 20).unwrap();
            let gz = read_gz_bytes(&gzip(&file), Path::new("x"), 1 << 20).unwrap();
            assert_eq!(plain.voxels(), gz.voxels());
            assert_eq!(plain.voxels().len(), 120);
        }

        #[test]
        fn gz_files_over_the_cap_are_streamed_and_lies_refused_first() {
            let dir = std::env::temp_dir().join(format!("qgfast-gzcap-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join("v.nii.gz");
            let mut file = valid_file(&[50, 40, 3], 4, false);
            let noise = std::iter::successors(Some(88172645463325252u64), |x| {
                let x = x ^ (x << 13);
                let x = x ^ (x >> 7);
                Some(x ^ (x << 17))
            })
            .map(|x| (x >> 32) as u8);
            file[352..].iter_mut().zip(noise).for_each(|(b, v)| *b = v);
            let gz = gzip(&file);
            // incompressible: the file (header and gzip framing too) is over a cap of
            // exactly its 12000 voxel bytes
            assert!(gz.len() > 12000);
            std::fs::write(&path, &gz).unwrap();
            let spares = Spares::new(2);
            for spares in [None, Some(&spares)] {
                for cap in [12000, 1 << 20] {
                    let vol = read_using(&path, cap, spares).unwrap();
                    assert_eq!(vol.voxels(), &file[352..], "cap {cap}");
                }
            }
            // a header claiming more than the cap is refused before the file is read
            let mut lying = file.clone();
            lying[42..44].copy_from_slice(&30000i16.to_le_bytes());
            std::fs::write(&path, gzip(&lying)).unwrap();
            let err = read(&path, 1 << 20).err().unwrap();
            assert!(err.to_string().contains("cap"), "{err}");
            std::fs::remove_dir_all(&dir).unwrap();
        }

        #[test]
        fn lying_header_is_refused_before_allocating() {
            let mut file = valid_file(&[5, 4, 3], 4, false);
            file[42..44].copy_from_slice(&30000i16.to_le_bytes());
            file[44..46].copy_from_slice(&30000i16.to_le_bytes());
            let err = read_plain_bytes(&file, Path::new("x"), usize::MAX)
                .err()
                .unwrap();
            assert!(err.to_string().contains("truncated"), "{err}");
            let err = read_gz_bytes(&gzip(&file), Path::new("x"), usize::MAX)
                .err()
                .unwrap();
            assert!(err.to_string().contains("truncated"), "{err}");
            let err = read_plain_bytes(&file, Path::new("x"), 1000).err().unwrap();
            assert!(err.to_string().contains("cap"), "{err}");
        }
    }
}
