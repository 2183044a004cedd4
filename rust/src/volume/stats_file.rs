//! Statistics files (`<file>.nii.qgstats`, written by `qgfast.data.convert` beside each
//! uncompressed copy) that let a stream crop a `.nii` reading only the bytes its patch
//! covers, nnU-Net's trick, without reading the whole volume for its statistics.
//!
//! What a sample needs besides its voxels comes from the whole volume: the normalisation
//! (mean, std, percentiles) and, for a label, the foreground positions it oversamples. A
//! statistics file keeps them, computed by the same code a whole read runs: per image
//! channel the value counts of 8- and 16-bit voxels (any normalisation follows from them,
//! bit for bit) or, for wider types, the two z-score maps; per label the checked values'
//! foreground list. It records the size and modification time of the file it describes;
//! a file that changed since, a statistics file that is missing, damaged or of another
//! version, or a normalisation it cannot give (percentiles of float voxels) make the
//! stream read the whole file as before, so a stale file is never used.
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use super::channel::ValueMap;
use crate::errors::{data, Error};

const MAGIC: &[u8; 8] = b"QGSTATS\x01";

/// What the described file is to a case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Image,
    Label,
}

/// One image channel's statistics.
#[derive(Clone, Debug, PartialEq)]
pub struct ChannelStats {
    /// the z-score maps over all voxels and over the nonzero ones
    pub zscore: [ValueMap; 2],
    /// (scaled value, count), ascending, for 8- and 16-bit voxels
    pub counts: Option<Vec<(f64, u64)>>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Stats {
    pub role: Role,
    pub channels: Vec<ChannelStats>,
    /// a label's foreground positions (C-order indices, as `Decoded::foreground`)
    pub foreground: Vec<u32>,
}

pub fn path_for(volume: &Path) -> PathBuf {
    let mut name = volume.as_os_str().to_owned();
    name.push(".qgstats");
    PathBuf::from(name)
}

/// The file's size and modification time (seconds, nanoseconds since 1970).
pub fn stamp(path: &Path) -> std::io::Result<[u64; 3]> {
    let meta = std::fs::metadata(path)?;
    let since = meta
        .modified()?
        .duration_since(UNIX_EPOCH)
        .map_err(std::io::Error::other)?;
    Ok([meta.len(), since.as_secs(), u64::from(since.subsec_nanos())])
}

/// 64-bit FNV-1a: damage to a statistics file reads as a mismatch, not as statistics.
fn checksum(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    })
}

/// Write `stats` of `path`, whose stamp before they were computed was `before`, beside it
/// (to a temporary name, then renamed); the statistics file's path. A file that changed
/// while its statistics were computed is an error.
pub fn store(path: &Path, stats: &Stats, before: [u64; 3]) -> Result<PathBuf, Error> {
    let io = |e: std::io::Error| data(path, format!("cannot stat: {e}"));
    if stamp(path).map_err(io)? != before {
        return Err(data(
            path,
            "the file changed while its statistics were computed",
        ));
    }
    let bytes = encode(stats, before);
    let target = path_for(path);
    let mut tmp_name = target.as_os_str().to_owned();
    tmp_name.push(format!(".{}.part", std::process::id()));
    let tmp = PathBuf::from(tmp_name);
    let written = std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(&bytes))
        .and_then(|()| std::fs::rename(&tmp, &target));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(data(&target, format!("cannot write: {e}")));
    }
    Ok(target)
}

/// The statistics of `path` in `role` when its statistics file exists, is whole and
/// describes the file as it is now; None otherwise (the caller reads the whole file).
pub fn read_fresh(path: &Path, role: Role) -> Option<Stats> {
    let bytes = std::fs::read(path_for(path)).ok()?;
    let (stats, recorded) = decode(&bytes)?;
    (stats.role == role && stamp(path).ok()? == recorded).then_some(stats)
}

fn encode(stats: &Stats, stamp: [u64; 3]) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    let mut put = |v: u64| out.extend_from_slice(&v.to_le_bytes());
    stamp.iter().for_each(|&v| put(v));
    put(u64::from(stats.role == Role::Label));
    put(stats.channels.len() as u64);
    for ch in &stats.channels {
        for map in &ch.zscore {
            map.to_array().iter().for_each(|v| put(v.to_bits()));
        }
        match &ch.counts {
            None => put(u64::MAX),
            Some(pairs) => {
                put(pairs.len() as u64);
                for &(v, c) in pairs {
                    put(v.to_bits());
                    put(c);
                }
            }
        }
    }
    put(stats.foreground.len() as u64);
    for &i in &stats.foreground {
        out.extend_from_slice(&i.to_le_bytes());
    }
    let sum = checksum(&out);
    out.extend_from_slice(&sum.to_le_bytes());
    out
}

