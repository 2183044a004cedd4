//! Large zeroed buffers that fault in as huge pages.
//!
//! A fresh 50–500 MB buffer (a decoded volume, a batch) is an anonymous mapping whose
//! pages fault in on first write; with 4 KiB pages that is ~15k faults per 58 MB volume,
//! which made reading an uncompressed `.nii` slower than numpy (which asks for huge pages
//! on large arrays the same way). Advice only: where the kernel says no, nothing changes.

/// Below this a buffer is not worth a system call (and malloc may not map it afresh).
const HUGE_MIN_BYTES: usize = 4 << 20;

/// `vec![T::zeroed(); n]`, advised to use transparent huge pages when large.
pub fn zeroed<T: bytemuck::Zeroable + Clone>(n: usize) -> Vec<T> {
    let v = vec![T::zeroed(); n];
    advise_huge(v.as_ptr() as usize, std::mem::size_of_val(v.as_slice()));
    v
}

/// `v`'s first `n` values, growing it (with default values) when shorter: scratch kept
/// from call to call, whose callers write every value before they read it.
pub fn grown<T: Copy + Default>(v: &mut Vec<T>, n: usize) -> &mut [T] {
    if v.len() < n {
        v.resize(n, T::default());
    }
    &mut v[..n]
}

/// `n` bytes of `file` from `offset`, in 8-byte words (the tail of the last word zero).
/// On Linux the kernel writes straight into fresh, never-zeroed memory (numpy's
/// `fromfile` does the same); zeroing first would cost as much as a third of the read.
pub fn read_words_at(file: &std::fs::File, offset: u64, n: usize) -> std::io::Result<Vec<u64>> {
    let words = n.div_ceil(8);
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let mut v: Vec<u64> = Vec::with_capacity(words);
        advise_huge(v.as_ptr() as usize, words * 8);
        let base = v.as_mut_ptr() as *mut u8;
        let mut done = 0usize;
        while done < n {
            let want = (n - done).min(1 << 30);
            let at = libc::off_t::try_from(offset + done as u64)
                .map_err(|_| std::io::Error::other("offset beyond the file API's range"))?;
            // SAFETY: `base + done .. + want` lies inside the capacity reserved above; the
            // kernel writes bytes there and we only read back what it reports written.
            let got = unsafe { libc::pread(file.as_raw_fd(), base.add(done).cast(), want, at) };
            match got {
                0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                g if g < 0 => {
                    let e = std::io::Error::last_os_error();
                    if e.kind() != std::io::ErrorKind::Interrupted {
                        return Err(e);
                    }
                }
                g => done += g as usize,
            }
        }
        // SAFETY: bytes 0..n were written by pread; the rest of the last word is zeroed now.
        unsafe {
            std::ptr::write_bytes(base.add(n), 0, words * 8 - n);
            v.set_len(words);
        }
        Ok(v)
    }
    #[cfg(not(target_os = "linux"))]
    {
        use std::io::{Read, Seek, SeekFrom};
        let mut v: Vec<u64> = zeroed(words);
        let mut f = file;
        f.seek(SeekFrom::Start(offset))?;
        f.read_exact(&mut bytemuck::cast_slice_mut::<u64, u8>(&mut v)[..n])?;
        Ok(v)
    }
}

/// Per-thread spare word buffers for per-image data (2D planes and labels): a 2D image's
/// 0.6 MB of planes would otherwise be a fresh mapping, faulted in and cleared, per image.
/// Only buffers up to `SPARE_MAX_BYTES` are kept, at most `SPARE_KEEP` per thread.
const SPARE_MAX_BYTES: usize = 8 << 20;
const SPARE_KEEP: usize = 4;

thread_local! {
    static SPARE_WORDS: Recycler<u64> = Recycler::new(SPARE_KEEP);
}

/// `n` words, contents unspecified (a spare of that length from this thread, else zeroed):
/// for callers that write every word they later read.
pub fn spare_words(n: usize) -> Vec<u64> {
    SPARE_WORDS.with(|spares| spares.take(n))
}

/// Keep `v` for `spare_words` on this thread, if it is small enough and there is room.
pub fn keep_spare(v: Vec<u64>) {
    if v.len() * 8 <= SPARE_MAX_BYTES {
        SPARE_WORDS.with(|spares| spares.give(v));
    }
}

