//! Reading a NIfTI file's voxels: `.nii` in one positioned read, `.nii.gz` inflated in one
//! libdeflate call or streamed (see the module docs of `io::nifti`).
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use flate2::read::MultiGzDecoder;

use super::header::{
    apply_scaling, parse_header, to_native, with_voxel_type, Header, Voxel, NIFTI2_SIZE,
};
use crate::errors::{data, Error};
use crate::io::buffer::Spares;

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
    crate::io::buffer::zeroed(nbytes.div_ceil(8))
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
    let words = crate::io::buffer::read_words_at(&file, start, nbytes, spares)
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
    let words = crate::io::buffer::read_words_at(&file, 0, len, Some(spares)).map_err(cannot)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::nifti::header::tests::nifti1;

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
