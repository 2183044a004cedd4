//! The NIfTI-1 / NIfTI-2 header: voxel types, nibabel's scaling rule, the parser (both
//! byte orders, every size checked), and byte-order conversion of voxels.
pub const NIFTI1_SIZE: usize = 348;
pub const NIFTI2_SIZE: usize = 540;

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

pub fn to_native(header: &Header, bytes: &mut [u8]) {
    let size = header.dtype.size();
    if header.big_endian != cfg!(target_endian = "big") && size > 1 {
        for chunk in bytes.chunks_exact_mut(size) {
            chunk.reverse();
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
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
}