/// Batch buffers handed to Python and taken back when Python lets go of them.
///
/// Why: a fresh 20 MB batch per step is an mmap whose pages fault in and are cleared by the
/// kernel; worse, a batch freed on Python's thread into a worker's malloc arena makes glibc
/// trim that arena, so the next images' scratch buffers fault in afresh too (measured: ~200
/// page faults per 2D image, ~13 % of the 2D stream's time). Recycled buffers skip both.
/// Contents of a taken buffer are unspecified (a previous batch's values): the stream
/// writes every element of a batch (tests: a recycling run equals a non-recycling one).
pub struct Recycler<T> {
    free: std::sync::Mutex<Vec<Vec<T>>>,
    /// at most this many idle buffers are kept (the pipeline's depth: no more are ever in
    /// flight at once, so keeping them costs no memory a running stream did not use)
    keep: usize,
}

impl<T: bytemuck::Zeroable + Clone> Recycler<T> {
    pub fn new(keep: usize) -> Self {
        Recycler {
            free: std::sync::Mutex::new(Vec::new()),
            keep,
        }
    }

    /// A buffer of `n` elements, contents unspecified: a kept one of that length, else new.
    pub fn take(&self, n: usize) -> Vec<T> {
        if let Ok(mut free) = self.free.lock() {
            if let Some(i) = free.iter().position(|v| v.len() == n) {
                return free.swap_remove(i);
            }
        }
        zeroed(n)
    }

    /// Hand a buffer back; dropped when `keep` are already idle.
    pub fn give(&self, v: Vec<T>) {
        if let Ok(mut free) = self.free.lock() {
            if free.len() < self.keep {
                free.push(v);
            }
        }
    }

    #[cfg(test)]
    fn idle(&self) -> usize {
        self.free.lock().map(|f| f.len()).unwrap_or(0)
    }
}

/// Ask for huge pages on the `bytes` from address `start` (whole 4 KiB pages inside them).
#[cfg(target_os = "linux")]
fn advise_huge(start: usize, bytes: usize) {
    if bytes < HUGE_MIN_BYTES {
        return;
    }
    const PAGE: usize = 4096;
    let aligned = start.next_multiple_of(PAGE);
    let end = start + bytes;
    if end > aligned {
        // SAFETY: the range lies inside a live allocation we own; MADV_HUGEPAGE only
        // changes how future faults are served, never the contents.
        unsafe {
            libc::madvise(
                aligned as *mut libc::c_void,
                end - aligned,
                libc::MADV_HUGEPAGE,
            );
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_huge(_: usize, _: usize) {}

#[cfg(test)]
mod tests {
    #[test]
    fn zeroed_buffers_are_zero() {
        for n in [0usize, 1, 4096, (8 << 20) + 3] {
            let v: Vec<f32> = super::zeroed(n);
            assert_eq!(v.len(), n);
            assert!(v.iter().all(|&x| x == 0.0));
        }
    }

    #[test]
    fn spare_words_are_reused_on_the_thread() {
        let a = super::spare_words(1000);
        let ptr = a.as_ptr();
        super::keep_spare(a);
        let b = super::spare_words(1000);
        assert_eq!(b.as_ptr(), ptr);
        super::keep_spare(vec![0; (16 << 20) / 8]); // too large to keep
        assert_eq!(super::spare_words((16 << 20) / 8).len(), (16 << 20) / 8);
    }

    #[test]
    fn recycled_buffers_are_reused_up_to_keep() {
        let r = super::Recycler::<f32>::new(2);
        let a = r.take(10);
        let ptr = a.as_ptr();
        r.give(a);
        let b = r.take(10);
        assert_eq!(b.as_ptr(), ptr, "a kept buffer of that length is reused");
        assert_eq!(r.take(7).len(), 7, "other lengths get a new buffer");
        for _ in 0..4 {
            r.give(vec![0.0; 10]);
        }
        assert_eq!(r.idle(), 2);
        drop(b);
    }

    #[test]
    fn positioned_reads_return_the_bytes_and_fail_past_the_end() {
        let path = std::env::temp_dir().join(format!("qgfast-buffer-{}", std::process::id()));
        let bytes: Vec<u8> = (0..5_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        for (offset, n) in [(0u64, 0usize), (3, 13), (352, 4_999_000), (4_999_990, 10)] {
            let words = super::read_words_at(&file, offset, n).unwrap();
            let got = &bytemuck::cast_slice::<u64, u8>(&words)[..n];
            assert_eq!(got, &bytes[offset as usize..offset as usize + n]);
            assert!(bytemuck::cast_slice::<u64, u8>(&words)[n..]
                .iter()
                .all(|&b| b == 0));
        }
        assert!(super::read_words_at(&file, 4_999_990, 11).is_err());
        std::fs::remove_file(&path).unwrap();
    }
}