/// Reads what `encode` wrote; None for anything else (damage, another version).
fn decode(bytes: &[u8]) -> Option<(Stats, [u64; 3])> {
    let (body, sum) = bytes.split_at_checked(bytes.len().checked_sub(8)?)?;
    if checksum(body) != u64::from_le_bytes(sum.try_into().ok()?) {
        return None;
    }
    let mut rest = body.strip_prefix(MAGIC)?;
    let mut take = |n: usize| -> Option<&[u8]> {
        let (head, tail) = rest.split_at_checked(n)?;
        rest = tail;
        Some(head)
    };
    let mut word = || -> Option<u64> { Some(u64::from_le_bytes(take(8)?.try_into().ok()?)) };
    let stamp = [word()?, word()?, word()?];
    let role = match word()? {
        0 => Role::Image,
        1 => Role::Label,
        _ => return None,
    };
    // counts are bounded by the bytes present before anything is reserved
    let n_channels = usize::try_from(word()?).ok()?.min(1 << 16);
    let mut channels = Vec::with_capacity(n_channels);
    for _ in 0..n_channels {
        let mut map = || -> Option<ValueMap> {
            let v = [word()?, word()?, word()?, word()?].map(f64::from_bits);
            Some(ValueMap::from_array(v))
        };
        let zscore = [map()?, map()?];
        let counts = match word()? {
            u64::MAX => None,
            n => {
                let n = usize::try_from(n).ok().filter(|&n| n <= 1 << 16)?;
                let mut pairs = Vec::with_capacity(n);
                for _ in 0..n {
                    pairs.push((f64::from_bits(word()?), word()?));
                }
                Some(pairs)
            }
        };
        channels.push(ChannelStats { zscore, counts });
    }
    let n_fg = usize::try_from(word()?).ok()?;
    let fg_bytes = take(n_fg.checked_mul(4)?)?;
    let foreground = fg_bytes
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
        .collect();
    if !rest.is_empty() {
        return None;
    }
    let stats = Stats {
        role,
        channels,
        foreground,
    };
    Some((stats, stamp))
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub fn sample() -> Stats {
        let map = ValueMap::from_array([-1.0, 900.0, 12.5, 0.25]);
        Stats {
            role: Role::Image,
            channels: vec![
                ChannelStats {
                    zscore: [map, ValueMap::IDENTITY],
                    counts: Some(vec![(-3.0, 7), (0.0, 1), (2.5, 1 << 40)]),
                },
                ChannelStats {
                    zscore: [ValueMap::IDENTITY, map],
                    counts: None,
                },
            ],
            foreground: vec![0, 5, u32::MAX],
        }
    }

    #[test]
    fn encoding_round_trips_and_refuses_damage() {
        let stats = sample();
        let bytes = encode(&stats, [1, 2, 3]);
        assert_eq!(decode(&bytes), Some((stats, [1, 2, 3])));
        for at in [0, 9, 40, bytes.len() / 2, bytes.len() - 1] {
            let mut bad = bytes.clone();
            bad[at] ^= 0x10;
            assert_eq!(decode(&bad), None, "byte {at} flipped");
        }
        for len in [0, 7, 8, bytes.len() - 1] {
            assert_eq!(decode(&bytes[..len]), None, "cut to {len}");
        }
    }

    // `fuzz_` like the header fuzzers: PROPTEST_CASES sets the count of the long run
    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// A statistics file is read back or refused, never a panic, whatever its bytes:
            /// arbitrary ones, or a valid file edited and cut (checksum fixed up, so the
            /// parser itself meets the damage).
            #[test]
            fn fuzz_statistics_files(
                noise in proptest::collection::vec(any::<u8>(), 0..300),
                edits in proptest::collection::vec((0usize..400, any::<u8>()), 1..8),
                cut in 8usize..400,
            ) {
                let _ = decode(&noise);
                let mut bytes = encode(&sample(), [4, 5, 6]);
                bytes.truncate(bytes.len() - 8);
                let n = bytes.len();
                for (at, v) in edits {
                    bytes[at % n] = v;
                }
                bytes.truncate(cut.min(n));
                let sum = checksum(&bytes);
                bytes.extend_from_slice(&sum.to_le_bytes());
                let _ = decode(&bytes);
            }
        }
    }
}
